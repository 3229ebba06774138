"""``tn-peft draw GRAPH -o FILE.png [--expand]``: render the network as a diagram (``--expand``: and
each circuit node's gates)."""

from __future__ import annotations

import argparse

from .graph_options import add_graph_arguments, load_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_graph_arguments(parser)
    parser.add_argument("-o", "--output", required=True, help="image file to write (.png, .svg or .pdf)")
    parser.add_argument("--symbolic", action="store_true",
                        help="label legs with their size expressions instead of the numbers for --in-features/--out-features")
    parser.add_argument("--expand", action="store_true",
                        help="also draw each circuit node's gates (RY rotations and CZs) for --in-features/--out-features")


def run(args: argparse.Namespace) -> int:
    from ..graph.draw import draw_network

    net = load_from_args(args)
    sizes = None if args.symbolic else net.resolve(args.in_features, args.out_features)
    circuits = {}
    if args.expand:
        adapter = net.build(args.in_features, args.out_features)
        circuits = {name: gates for name in adapter.operands
                    if (gates := adapter.node(name).as_network()) is not None}
        if not circuits:
            print(f"note: graph {net.name!r} has no circuit nodes; --expand draws nothing more")
    draw_network(net, args.output, sizes=sizes, circuits=circuits)
    print(f"wrote {args.output}")
    return 0
