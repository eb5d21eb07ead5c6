"""What the command-line front ends share: progress bars and configs from options."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from tqdm import tqdm

C = TypeVar("C")


def bar(desc: str, quiet: bool = False, unit: str = "view") -> Callable[[Iterable, int], Iterable]:
    """A ``progress(iterable, total)`` callable for the library's long loops (tqdm on stderr)."""

    def progress(iterable: Iterable, total: int) -> Iterable:
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=quiet, dynamic_ncols=True)

    return progress


def config_from(cls: type[C], args: argparse.Namespace, **overrides: Any) -> C:
    """A frozen config dataclass from the options of the same names (and ``overrides``)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {k: v for k, v in vars(args).items() if k in names}
    return cls(**{**values, **overrides})
