"""The ``helmops`` console script: an argparse dispatcher; each subcommand module adds its own parser."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: modules under helmops.cli that provide ``add_parser(subparsers)``; missing ones are skipped.
SUBCOMMANDS = ("run", "validate", "render", "diff", "status", "promote", "approve")  # approve: plan + approve


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="helmops",
        description="Fleet-compatible HelmApp controller, and tools to see what a HelmApp does before you ship it.",
        epilog=(
            "exit codes: 0 success, 1 error (invalid manifest, failed cluster, refused promotion, timeout), "
            "2 differences (diff) or a usage error. 'helmops COMMAND --help' for details; docs/cli.md for more."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"helmops.cli.{name}")
        except ImportError:
            continue
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    code: int = func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
