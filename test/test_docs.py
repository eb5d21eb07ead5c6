"""The README and docs/: short enough to read, every link resolves, and the commands they show are real."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from jzi_ros.launch_args import BRINGUP_ARGUMENTS, LAUNCH_ARGUMENTS, MAP_FRAME_ARGUMENTS
from jzi_ros.tools.cli import COMMANDS, make_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", path.read_text(), re.M)}


def _commands(text: str, start: str) -> list[list[str]]:
    """The command lines in the text's code blocks that begin with ``start`` (continuations joined)."""
    blocks = [m.group(2) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M) if m.group(1) in ("", "bash")]
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    out = []
    for line in lines:
        line = line.split(" #")[0].strip().rstrip("&").strip()
        if line.startswith(start):
            out.append(shlex.split(line))
    return out


def test_the_readme_is_short_and_starts_with_the_two_commands():
    lines = README.read_text().splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines"
    first = "\n".join(lines[:6])
    assert "make demo" in first and "make test" in first


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_every_link_into_the_project_resolves(path):
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z]+:", target):  # http(s), mailto
            continue
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        assert resolved.exists(), f"{path.name}: {target}"
        if anchor:
            assert anchor in _anchors(resolved), f"{path.name}: {target} (no such heading)"


def test_the_readme_s_jzi_commands_parse():
    text = README.read_text()
    lines = _commands(text, "$J ") + _commands(text, "jzi ")
    assert len(lines) >= 8
    for words in lines:
        args = words[1:]
        assert args[0] in COMMANDS, words
        _, sub = make_parser(args[0])
        assert sub is not None
        sub.parse_args(args[1:])  # an unknown option or a missing required one exits


def test_the_readme_s_launch_lines_set_declared_arguments():
    declared = set(LAUNCH_ARGUMENTS) | set(BRINGUP_ARGUMENTS) | set(MAP_FRAME_ARGUMENTS) | {"params_file"}
    launches = [w for doc in (README, *DOCS) for w in _commands(doc.read_text(), "ros2 launch jzi_ros")]
    assert len(launches) >= 4
    for words in launches:
        assert words[:4] == ["ros2", "launch", "jzi_ros", "localize.launch.py"], words
        for word in words[4:]:
            name, sep, _ = word.partition(":=")
            assert sep and name in declared, word
