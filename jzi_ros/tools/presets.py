"""Named presets (config/presets/NAME.yaml): defaults for `jzi build-map` and `jzi train`."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from ..errors import JziError


def preset_dirs() -> list[Path]:
    dirs = [Path(__file__).resolve().parents[2] / "config" / "presets"]  # a source checkout
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            dirs.append(Path(get_package_share_directory("jzi_ros")) / "config" / "presets")
        except (PackageNotFoundError, OSError):  # not installed in a ROS workspace
            pass
    except ImportError:
        pass
    return dirs


def load_preset(name: str, section: str) -> dict:
    """The ``section`` ("map" or "train") of a preset given by name or path."""
    path = Path(name)
    if not path.is_file():
        found = [d / f"{name}.yaml" for d in preset_dirs() if (d / f"{name}.yaml").is_file()]
        if not found:
            names = sorted({p.stem for d in preset_dirs() if d.is_dir() for p in d.glob("*.yaml")})
            raise JziError(f"no preset {name!r}; known presets: {', '.join(names) or 'none'}")
        path = found[0]
    doc = yaml.safe_load(path.read_text()) or {}
    return dict(doc.get(section) or {})


def apply_preset(args: argparse.Namespace, parser_defaults: dict, section: str) -> None:
    """Fill options the user left at their defaults from the preset."""
    if not getattr(args, "preset", None):
        return
    for key, value in load_preset(args.preset, section).items():
        dest = key.replace("-", "_")
        if dest not in parser_defaults:
            raise JziError(f"preset {args.preset}: unknown {section} option {key!r}")
        if getattr(args, dest) == parser_defaults[dest]:
            setattr(args, dest, value)


def defaults_of(parser: argparse.ArgumentParser) -> dict:
    return {a.dest: a.default for a in parser._actions if a.dest != "help"}
