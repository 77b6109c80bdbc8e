"""The `symgraph` command: train (the main job), bench, viz."""

from __future__ import annotations

import argparse
import sys


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
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
