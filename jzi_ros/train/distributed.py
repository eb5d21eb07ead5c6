"""This process's place in a multi-GPU job started by torchrun.

Without torchrun (``WORLD_SIZE`` unset) a job is rank 0 of 1 and every
collective is the identity, so the training loops run unchanged on one device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @classmethod
    def start(cls, device: torch.device) -> Dist:
        """Join the job torchrun started (NCCL on CUDA, gloo on CPU), or run alone.

        Args:
            device: the device asked for; under torchrun a CUDA device becomes
                this rank's GPU.

        Returns:
            This process's rank, the number of processes and its device.
        """
        world = int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun, the standard launcher
        if world == 1:
            return cls(device=device)
        import torch.distributed as dist

        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        rank = dist.get_rank()
        if device.type == "cuda":
            device = torch.device("cuda", rank % torch.cuda.device_count())
        return cls(rank, world, device)

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the process that validates, logs and writes."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every rank got here."""
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def agree(self, value: int) -> int:
        """Rank 0's value, on every rank."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.long, device=self.device)
        dist.broadcast(t, 0)
        return int(t)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a scalar over the ranks."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        t = value.detach().float().to(self.device).clone()
        dist.all_reduce(t)
        return t / self.world

    def stop(self) -> None:
        """Leave the job's process group (nothing to do when alone)."""
        if self.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
