"""The ``>>>`` examples in tn_peft's docstrings run, and give what they show (issue 13, item 8)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import tn_peft

MODULES = sorted(info.name for info in pkgutil.walk_packages(tn_peft.__path__, "tn_peft.")
                 if not info.name.endswith("__main__"))


def _examples(name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(name)
    return [t for t in doctest.DocTestFinder(exclude_empty=True).find(module, name) if t.examples]


@pytest.mark.parametrize("name", [m for m in MODULES if _examples(m)])
def test_docstring_examples(name):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    for test in _examples(name):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


def test_the_examples_are_found():
    assert sum(len(t.examples) for m in MODULES for t in _examples(m)) >= 25
