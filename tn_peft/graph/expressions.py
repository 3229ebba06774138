"""The small expression language of graph specs: sizes, templates and loops.

- Size expressions: integer arithmetic over graph parameters, the layer's ``in``/``out`` sizes and
  other legs' sizes: ``rank``, ``2 * rank``, ``out // heads``, ``min(rank, in)``.
- Templates: ``"r{i-1}"`` substitutes ``{expr}``; a string that is exactly ``"{name}"`` takes the
  parameter's value with its type (so ``kind: "{map}"`` can pick a node kind).
- Loops and conditions on list items and mapping keys::

      "m{i} for i in 1..cores"            ->  m1, m2, ..., m<cores>   (ranges are inclusive)
      "r{i} if i < cores"                 ->  kept only when the condition holds
      "g{i}_{j} for i in 1..d, j in i+1..d"

Only arithmetic, comparisons, ``and/or/not``, ``min``, ``max`` and ``abs`` are allowed: specs come
from files and are never executed as Python. The work is bounded (:mod:`tn_peft.limits`): integers
wider than ``MAX_INT_BITS`` are refused before they are computed, strings take part in comparisons
only, and a loop clause expands to at most ``MAX_LOOP_ITERATIONS`` scopes.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Iterator, Mapping
from typing import Any

from ..limits import MAX_INT_BITS, MAX_LOOP_ITERATIONS

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
           ast.Div: operator.truediv}
_CMPOPS = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
           ast.Eq: operator.eq, ast.NotEq: operator.ne}
_FUNCS = {"min": min, "max": max, "abs": abs}
_IN_WORD = re.compile(r"\bin\b")


class ExpressionError(ValueError):
    """An expression cannot be parsed or evaluated; callers turn it into a SpecError with context."""


def _prepare(text: str) -> str:
    # ``in`` is a Python keyword; inside an arithmetic expression it can only mean the layer's input size.
    return _IN_WORD.sub("in_", text.strip())


def evaluate(text: str | float, names: Mapping[str, Any]) -> Any:
    """Evaluate a spec expression with ``names`` in scope.

    >>> evaluate("2 * rank + in", {"rank": 4, "in": 10})
    18
    """
    if isinstance(text, bool):
        return text
    if isinstance(text, (int, float)):
        return text
    scope = {("in_" if k == "in" else k): v for k, v in names.items()}
    try:
        tree = ast.parse(_prepare(str(text)), mode="eval")
    except SyntaxError:
        raise ExpressionError(f"cannot parse expression {text!r}") from None
    try:
        return _eval(tree.body, scope, str(text))
    except ExpressionError:
        raise
    except (ZeroDivisionError, TypeError, ValueError, OverflowError) as exc:  # 'x' >= 1, rank // 0, min(), 2.0 ** 1e4
        raise ExpressionError(f"{text!r}: {exc}") from None


def _eval(node: ast.AST, scope: Mapping[str, Any], text: str) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str)):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in scope:
            name = "in" if node.id == "in_" else node.id
            known = ", ".join(sorted("in" if k == "in_" else k for k in scope))
            raise ExpressionError(f"{name!r} is not defined in {text!r} (defined: {known})")
        return scope[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _eval(node.left, scope, text), _eval(node.right, scope, text)
        return _arithmetic(type(node.op), left, right, text)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
        value = _eval(node.operand, scope, text)
        if isinstance(node.op, ast.Not):
            return not value
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.Compare):
        left = _eval(node.left, scope, text)
        for op, comp in zip(node.ops, node.comparators):
            if type(op) not in _CMPOPS:
                break
            right = _eval(comp, scope, text)
            if not _CMPOPS[type(op)](left, right):
                return False
            left = right
        else:
            return True
    if isinstance(node, ast.BoolOp):
        values = [_eval(v, scope, text) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.IfExp):
        cond = _eval(node.test, scope, text)
        return _eval(node.body if cond else node.orelse, scope, text)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS
            and not node.keywords):
        return _FUNCS[node.func.id](*(_eval(a, scope, text) for a in node.args))
    raise ExpressionError(f"{text!r} uses something other than arithmetic, comparisons, min/max/abs")


def _bits(value: Any) -> int:
    return abs(value).bit_length() if isinstance(value, int) and not isinstance(value, bool) else 0


def _arithmetic(op: type, left: Any, right: Any, text: str) -> Any:
    """``left op right`` for numbers only, refusing integers wider than MAX_INT_BITS before computing them."""
    for value in (left, right):
        if isinstance(value, str) or not isinstance(value, (int, float)):
            raise ExpressionError(f"{text!r}: arithmetic takes numbers, got {value!r}")
    if op is ast.Pow and isinstance(left, int) and isinstance(right, (int, float)) and abs(left) > 1 and (
            right > MAX_INT_BITS or (right > 0 and (_bits(left) - 1) * right > MAX_INT_BITS)):
        raise ExpressionError(f"{text!r}: {left} ** {right} is wider than {MAX_INT_BITS} bits "
                                  f"(tn_peft.limits.MAX_INT_BITS)")
    if op is ast.Mult and _bits(left) + _bits(right) > MAX_INT_BITS + 1:
        raise ExpressionError(f"{text!r}: {left} * {right} is wider than {MAX_INT_BITS} bits (tn_peft.limits.MAX_INT_BITS)")
    result = _BINOPS[op](left, right)
    if _bits(result) > MAX_INT_BITS:
        raise ExpressionError(f"{text!r}: {result} is wider than {MAX_INT_BITS} bits (tn_peft.limits.MAX_INT_BITS)")
    return result


_FIELD = re.compile(r"\{([^{}]+)\}")
_LOOP = re.compile(r"^(?P<body>.*?)\s+for\s+(?P<loops>.+?)(?:\s+if\s+(?P<cond>.+))?$")
_COND = re.compile(r"^(?P<body>.*?)\s+if\s+(?P<cond>.+)$")
_RANGE = re.compile(r"^\s*(?P<var>[A-Za-z_]\w*)\s+in\s+(?P<lo>.+?)\.\.(?P<hi>.+?)\s*$")


def substitute(template: Any, names: Mapping[str, Any]) -> Any:
    """Fill ``{expr}`` fields of a string; a string that is one whole field keeps the value's type.

    >>> substitute("r{i-1}", {"i": 3})
    'r2'
    >>> substitute("{rank}", {"rank": 4})
    4
    """
    if not isinstance(template, str):
        return template
    whole = _FIELD.fullmatch(template.strip())
    if whole:
        return evaluate(whole.group(1), names)
    return _FIELD.sub(lambda m: str(evaluate(m.group(1), names)), template)


def _split_loops(loops: str) -> list[tuple[str, str, str]]:
    parts, depth, current = [], 0, ""
    for ch in loops:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    out = []
    for part in parts:
        match = _RANGE.match(part)
        if not match:
            raise ExpressionError(f"loop {part.strip()!r} is not of the form 'VAR in LOW..HIGH'")
        out.append((match["var"], match["lo"], match["hi"]))
    return out


def iterate(text: str, names: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield one scope per iteration of a loop clause such as ``"i in 1..n, j in i+1..n"``."""
    loops = _split_loops(text)
    count = 0

    def walk(level: int, scope: dict[str, Any]) -> Iterator[dict[str, Any]]:
        nonlocal count
        if level == len(loops):
            count += 1
            if count > MAX_LOOP_ITERATIONS:
                raise ExpressionError(f"loop {text!r} expands to more than {MAX_LOOP_ITERATIONS:,} items "
                                      f"(tn_peft.limits.MAX_LOOP_ITERATIONS)")
            yield scope
            return
        var, lo, hi = loops[level]
        start, stop = evaluate(lo, scope), evaluate(hi, scope)
        if not (isinstance(start, int) and isinstance(stop, int)) or isinstance(start, bool) or isinstance(stop, bool):
            raise ExpressionError(f"loop bounds {lo}..{hi} must be integers, got {start!r}..{stop!r}")
        for value in range(start, stop + 1):
            yield from walk(level + 1, {**scope, var: value})

    yield from walk(0, dict(names))


def expand(item: Any, names: Mapping[str, Any]) -> list[tuple[Any, dict[str, Any]]]:
    """Expand one list item or mapping key with its ``for``/``if`` clauses.

    Returns ``(value, scope)`` pairs: the substituted value and the scope it was made in.

    >>> [v for v, _ in expand("m{i} for i in 1..3", {})]
    ['m1', 'm2', 'm3']
    >>> [v for v, _ in expand("r{i} if i < 2", {"i": 2})]
    []
    """
    if not isinstance(item, str):
        return [(item, dict(names))]
    loop = _LOOP.match(item)
    if loop and _RANGE.match(_split_first(loop["loops"])):
        out = []
        for scope in iterate(loop["loops"], names):
            if loop["cond"] is None or evaluate(loop["cond"], scope):
                out.append((substitute(loop["body"], scope), scope))
        return out
    cond = _COND.match(item)
    if cond:
        if evaluate(cond["cond"], names):
            return [(substitute(cond["body"], names), dict(names))]
        return []
    return [(substitute(item, names), dict(names))]


def _split_first(loops: str) -> str:
    return loops.split(",")[0]
