"""Never delete what the project did not write: the one check before an output folder is replaced.

Every command that replaces a folder (``jzi build-map --overwrite``, a
leftover ``NAME.partial``, an export, an estimates bag) asks
:func:`check_replaceable` first. A folder is replaced only when the project
recognizes it as its own output by a file only it writes there (a map's
``map.yaml``, an export's ``export.yaml``, a bag's ``metadata.yaml``, the
``.jzi-partial`` marker of an unfinished output), and never when it is ``/``,
the home folder, the working directory or one of its parents, or a folder
that holds one of the command's inputs.

Caches built on first use beside their source (a checkpoint's ONNX export, an
export's TensorRT engines) are built under :func:`build_lock`, so that two
processes starting at once (two replays, a node and a benchmark) build them
once and never remove each other's unfinished folder.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import JziError

log = logging.getLogger(__name__)

PARTIAL_MARKER = ".jzi-partial"
"""The file inside every ``NAME.partial`` folder the project writes, so that a leftover one may be removed."""


class OutputError(JziError):
    """An output folder may not be replaced, or cannot be written."""


def check_replaceable(path: str | Path, marker: str, what: str, inputs: Iterable[str | Path] = ()) -> None:
    """Raise :class:`OutputError` unless the existing folder ``path`` may be deleted and written anew.

    Args:
        path: The output folder (nothing is checked when it does not exist).
        marker: A file the project writes into every such output (``map.yaml``).
        what: What the output is, for the message ("map", "export").
        inputs: The command's inputs; a folder that holds one is never replaced.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    real = path.resolve()
    cwd = Path.cwd().resolve()
    if real == Path(real.anchor) or real == Path.home().resolve() or real == cwd or real in cwd.parents:
        raise OutputError(
            f"refusing to replace {path}: it is /, the home folder, the working directory or one of its parents"
        )
    for item in inputs:
        item = Path(item).resolve()
        if item.exists() and (item == real or real in item.parents):
            raise OutputError(f"refusing to replace {path}: it holds the input {item}; choose another --out")
    if not real.is_dir():
        raise OutputError(f"{path} is a file, not a {what} folder; choose another --out")
    if not (real / marker).is_file() and any(real.iterdir()):
        raise OutputError(
            f"refusing to replace {path}: it is no {what} this project wrote (it has no {marker}); choose another --out"
        )


def check_writable(path: str | Path) -> None:
    """Raise :class:`OutputError` unless ``path`` (a folder to write, existing or not) can be written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} is a file; choose another --out")
    parent = next((p for p in [path, *path.parents] if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: {parent} is not a writable folder")


def remove_partial(path: str | Path) -> None:
    """Delete a leftover ``NAME.partial`` folder of an unfinished output, if the project wrote it."""
    check_replaceable(path, PARTIAL_MARKER, "partial output")
    shutil.rmtree(path, ignore_errors=True)


def start_partial(path: str | Path) -> Path:
    """Make the folder ``NAME.partial`` (removing a leftover of an earlier run) with its marker; its path."""
    path = Path(path)
    remove_partial(path)
    try:
        path.mkdir(parents=True)
        (path / PARTIAL_MARKER).touch()
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def finish_partial(
    partial: str | Path, out: str | Path, marker: str, what: str, inputs: Iterable[str | Path] = ()
) -> Path:
    """Move a finished ``NAME.partial`` folder to ``out``, replacing an older output of the project there."""
    partial, out = Path(partial), Path(out)
    (partial / PARTIAL_MARKER).unlink(missing_ok=True)
    if out.exists():
        check_replaceable(out, marker, what, inputs)
        shutil.rmtree(out)
    partial.rename(out)
    return out


@contextmanager
def build_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``NAME.lock`` beside the cache folder ``path`` while it is built.

    A process waits here while another builds; it should then check again whether the cache
    is still to be built. The lock file stays (it is empty); the lock goes with the process.
    """
    import fcntl  # POSIX: imported here so that the rest of the module is not

    path = Path(path)
    lock = path.with_name(path.name + ".lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_CREAT | os.O_RDONLY, 0o644)  # a lock needs no write access to its file
    except OSError as exc:
        raise OutputError(f"cannot write {lock}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:  # a file system without locks (some NFS, SMB or FUSE mounts)
            log.warning("cannot lock %s (%s): building %s without a lock", lock, exc.strerror or exc, path)
        yield
    finally:
        os.close(fd)  # closing the file releases its lock
