"""Attributes of a package that load their module on first use (PEP 562).

A package whose ``__init__`` would otherwise import a heavy dependency
(rasterio, torch) for every user lists those names here, so that light users
(``jzi --help``, the model's use of the grid) do not pay for them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_attributes(package: str, modules: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package``: name -> its submodule, imported on first use."""

    def __getattr__(name: str) -> object:  # noqa: N807 - the module hook PEP 562 names
        if name in modules:
            return getattr(importlib.import_module(f".{modules[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
