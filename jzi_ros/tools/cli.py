"""The `jzi` command: one entry point, one subcommand per job.

Each subcommand lives in its own module of this package, with
``add_arguments(parser)`` (its options, ending in ``set_defaults(run=...)``)
and ``run(args) -> int``. A module is imported only when its subcommand runs,
so ``jzi --help`` starts at once and imports no torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys

from .. import __version__
from ..errors import JziError

COMMANDS: dict[str, tuple[str, str]] = {
    "build-map": ("build_map", "render a map directory from GeoTIFFs"),
    "build-pyramid": ("build_pyramid", "add the orthophoto pyramid to a map built without one"),
    "show-map": ("show_map", "draw a map's region and grid into a PNG"),
    "map-frame": ("map_frame", "the static transform from a robot's map frame to the map's (jzi_map)"),
    "import": ("import_data", "geotagged images (EXIF, rosbag, benchmark) into a training CSV"),
    "train": ("train", "train a zoom model for a map"),
    "train-matcher": ("train_matcher", "give a model a learned matcher for the registration"),
    "calibrate": ("calibrate", "fit a model's calibration for a map (a general model's, once per map)"),
    "index-map": ("index_map", "store a model's encoder features of every map view"),
    "evaluate": ("evaluate", "zoom accuracy on held-out frames or geotagged images"),
    "make-bag": ("make_bag", "simulate a camera flight over a GeoTIFF into a rosbag2"),
    "eval-bag": ("eval_bag", "replay a rosbag2 through the localizer and measure it"),
    "score": ("score", "score a recording of the node's fixes against the truth recorded beside them"),
    "export": ("export", "export a model to ONNX or TensorRT"),
    "bench": ("bench", "measure latency, throughput, memory and scaling; write a report"),
    "demo": ("demo", "run the whole pipeline on a generated scene"),
}
"""Subcommand -> (module of this package, one-line help)."""


def _command_in(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (its first word that is one), if any."""
    return next((a for a in argv if a in COMMANDS), None)


def make_parser(command: str | None = None) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser | None]:
    """The ``jzi`` parser, and the parser of ``command`` (None when no command is named).

    Only ``command``'s module is imported and its options added; the other
    commands are listed with their help line.
    """
    parser = argparse.ArgumentParser(
        prog="jzi", description="jzi_ros: localize a robot without GPS by zooming in on an overhead map."
    )
    parser.add_argument("--version", action="version", version=f"jzi_ros {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages and show tracebacks")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    chosen = None
    for name, (module_name, help_line) in COMMANDS.items():
        if name != command:
            sub.add_parser(name, help=help_line, add_help=False)
            continue
        module = importlib.import_module(f".{module_name}", __package__)
        description = (module.__doc__ or help_line).split("\n\n")[0]
        chosen = sub.add_parser(
            name,
            help=help_line,
            description=description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(chosen)
    return parser, chosen


def _dests(parser: argparse.ArgumentParser) -> set[str]:
    return {a.dest for a in parser._actions if a.dest != "help"}


def _in_flags(message: str, parser: argparse.ArgumentParser | None) -> str:
    """A library message in the command line's words.

    ``max_gap_s must ...`` -> ``--max-gap-s must ...``; ``aerial or data must ...``
    -> ``--aerial or --data must ...``; ``query_rasters needs aerial or street`` ->
    ``--query-rasters needs --aerial or --street``.
    """
    if parser is None:
        return message
    flags = {a.dest: max(a.option_strings, key=len) for a in parser._actions if a.option_strings and a.dest != "help"}
    for dest, flag in flags.items():
        message = re.sub(rf"(?<![\w-]){dest}(?=(?: or \w+)* (?:must|needs)\b)", flag, message)

    def needed(match: re.Match) -> str:
        return " or ".join(flags.get(word, word) for word in match.group(1).split(" or "))

    return re.sub(r"(?<=needs )(\w+(?: or \w+)*)", needed, message)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse a command line, with the defaults of its ``--preset`` if it names one.

    The line is parsed once for the preset's name, then again with the
    preset's values as the command's defaults, so options given on the line win.
    """
    parser, chosen = make_parser(_command_in(argv))
    args = parser.parse_args(argv)
    preset = getattr(args, "preset", None)
    if preset and chosen is not None:
        from ..share import load_preset

        section = args.preset_section
        values = {key.replace("-", "_"): value for key, value in load_preset(preset, section).items()}
        unknown = sorted(set(values) - _dests(chosen))
        if unknown:
            raise JziError(f"preset {preset}: unknown {section} option(s) {', '.join(unknown)}")
        chosen.set_defaults(**values)
        args = parser.parse_args(argv)
    args.command_parser = chosen  # for messages in the command's own words
    return args


def main(argv: list[str] | None = None) -> int:
    """Run ``jzi`` with ``argv`` (default: the process's arguments); returns the exit code."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    verbose = "-v" in argv or "--verbose" in argv
    chosen = None
    try:
        args = parse_args(argv)
        chosen = args.command_parser
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s: %(message)s")
        return args.run(args)
    except JziError as exc:
        if verbose:
            raise
        print(f"jzi: error: {_in_flags(str(exc), chosen)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jzi: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
