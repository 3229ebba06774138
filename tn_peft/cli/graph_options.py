"""Small CLI commands that belong to no bigger module (check, draw), and their shared options."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from ..errors import SpecError


def add_graph_arguments(parser: argparse.ArgumentParser, *, sizes_required: bool = False) -> None:
    """GRAPH, --in, --out and --set key=value: the options every graph command takes."""
    parser.add_argument("graph", metavar="GRAPH", help="a catalog name (e.g. quantum_peft) or a path to a YAML file")
    parser.add_argument("--in", dest="in_features", type=int, default=None if sizes_required else 1024,
                        required=sizes_required, help="the layer's input size N (default 1024)")
    parser.add_argument("--out", dest="out_features", type=int, default=None if sizes_required else 1024,
                        required=sizes_required, help="the layer's output size M (default 1024)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a graph parameter, e.g. --set rank=8 (repeatable)")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["rank=8", "map=cayley"]`` -> ``{"rank": 8, "map": "cayley"}`` (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--set {item!r} is not of the form KEY=VALUE", fix="write e.g. --set rank=8")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def load_from_args(args: argparse.Namespace):
    """The Network named by GRAPH with the --set overrides."""
    from ..graph.spec import load_graph

    return load_graph(args.graph, **parse_overrides(args.overrides))
