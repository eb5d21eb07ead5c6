"""Progress bars for the library's long loops (tqdm on stderr, silent when asked)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

Progress = Callable[[Iterable, int], Iterable]
"""``progress(iterable, total)``: wraps a loop of ``total`` items to show how far it is."""


def bar(desc: str, quiet: bool = False, unit: str = "view") -> Progress:
    """A :data:`Progress` that draws a tqdm bar named ``desc`` (none when ``quiet``)."""

    def progress(iterable: Iterable, total: int) -> Iterable:
        from tqdm import tqdm  # here: the node's runtime (logged below) has no use for it

        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=quiet, dynamic_ncols=True)

    return progress


def logged(desc: str, logger: logging.Logger) -> Progress:
    """A :data:`Progress` that logs ``desc`` at the start and every tenth of the way (for a node's log, not a tty)."""

    def progress(iterable: Iterable, total: int) -> Iterable:
        step = max(1, total // 10)
        for i, item in enumerate(iterable):
            if i % step == 0:
                logger.info("%s: %d of %d", desc, i, total)
            yield item
        logger.info("%s: done (%d)", desc, total)

    return progress
