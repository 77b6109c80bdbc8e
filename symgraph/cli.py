"""The `symgraph` command: train (the main job), bench, viz."""

from __future__ import annotations

import argparse
import sys

from symgraph import envvars
from symgraph.errors import SymgraphError


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `symgraph` console script."""
    parser = argparse.ArgumentParser(
        prog="symgraph", description="symgraph: a symbolic graph compiler for neural networks")
    sub = parser.add_subparsers(dest="command", required=True)
    from symgraph.bench.cli import add_bench_parser
    from symgraph.nn.train_cli import add_train_parser
    from symgraph.viz_cli import add_viz_parser

    add_train_parser(sub)
    add_bench_parser(sub)
    add_viz_parser(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        if envvars.flag("SYMGRAPH_DEBUG"):
            raise
        out = getattr(args, "out", None)
        hint = (f" (the same command with --out {out} continues after the last finished "
                "epoch)" if args.command == "train" and out else "")
        print(f"\nsymgraph {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
    except (SymgraphError, OSError) as exc:
        if envvars.flag("SYMGRAPH_DEBUG"):
            raise
        # a user's mistake (a bad value, an unwritable folder, a missing file): one line,
        # as argparse reports its own errors; SYMGRAPH_DEBUG=1 shows the traceback
        prefix = f"symgraph {args.command}:"
        text = str(exc).removeprefix(prefix).strip()
        print(f"{prefix} error: {text}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
