"""Graph spec files: YAML (safe loading only) -> :class:`~tn_peft.graph.network.Network`.

A spec names its parameters with defaults (callers override them), the open legs, leg sizes and
nodes. Lists, node entries and size keys may loop (``for``) and branch (``if``); see
:mod:`tn_peft.graph.expressions`. The catalog lives in ``tn_peft/graph/catalog/`` (``graphs/`` at the repo root).

    name: lora
    description: LoRA, dW = (alpha/r) B A
    params: {rank: 4, alpha: 8}
    scale: alpha / rank
    open: {out: out, in: in}
    sizes: {r: rank}
    nodes:
      - {name: B, kind: dense, legs: [out, r], options: {init: zeros}}
      - {name: A, kind: dense, legs: [r, in], options: {init: kaiming}}
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import SpecError
from ..limits import MAX_NODES, MAX_SPEC_BYTES, MAX_SPEC_DEPTH, MAX_SPEC_ITEMS
from .expressions import ExpressionError, evaluate, expand, substitute
from ..names import graph_name_from_stem
from .network import Network

CATALOG_DIR = Path(__file__).parent / "catalog"
TOP_KEYS = {"name", "description", "params", "requires", "scale", "delta", "open", "sizes", "nodes"}
NODE_KEYS = {"name", "kind", "legs", "options", "shared", "for", "if"}
RESERVED = {"in", "out"}


class _LineLoader(yaml.SafeLoader):
    """A safe loader whose mappings remember the line they start on (for error messages)."""


class LineDict(dict):
    """A dict that knows its YAML line (``.line``, 1-based); serializes like any dict."""

    line: int | None = None


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    mapping = LineDict(loader.construct_pairs(node, deep=True))
    mapping.line = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def catalog() -> list[str]:
    """Names of the graphs shipped in ``tn_peft/graph/catalog``."""
    return sorted(p.stem for p in CATALOG_DIR.glob("*.yaml"))


def resolve_graph_path(graph: str | Path) -> Path:
    """A catalog name (``"lora"``) or a path to a YAML file -> the file's path."""
    path = Path(graph)
    if path.suffix in (".yaml", ".yml", ".json") or path.exists():
        if not path.exists():
            raise SpecError("no such graph file", source=str(path), fix="check the path")
        return path
    candidate = CATALOG_DIR / f"{graph}.yaml"
    if candidate.exists():
        return candidate
    raise SpecError(f"{graph!r} is neither a catalog graph nor a file",
                    fix=f"use one of the catalog graphs ({', '.join(catalog())}) or a path to a .yaml file")


def read_spec_file(path: str | Path) -> Mapping[str, Any]:
    """Parse a YAML (or JSON) graph file safely; syntax errors become SpecError with the line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read the file: {exc.strerror}", source=str(path), fix="check the path") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(f"is {len(raw):,} bytes, more than the limit of {MAX_SPEC_BYTES:,} "
                        f"(tn_peft.limits.MAX_SPEC_BYTES)", source=str(path),
                        fix="a graph file is a few KB: use for: loops instead of listing nodes one by one")
    try:
        text = raw.decode("utf-8-sig")  # a UTF-8 byte-order mark is allowed
    except UnicodeDecodeError as exc:
        utf16 = raw[:2] in (b"\xff\xfe", b"\xfe\xff")
        raise SpecError(f"is not UTF-8 text ({'a UTF-16 file' if utf16 else f'byte {exc.start} is 0x{raw[exc.start]:02x}'})",
                        source=str(path), fix="save the graph file as UTF-8 YAML or JSON") from None
    try:
        data = yaml.load(text, Loader=_LineLoader)
    except TypeError as exc:  # a mapping key that is itself a list or mapping
        raise SpecError(f"YAML structure error: {exc} (a mapping key must be a plain value)", source=str(path),
                        fix="use plain names as keys") from None
    except RecursionError:
        raise SpecError(f"is nested too deeply to parse (more than {MAX_SPEC_DEPTH} levels is refused: "
                        f"tn_peft.limits.MAX_SPEC_DEPTH)", source=str(path), fix="flatten the file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"YAML syntax error: {problem}", source=str(path),
                        line=mark.line + 1 if mark else None,
                        fix="fix the YAML at that line (indentation, a missing colon or bracket)") from None
    if not isinstance(data, dict):
        raise SpecError("the file does not hold a mapping of graph fields", source=str(path),
                        fix="start the file with keys such as name:, params:, nodes:")
    return data


def load_graph(graph: str | Path | Mapping[str, Any], **overrides: Any) -> Network:
    """Load a graph by catalog name, path, or spec mapping, overriding parameters.

    >>> net = load_graph("lora", rank=8)
    >>> net.params["rank"]
    8
    """
    if isinstance(graph, Network):
        return graph.with_params(**overrides) if overrides else graph
    return graph_template(graph).expand(overrides)


def graph_template(graph: str | Path | Mapping[str, Any]) -> Template:
    """The spec a catalog name, path, spec mapping or inline JSON text names, read (and bounded) but not
    expanded: its :attr:`Template.param_names` are known before any parameter is chosen."""
    if isinstance(graph, Mapping):
        return Template(graph, None)
    if isinstance(graph, str) and graph.lstrip().startswith("{"):
        try:
            return Template(json.loads(graph), "<inline spec>")
        except json.JSONDecodeError as exc:
            raise SpecError(f"inline JSON spec does not parse: {exc.msg}", source="<inline spec>",
                            line=exc.lineno, fix="pass valid JSON, a catalog name, or a path") from None
    path = resolve_graph_path(graph)
    return Template(read_spec_file(path), str(path))


@dataclass(frozen=True)
class Template:
    """A spec mapping as written (loops and ``{param}`` templates intact) and its source: the
    :attr:`Network.template <tn_peft.graph.network.Network.template>` that ``Network.with_params`` expands again."""

    spec: Mapping[str, Any]
    source: str | None

    @property
    def param_names(self) -> list[str]:
        """The parameters the spec declares (``params:``), in order."""
        params = self.spec.get("params") if isinstance(self.spec, Mapping) else None
        return list(params) if isinstance(params, Mapping) else []

    def expand(self, params: Mapping[str, Any]) -> Network:
        return network_from_spec(self.spec, source=self.source, overrides=params)


def network_from_spec(spec: Mapping[str, Any], *, source: str | None = None,
                      overrides: Mapping[str, Any] | None = None) -> Network:
    """Expand loops and templates of a spec mapping with its parameters and build the Network."""
    overrides = dict(overrides or {})
    check_bounds(spec, source)
    _check_keys(spec, TOP_KEYS, "graph", source)
    if not isinstance(spec.get("params") or {}, Mapping):
        raise SpecError(f"params: must map parameter names to default values, got {spec['params']!r}",
                        source=source, line=_line(spec), fix="write params: {rank: 4}")
    params = dict(spec.get("params") or {})
    for name in params:
        if name in RESERVED:
            raise SpecError(f"parameter {name!r} is reserved for the layer's size", source=source,
                            line=_line(spec.get("params")), fix="rename the parameter")
    for name, value in overrides.items():
        if name not in params:
            raise SpecError(f"has no parameter {name!r}", source=source or spec.get("name"),
                            fix=f"parameters are: {', '.join(sorted(params)) or '(none)'}")
        params[name] = value
    _check_requires(spec, params, source)
    if "name" in spec and not isinstance(spec["name"], str):
        raise SpecError(f"name: must be a string, got {type(spec['name']).__name__} {spec['name']!r}", source=source,
                        line=_line(spec), fix="quote it: name: \"my_graph\"")
    if "name" in spec:
        name = spec["name"]
    else:  # a file without name: its stem, made a valid graph name
        name = graph_name_from_stem(Path(source).stem) if source else "network"
    net = Network(name, params=params, scale=spec.get("scale", 1), delta=bool(spec.get("delta", False)),
                  description=str(spec.get("description", "")), source=source)
    scope = dict(params)

    def fail(exc: Exception, line: int | None, node: str | None = None) -> SpecError:
        return SpecError(str(exc), source=source, line=line, node=node,
                         fix="define the name under params:, or fix the loop / expression")

    open_spec = spec.get("open") or {"out": "out", "in": "in"}
    if not isinstance(open_spec, Mapping):
        raise SpecError("open: must map out and in to legs", source=source, line=_line(spec),
                        fix="write open: {out: out, in: in}")
    _check_keys(open_spec, {"out", "in"}, "open", source)
    for group, legs in open_spec.items():
        try:
            items = [legs] if isinstance(legs, str) else list(legs)
            expanded = [str(v) for item in items for v, _ in expand(item, scope)]
        except (ExpressionError, TypeError) as exc:
            raise fail(exc, _line(open_spec)) from None
        net.set_open(**{("in_" if group == "in" else group): expanded})
    sizes_spec = spec.get("sizes") or {}
    if not isinstance(sizes_spec, Mapping):
        raise SpecError("sizes: must map legs to size expressions", source=source, fix="write sizes: {r: rank}")
    for key, value in sizes_spec.items():
        try:
            for leg, loop_scope in expand(str(key), scope):
                net.set_size(str(leg), substitute(value, loop_scope))
        except ExpressionError as exc:
            raise fail(exc, _line(sizes_spec)) from None
    nodes = spec.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        raise SpecError("nodes: must be a non-empty list", source=source, line=_line(spec),
                        fix="list the network's nodes under nodes:")
    for entry in nodes:
        _add_nodes(net, entry, scope, source)
        if len(net.nodes) > MAX_NODES:
            raise SpecError(f"expands to more than {MAX_NODES:,} nodes (tn_peft.limits.MAX_NODES)", source=source,
                            line=_line(entry), node=str(entry.get("name")) if isinstance(entry, Mapping) else None,
                            fix="lower the loop's range (a number of cores or axes)")
    net.template = Template(copy.deepcopy(dict(spec)), source)
    return net.validate()


def check_bounds(spec: Any, source: str | None) -> None:
    """Refuse a spec nested deeper than MAX_SPEC_DEPTH or holding more than MAX_SPEC_ITEMS items (YAML
    aliases count each time they are used), before anything walks it recursively."""
    stack, items = [(spec, 1)], 0
    while stack:
        value, depth = stack.pop()
        items += 1
        if items > MAX_SPEC_ITEMS:
            raise SpecError(f"holds more than {MAX_SPEC_ITEMS:,} items (tn_peft.limits.MAX_SPEC_ITEMS; YAML "
                            f"aliases count each time they are used)", source=source, fix="write a smaller spec")
        if depth > MAX_SPEC_DEPTH:
            raise SpecError(f"is nested more than {MAX_SPEC_DEPTH} levels deep (tn_peft.limits.MAX_SPEC_DEPTH)",
                            source=source, line=_line(value) if isinstance(value, Mapping) else None,
                            fix="flatten the spec")
        if isinstance(value, Mapping):
            stack += [(v, depth + 1) for v in value.values()] + [(k, depth + 1) for k in value]
        elif isinstance(value, (list, tuple)):
            stack += [(v, depth + 1) for v in value]


def _check_requires(spec: Mapping[str, Any], params: Mapping[str, Any], source: str | None) -> None:
    """``requires:`` maps conditions on the parameters to why they must hold; the first that fails is a
    SpecError naming it and the parameters' values (``requires: {"1 <= center < cores": "..."}``)."""
    requires = spec.get("requires") or {}
    if not isinstance(requires, Mapping):
        raise SpecError("requires: must map conditions on the parameters to the reason they must hold",
                        source=source, line=_line(spec), fix='write requires: {"rank >= 1": "a bond needs a size"}')
    for condition, reason in requires.items():
        try:
            holds = evaluate(str(condition), params)
        except ExpressionError as exc:
            raise SpecError(f"requires: {exc}", source=source, line=_line(requires),
                            fix="conditions use the graph's params, which must be numbers there") from None
        if not holds:
            used = ", ".join(f"{name}={params[name]!r}" for name in sorted(params)
                             if re.search(rf"\b{re.escape(name)}\b", str(condition)))
            raise SpecError(f"needs {condition} ({reason}); got {used}", source=source, line=_line(requires),
                            fix="choose parameters that satisfy it")


def _add_nodes(net: Network, entry: Any, scope: Mapping[str, Any], source: str | None) -> None:
    line = _line(entry)
    if not isinstance(entry, Mapping):
        raise SpecError(f"a node entry must be a mapping, got {entry!r}", source=source, line=line,
                        fix="write - {name: A, kind: dense, legs: [r, in]}")
    _check_keys(entry, NODE_KEYS, f"node {entry.get('name', '?')!r}", source, line)
    for key in ("name", "kind", "legs"):
        if key not in entry:
            raise SpecError(f"node entry lacks {key}:", source=source, line=line, node=entry.get("name"),
                            fix="every node needs name, kind and legs")
    loop = entry.get("for")
    try:
        scopes = [dict(scope)]
        if loop:
            from .expressions import iterate

            scopes = list(iterate(str(loop), scope))
        for local in scopes:
            if "if" in entry and not _truth(entry["if"], local):
                continue
            name = str(substitute(entry["name"], local))
            kind = str(substitute(entry["kind"], local))
            legs_spec = entry["legs"]
            if isinstance(legs_spec, Mapping):
                legs: Any = {}
                for leg_item, size in legs_spec.items():
                    for leg, leg_scope in expand(str(leg_item), local):
                        legs[str(leg)] = substitute(size, leg_scope)
            elif isinstance(legs_spec, list):
                legs = [str(leg) for item in legs_spec for leg, _ in expand(item, local)]
            else:
                raise SpecError("legs: must be a list of leg names or a mapping leg -> size",
                                source=source, line=line, node=name, fix="write legs: [r, in]")
            options = entry.get("options") or {}
            if not isinstance(options, Mapping):
                raise SpecError("options: must be a mapping", source=source, line=line, node=name,
                                fix="write options: {init: zeros}")
            options = {str(k): _substitute_deep(v, local) for k, v in options.items()}
            # the options' keys are checked against the kind once, by the network's validate()
            net.add_node_options(name, kind, legs, options, shared=bool(entry.get("shared", False)), line=line)
    except ExpressionError as exc:
        raise SpecError(str(exc), source=source, line=line, node=str(entry.get("name")),
                        fix="define the name under params:, or fix the loop / expression") from None


def _substitute_deep(value: Any, scope: Mapping[str, Any]) -> Any:
    if isinstance(value, list):
        return [_substitute_deep(v, scope) for v in value]
    if isinstance(value, Mapping):
        return {k: _substitute_deep(v, scope) for k, v in value.items()}
    return substitute(value, scope)


def _truth(condition: Any, scope: Mapping[str, Any]) -> bool:
    from .expressions import evaluate

    return bool(evaluate(condition, scope))


def _check_keys(mapping: Mapping[str, Any], allowed: set[str], what: str, source: str | None,
                line: int | None = None) -> None:
    for key in mapping:
        if key not in allowed:
            raise SpecError(f"{what} has an unknown key {key!r}", source=source, line=line or _line(mapping),
                            fix=f"allowed keys: {', '.join(sorted(allowed))}")


def _line(obj: Any) -> int | None:
    return getattr(obj, "line", None)


def save_spec(net: Network, path: str | Path) -> Path:
    """Write ``net.to_spec()`` as YAML, atomically (temporary file, then rename)."""
    from ..io.atomic import atomic_write_text

    return atomic_write_text(Path(path), yaml.safe_dump(net.to_spec(), sort_keys=False))
