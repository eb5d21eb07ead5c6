"""Progress bars for the library's long loops (tqdm on stderr, silent when asked)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from tqdm import tqdm

Progress = Callable[[Iterable, int], Iterable]
"""``progress(iterable, total)``: wraps a loop of ``total`` items to show how far it is."""


def bar(desc: str, quiet: bool = False, unit: str = "view") -> Progress:
    """A :data:`Progress` that draws a tqdm bar named ``desc`` (none when ``quiet``)."""

    def progress(iterable: Iterable, total: int) -> Iterable:
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=quiet, dynamic_ncols=True)

    return progress
