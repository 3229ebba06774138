"""``tn-peft draw GRAPH -o FILE.png``: render the network as a diagram."""

from __future__ import annotations

import argparse

from . import add_graph_arguments, load_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_graph_arguments(parser)
    parser.add_argument("-o", "--output", required=True, help="image file to write (.png, .svg or .pdf)")
    parser.add_argument("--symbolic", action="store_true",
                        help="label legs with their size expressions instead of the numbers for --in/--out")


def run(args: argparse.Namespace) -> int:
    from ..draw import draw_network

    net = load_from_args(args)
    sizes = None if args.symbolic else net.resolve(args.in_features, args.out_features)
    draw_network(net, args.output, sizes=sizes)
    print(f"wrote {args.output}")
    return 0
