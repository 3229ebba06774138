"""Random inputs and mutations shared by the fuzz surfaces (all drawn from a ``random.Random``)."""

from __future__ import annotations

import random
from typing import Any

#: scalars that break assumptions: wrong types, signs, sizes, special strings and expressions
ODD_SCALARS: tuple[Any, ...] = (None, True, False, 0, -1, 1, 2.5, -0.0, float("nan"), float("inf"), 10**12, 2**70,
                                "", "x", "rank", "{rank}", "{rank * 0}", "1..3", "i in 1..10**9", "10**10**10",
                                "__import__('os')", "../../etc/passwd", "\x00", "é" * 3, "{", "}", "in",
                                "r{i} for i in 1..cores", "m{i} if i > 1")


def random_value(rng: random.Random, depth: int = 0, keys: tuple[str, ...] = ()) -> Any:
    """A random YAML-able value: scalars, lists and mappings (keys from ``keys`` or odd ones), 3 levels at most."""
    roll = rng.random()
    if depth >= 3 or roll < 0.55:
        return rng.choice(ODD_SCALARS)
    if roll < 0.8:
        return [random_value(rng, depth + 1, keys) for _ in range(rng.randint(0, 4))]
    pool = list(keys) + ["name", "kind", "legs", "x", "for", "if", "options"]
    return {rng.choice(pool): random_value(rng, depth + 1, keys) for _ in range(rng.randint(0, 4))}


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """1-5 of: flip a byte, insert random bytes, delete a range, duplicate a range, truncate."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 5)):
        if not out:
            out += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            continue
        op = rng.randrange(5)
        i = rng.randrange(len(out))
        if op == 0:
            out[i] = rng.randrange(256)
        elif op == 1:
            out[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 2:
            del out[i:i + rng.randint(1, 16)]
        elif op == 3:
            out[i:i] = out[i:i + rng.randint(1, 32)]
        else:
            del out[i:]
    return bytes(out)


def mutate_structure(value: Any, rng: random.Random, keys: tuple[str, ...] = ()) -> Any:
    """A copy of a nested value with 1-3 random edits: replace a value, delete a key or item, duplicate an item."""
    import copy

    root = {"root": copy.deepcopy(value)}
    for _ in range(rng.randint(1, 3)):
        parent, key = root, "root"
        while isinstance(parent[key], (dict, list)) and parent[key] and rng.random() < 0.7:
            parent = parent[key]
            key = rng.choice(list(parent)) if isinstance(parent, dict) else rng.randrange(len(parent))
        op = rng.randrange(4)
        if op == 0 or not isinstance(parent, (dict, list)):
            parent[key] = random_value(rng, 1, keys)
        elif op == 1 and isinstance(parent, dict) and parent is not root:
            del parent[key]
        elif op == 2 and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        else:
            parent[key] = random_value(rng, 2, keys)
    return root["root"]


#: strings that would run code if a name reached generated source raw (issue 28): line breaks with
#: indentation, import and getattr calls, quote, comment and docstring breakers, unicode and form-feed line
#: separators, NULs, dunders, and names that are keywords or torch attributes
CODE_PAYLOADS: tuple[str, ...] = (
    "r\n    import os; os.system('touch pwned')\n    #",
    "r\r    __import__('os').system('touch pwned')",
    "__import__('os').system('touch pwned')",
    "getattr(__import__('os'),'system')('touch pwned')",
    "r')\nopen('pwned', 'w')\n('",
    'r"""\nimport os\n"""',
    "r # x\nimport subprocess",
    "r\u2028import os",
    "r\u2029import os",
    "r\x0cimport os",
    "r\x00",
    "r\\\nimport os",
    "{__import__('os')}",
    "__class__",
    "__builtins__",
    "training",
    "forward",
    "lambda",
    "r" * 65,
    "é",
)


def plant_payload(value: Any, rng: random.Random) -> tuple[Any, str]:
    """A copy of a nested spec or config with a code payload planted, and what was planted where.

    Half the time a name is renamed everywhere it occurs (as a key and as a string value), as an attacker
    would to keep a spec consistent; otherwise one string field (a key or a value) is replaced.
    """
    payload = rng.choice(CODE_PAYLOADS)
    strings = sorted(_strings(value))
    if not strings:
        return value, "no string to plant in"
    old = rng.choice(strings)
    if rng.random() < 0.5:
        return _rename(value, old, payload), f"{old!r} renamed to {payload!r} everywhere"
    return _rename(value, old, payload, once=[False]), f"one {old!r} replaced by {payload!r}"


def _strings(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(_strings(k) | _strings(v) for k, v in value.items())) if value else set()
    if isinstance(value, list):
        return set().union(*(_strings(v) for v in value)) if value else set()
    return set()


def _rename(value: Any, old: str, new: str, once: list[bool] | None = None) -> Any:
    """A new nested value: ``value`` with the string ``old`` (keys and values) replaced by ``new``; only the
    first one if ``once`` (a one-item flag, set when it is done)."""
    def swap(text: Any) -> Any:
        if text != old or (once is not None and once[0]):
            return text
        if once is not None:
            once[0] = True
        return new

    if isinstance(value, dict):
        return {swap(k): _rename(v, old, new, once) for k, v in value.items()}
    if isinstance(value, list):
        return [_rename(v, old, new, once) for v in value]
    return swap(value)
