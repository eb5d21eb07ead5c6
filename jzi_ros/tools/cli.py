"""The `jzi` command: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import logging
import sys

from .. import __version__
from ..errors import JziError
from . import bench, build_map, demo, eval_bag, evaluate, export, import_data, index_map, make_bag, show_map, train

SUBCOMMANDS = (
    build_map,
    show_map,
    import_data,
    train,
    index_map,
    evaluate,
    make_bag,
    eval_bag,
    export,
    bench,
    demo,
)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jzi", description="jzi_ros: localize a robot without GPS by zooming in on an overhead map."
    )
    parser.add_argument("--version", action="version", version=f"jzi_ros {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages and show tracebacks")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s: %(message)s")
    try:
        return args.run(args)
    except JziError as exc:
        if args.verbose:
            raise
        print(f"jzi: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jzi: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
