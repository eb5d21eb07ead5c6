"""Progress bars for long work (tqdm on stderr, silent when asked)."""

from __future__ import annotations

from collections.abc import Iterable

from tqdm import tqdm


def bar(desc: str, quiet: bool = False, unit: str = "view"):
    """A ``progress(iterable, total)`` callable for the library's long loops."""

    def progress(iterable: Iterable, total: int) -> Iterable:
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=quiet, dynamic_ncols=True)

    return progress
