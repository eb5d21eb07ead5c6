"""What the command-line front ends share: configs from their options."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

C = TypeVar("C")


def config_from(cls: type[C], args: argparse.Namespace, **overrides: Any) -> C:
    """A frozen config dataclass from the options of the same names (and ``overrides``)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {k: v for k, v in vars(args).items() if k in names}
    return cls(**{**values, **overrides})
