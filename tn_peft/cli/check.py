"""``tn-peft check GRAPH``: validate a graph and print nodes, legs, sizes, parameters and the einsum."""

from __future__ import annotations

import argparse

from .graph_options import add_graph_arguments, load_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_graph_arguments(parser)


def report(net, in_features: int, out_features: int) -> str:
    """The text ``tn-peft check`` prints for a network built at (out_features, in_features)."""
    adapter = net.build(in_features, out_features)
    sizes = adapter.sizes
    lines = [f"graph {net.name}" + (f"  ({net.source})" if net.source else ""),
             "  params: " + ", ".join(f"{k}={v}" for k, v in net.params.items()),
             f"  layer: out={out_features} x in={in_features}, scale={adapter.scale:g}"
             + ("  (dW = T(theta) - T(theta_0))" if net.delta else ""),
             "  open legs: out=" + " x ".join(f"{leg}[{sizes[leg]}]" for leg in net.open["out"])
             + ", in=" + " x ".join(f"{leg}[{sizes[leg]}]" for leg in net.open["in"]),
             "  nodes:"]
    width = max(len(n.name) for n in net.nodes)
    for row in adapter.describe():
        legs = ", ".join(f"{leg}={size}" for leg, size in row["legs"].items())
        node = adapter.node(row["name"])
        extra = getattr(node, "construction", None)
        lines.append(f"    {row['name']:<{width}}  {row['kind']:<10} [{legs}]  params={row['parameters']}"
                     + ("  shared" if row["shared"] else "") + (f"  ({extra})" if extra else ""))
    hyper = net.hyperedges()
    if hyper:
        lines.append("  hyperedges: " + ", ".join(f"{leg} on {net.legs()[leg]}" for leg in hyper))
    equation, operands = net.to_einsum()
    lines.append(f"  einsum: {equation}   operands: {', '.join(operands)}")
    lines.append(f"  trainable parameters: {adapter.num_parameters()}"
                 f"  (LoRA r=4 would have {4 * (in_features + out_features)})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    net = load_from_args(args)
    print(report(net, args.in_features, args.out_features))
    return 0
