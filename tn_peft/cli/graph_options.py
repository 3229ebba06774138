"""The options every graph command (check, draw, plan) takes, and reading the graph they name."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from ..errors import SpecError
from .vocabulary import add_option


def add_graph_arguments(parser: argparse.ArgumentParser, *, sizes_required: bool = False) -> None:
    """GRAPH, --in-features, --out-features and --set key=value: the options every graph command takes.

    ``--in`` / ``--out``, their old spellings, still work with a one-line note: ``--out`` read like the
    output *file* (``tn-peft draw tt --out tt.png``), which is ``-o/--output``."""
    parser.add_argument("graph", metavar="GRAPH", help="a catalog name (e.g. quantum_peft) or a path to a YAML file")
    for side, text in (("in", "input"), ("out", "output")):
        add_option(parser, f"--{side}-features", old=(f"--{side}",), dest=f"{side}_features", type=_layer_size(side),
                   default=None if sizes_required else 1024, required=sizes_required, metavar="N",
                   help=f"the layer's {text} size (default 1024)")
    add_set(parser, "override graph parameters, e.g. --set rank=8 layers=3")


def add_set(parser: argparse.ArgumentParser, text: str) -> None:
    """``--set KEY=VALUE ...``: graph parameters, as (key, value) pairs (values parsed as YAML scalars)."""
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", type=key_value, default=[],
                        metavar="KEY=VALUE", help=text + " (space-separated, or repeated)")


def key_value(text: str) -> tuple[str, Any]:
    """One ``--set key=value``, as an argparse type."""
    try:
        ((key, value),) = parse_overrides([text]).items()
    except SpecError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return key, value


def _layer_size(side: str):
    """argparse type of --in-features / --out-features: a positive integer; a file name gets the hint."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a layer size; --{side}-features (old spelling --{side}) takes the layer's "
                f"{side}put size, an integer" + ("; the file to write is -o/--output" if side == "out" else "")) from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"the layer's {side}put size must be at least 1, got {value}")
        return value
    return parse


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

    return load_graph(args.graph, **dict(args.overrides))
