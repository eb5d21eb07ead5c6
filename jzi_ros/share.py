"""The package's installed files: ``config/`` (node parameters, presets) and ``models/`` (the shipped model).

A ROS 2 workspace installs them under the package's share directory (found
through the ament index); a source checkout (``pip install -e .``) has them
beside the package.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .errors import JziError

PACKAGE = "jzi_ros"


def share_dirs(name: str) -> list[Path]:
    """The folders ``name`` (``config``, ``models``) that exist: a source checkout's, then the installed share's."""
    dirs = [Path(__file__).resolve().parent.parent / name]
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:  # no ROS 2 installation: a plain Python environment
        pass
    else:
        try:
            dirs.append(Path(get_package_share_directory(PACKAGE)) / name)
        except (PackageNotFoundError, OSError, ValueError):  # not installed in a ROS workspace
            pass
    return [d for d in dirs if d.is_dir()]


def config_dirs() -> list[Path]:
    """The ``config/`` folders that exist: a source checkout's, then the installed share's."""
    return share_dirs("config")


def config_file(relative: str) -> Path:
    """A file under ``config/`` (e.g. ``localize.yaml``), from the first folder that has it."""
    for folder in config_dirs():
        if (folder / relative).is_file():
            return folder / relative
    raise JziError(f"config/{relative} of {PACKAGE} not found in {[str(d) for d in config_dirs()]}")


def preset_names() -> list[str]:
    """Names of the presets in ``config/presets/``."""
    return sorted({p.stem for d in config_dirs() for p in (d / "presets").glob("*.yaml")})


def load_preset(name: str, section: str) -> dict:
    """The ``section`` ("map" or "train") of a preset given by name or YAML path."""
    path = Path(name)
    if not path.is_file():
        try:
            path = config_file(f"presets/{name}.yaml")
        except JziError:
            raise JziError(f"no preset {name!r}; known presets: {', '.join(preset_names()) or 'none'}") from None
    doc = yaml.safe_load(path.read_text()) or {}
    return dict(doc.get(section) or {})


SHIPPED_MODELS = {"general-aerial": "downward frames (drones)", "general-street": "street-level frames (ground robots)"}
"""The general models shipped in ``models/`` (``models/README.md``), by name; the first is the default."""
DEFAULT_MODEL = next(iter(SHIPPED_MODELS))
"""The general model every command and the node use when given no model."""


def shipped_model(name: str = DEFAULT_MODEL) -> Path:
    """A shipped general model by name: a source checkout's ``models/NAME.pt``, else the installed share's.

    Raises:
        JziError: no such shipped model, or neither folder has it (an installation without its models).
    """
    name = name.removesuffix(".pt")
    if name not in SHIPPED_MODELS:
        known = ", ".join(f"{k} ({v})" for k, v in SHIPPED_MODELS.items())
        raise JziError(f"no shipped model {name!r}; shipped: {known}")
    for folder in share_dirs("models"):
        if (folder / f"{name}.pt").is_file():
            return folder / f"{name}.pt"
    raise JziError(f"the shipped model models/{name}.pt of {PACKAGE} is not installed; give a model")


def resolve_model(model: str | Path | None) -> Path:
    """A model given by path, or by a shipped model's name (``general-street``); none: the default shipped one.

    A path that exists wins over a shipped name; anything else is returned as given,
    for the loader to report.
    """
    if model is None or str(model) == "":
        return shipped_model()
    path = Path(model)
    if not path.exists() and path.parent == Path(".") and path.name.removesuffix(".pt") in SHIPPED_MODELS:
        return shipped_model(path.name)
    return path
