"""Module-name patterns from configs, bounded so that matching them always ends quickly.

``target_modules`` (a regex string), ``exclude_modules``, ``modules_to_save``, ``layer_graph_args`` keys and
``layers_pattern`` are regular expressions, and an ``adapter_config.json`` from a stranger carries them.
Python's ``re`` backtracks: ``(a+)+$`` takes exponential time and k sequential ``.*`` take ``n^k`` on a
failing name of length n. Rather than run a matcher under a timer, a pattern is refused before any
matching when it could be slow:

- longer than :data:`~tn_peft.limits.MAX_PATTERN_CHARS` characters;
- an unbounded repeat (``*``, ``+``, ``{n,}``) inside another one, or around an alternation (``(a|ab)*``);
- more than :data:`~tn_peft.limits.MAX_PATTERN_REPEATS` unbounded repeats in all, tn_peft's own wrapper
  (e.g. ``(.*\\.)?(KEY)$``) counted.

Every pattern in PEFT's and tn_peft's documentation passes (``.*\\.(q_proj|v_proj)``,
``.*decoder.*(self_attn|encoder_attn).*(q_proj|v_proj)$``).
"""

from __future__ import annotations

import re

try:  # Python 3.11+
    from re import _parser as sre_parse
except ImportError:  # pragma: no cover - Python 3.10
    import sre_parse

from .errors import SpecError
from .limits import MAX_PATTERN_CHARS, MAX_PATTERN_REPEATS

_REPEATS = (sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT, getattr(sre_parse, "POSSESSIVE_REPEAT", None))


def check_pattern(what: str, pattern: str, used_as: str | None = None) -> None:
    """SpecError naming ``what`` when ``pattern`` (matched as the regex ``used_as`` it is built into) is too
    long, does not compile, or could backtrack for long (see module docstring)."""
    if not isinstance(pattern, str):
        raise SpecError(f"{what} {pattern!r} must be a string", fix="pass a module name or a regex string")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise SpecError(f"{what} is a pattern of {len(pattern):,} characters, more than the limit of "
                        f"{MAX_PATTERN_CHARS:,} (tn_peft.limits.MAX_PATTERN_CHARS)",
                        fix="list the module names instead, or shorten the regex")
    regex = pattern if used_as is None else used_as
    try:
        re.compile(regex)
        parsed = sre_parse.parse(regex)
    except (re.error, RecursionError, OverflowError) as exc:
        raise SpecError(f"{what} {pattern!r} is not a valid regex ({exc})",
                        fix="escape special characters (re.escape) or fix the pattern") from None
    problem = _slow_structure(parsed)
    if problem is None:
        count = _count_unbounded(parsed)
        if count > MAX_PATTERN_REPEATS:
            problem = (f"it has {count} unbounded repeats as matched, more than the limit of "
                       f"{MAX_PATTERN_REPEATS} (tn_peft.limits.MAX_PATTERN_REPEATS)")
    if problem is not None:
        raise SpecError(f"{what} {pattern!r} could make matching module names take very long: {problem}",
                        fix="use fewer '*' / '+' (e.g. '.*\\\\.(q_proj|v_proj)'), or list the module names")


def _subpatterns(op, arg) -> list:
    """The sub-patterns directly inside one parsed item."""
    if op in _REPEATS:
        return [arg[2]]
    if op is sre_parse.SUBPATTERN:
        return [arg[-1]]
    if op is sre_parse.BRANCH:
        return list(arg[1])
    if op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT):
        return [arg[1]]
    if op is getattr(sre_parse, "ATOMIC_GROUP", None):
        return [arg]
    if op is sre_parse.GROUPREF_EXISTS:
        return [p for p in arg[1:] if p is not None]
    return []


def _unbounded(op, arg) -> bool:
    return op in _REPEATS and arg[1] == sre_parse.MAXREPEAT


def _slow_structure(parsed, inside_repeat: bool = False) -> str | None:
    """The first nested unbounded repeat, or unbounded repeat around an alternation, else None."""
    for op, arg in parsed:
        unbounded = _unbounded(op, arg)
        if inside_repeat and (unbounded or op is sre_parse.BRANCH):
            return ("an unbounded repeat holds another one" if unbounded
                    else "an unbounded repeat holds an alternation")
        for sub in _subpatterns(op, arg):
            problem = _slow_structure(sub, inside_repeat or unbounded)
            if problem is not None:
                return problem
    return None


def _count_unbounded(parsed) -> int:
    return sum(int(_unbounded(op, arg)) + sum(_count_unbounded(sub) for sub in _subpatterns(op, arg))
               for op, arg in parsed)
