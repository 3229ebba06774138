"""Package contracts: the tree is the architecture, and these tests hold the code to it.

- ``import tn_peft`` and the command line's ``--help`` pay for no torch; public names load on first use.
- ``tn_peft.graph`` (structure) imports neither torch nor :mod:`tn_peft.model` when imported.
- No library package imports the command line (``tn_peft.cli``) or the applications (``tn_peft.apps``).
- No import cycle among the sub-packages, lazy (function-level) imports included.
- Every sub-command's parser lives in ``tn_peft.cli``; the command line sits above the applications: the
  applications import it only in :data:`CLI_DRIVERS`, the programs that run the whole command line.
- Old import paths load the moved modules themselves, and warn once, naming the new path.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tn_peft._moved import MOVED
from tn_peft.apps.bench import imports

PACKAGE = Path(__file__).resolve().parents[1] / "tn_peft"
#: sub-packages that are not the library: nothing in the library may import them
OUTSIDE = ("cli", "apps")
#: application files that drive the whole command line (the fuzzer's CLI surface; the GPU-image dry run),
#: the only ones that may import :mod:`tn_peft.cli`; their edges to it are no dependency of the application
CLI_DRIVERS = ("tn_peft/apps/fuzz/cli_surface.py", "tn_peft/apps/bench/device_image.py")


def _run(code: str) -> str:
    """Run ``code`` in a fresh interpreter; its stdout, once it exited 0 (else the test fails with its stderr)."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _unit(path: Path) -> str:
    """The sub-package a file belongs to (``graph``), or its own name for a top-level module (``errors``)."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def imported_units(path: Path) -> dict[str, int]:
    """Units of tn_peft that ``path`` imports, function-level imports included -> the first line doing so.
    ``tn_peft/__init__.py`` (the public façade, ``__version__``) is left out: it is no unit."""
    parts = ("tn_peft", *path.relative_to(PACKAGE).with_suffix("").parts)
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[tuple[str, ...]] = []
        if isinstance(node, ast.ImportFrom):
            base = tuple(package[: len(package) - node.level + 1]) if node.level else ()
            module = base + tuple(node.module.split(".") if node.module else ())
            names = [module + (alias.name,) for alias in node.names] if len(module) == 1 else [module]
        elif isinstance(node, ast.Import):
            names = [tuple(alias.name.split(".")) for alias in node.names]
        for name in names:
            if name[0] == "tn_peft" and len(name) > 1 and not name[1].startswith("__"):
                unit = name[1]
                if (PACKAGE / unit).is_dir() or (PACKAGE / f"{unit}.py").is_file():
                    found.setdefault(unit, node.lineno)
    return found


def unit_graph() -> dict[str, dict[str, str]]:
    """unit -> {unit it imports: 'file:line' of one such import}, over every module of the package."""
    graph: dict[str, dict[str, str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "__init__.py":
            continue
        unit = _unit(path)
        driver = str(path.relative_to(PACKAGE.parent)) in CLI_DRIVERS
        for other, line in imported_units(path).items():
            if other != unit and not (driver and other == "cli"):
                graph.setdefault(unit, {}).setdefault(other, f"{path.relative_to(PACKAGE.parent)}:{line}")
    return graph


@pytest.mark.parametrize("code", [
    "import tn_peft; print(tn_peft.__version__, tn_peft.SpecError)",
    imports.CASES["tn-peft --help"],
    imports.CASES["tn-peft check --help"],
])
def test_no_torch_until_the_engine_is_used(code):
    _run(code + "\nimport sys; assert 'torch' not in sys.modules")


def test_lazy_names_and_submodules():
    out = _run("import sys, tn_peft\n"
                  "assert tn_peft.get_model.__module__ == 'tn_peft.model.model' and 'torch' in sys.modules\n"
                  "assert tn_peft.model.layers.TnLinear and 'load_graph' in dir(tn_peft)\n"
                  "from tn_peft import Adapter, AdapterConfig, Network, TnPeftModel, catalog, from_pretrained\n"
                  "from tn_peft.model import get_model, TnPeftModel as T\n"
                  "assert get_model is tn_peft.get_model and T is TnPeftModel\n"
                  "try:\n    tn_peft.no_such_name\nexcept AttributeError as e:\n    print(e)\n")
    assert "has no attribute 'no_such_name'" in out


def test_planning_stays_outside_a_compiled_graph_once_an_adapter_exists():
    """torch._dynamo is imported when the first adapter is built, not with tn_peft."""
    _run("import sys, tn_peft\nassert 'torch._dynamo' not in sys.modules\n"
         "a = tn_peft.load_graph('lora').build(8, 8)\n"
         "assert a._plan_family.__func__._tn_peft_outside_graph\n")


GRAPH_MODULES = sorted(f"tn_peft.graph.{p.stem}" for p in (PACKAGE / "graph").glob("*.py") if p.stem != "__init__")


def test_checking_a_graph_imports_no_torch():
    """Loading, validating and sizing every catalog graph, and refusing a bad option, is structure only."""
    _run("import sys\n"
         "from tn_peft.errors import SpecError\n"
         "from tn_peft.graph.spec import catalog, load_graph\n"
         "for name in catalog():\n"
         "    net = load_graph(name)\n"
         "    net.validate()\n"
         "    net.resolve(64, 48)\n"
         "try:\n"
         "    load_graph({'nodes': [{'name': 'a', 'kind': 'dense', 'legs': ['out', 'in'], 'options': {'colour': 1}}],"
         " 'open': {'out': 'out', 'in': 'in'}})\n"
         "except SpecError as err:\n"
         "    assert 'colour' in str(err), err\n"
         "else:\n"
         "    raise AssertionError('a bad option passed')\n"
         "assert 'torch' not in sys.modules, 'checking a graph imported torch'\n")


@pytest.mark.parametrize("module", GRAPH_MODULES)
def test_graph_imports_neither_torch_nor_model(module):
    _run(f"import sys, {module}\n"
         "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('tn_peft.model'))\n"
         "assert not bad, bad\n")
    graph = unit_graph()
    assert "model" not in graph.get("graph", {}), f"graph imports tn_peft.model at {graph['graph']['model']}"


def test_the_library_imports_neither_the_cli_nor_the_applications():
    bad = [f"{where} imports tn_peft.{unit}" for source, targets in unit_graph().items() if source not in OUTSIDE
           for unit, where in targets.items() if unit in OUTSIDE]
    # nor by a dotted string (importlib.import_module("tn_peft.apps...")); _moved's table of old paths aside
    for path in PACKAGE.rglob("*.py"):
        if _unit(path) in OUTSIDE or path.name == "_moved.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    any(node.value.startswith(f"tn_peft.{unit}") for unit in OUTSIDE):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} names {node.value!r}")
    assert not bad, "\n".join(bad)


def test_no_import_cycle_among_the_sub_packages():
    """Lazy imports count too: a function-level import is a dependency all the same."""
    graph = unit_graph()

    def cycle_from(start, path):
        for nxt in sorted(graph.get(path[-1], {})):
            if nxt == start:
                return path + [start]
            if nxt not in path and nxt > start:  # each cycle once, from its smallest unit
                found = cycle_from(start, path + [nxt])
                if found:
                    return found
        return None

    cycles = [c for c in (cycle_from(name, [name]) for name in sorted(graph)) if c]
    assert not cycles, "import cycles:\n" + "\n".join(
        " -> ".join(c) + "  (" + ", ".join(graph[a][b] for a, b in zip(c, c[1:])) + ")" for c in cycles)


def test_every_parser_is_in_the_cli_and_applications_do_not_import_it():
    """No ``add_argument`` outside :mod:`tn_peft.cli`; no application module but a driver imports the CLI."""
    parsers, imports_cli = [], []
    for path in PACKAGE.rglob("*.py"):
        rel = str(path.relative_to(PACKAGE.parent))
        if _unit(path) == "cli":
            continue
        tree = ast.parse(path.read_text())
        parsers += [f"{rel}:{n.lineno}" for n in ast.walk(tree)
                    if isinstance(n, ast.Attribute) and n.attr in ("add_argument", "add_parser", "ArgumentParser")]
        if "cli" in imported_units(path) and rel not in CLI_DRIVERS:
            imports_cli.append(f"{rel}:{imported_units(path)['cli']}")
    assert not parsers, "argparse parsers outside tn_peft/cli: " + ", ".join(parsers)
    assert not imports_cli, "applications importing the command line: " + ", ".join(imports_cli)
    assert all((PACKAGE.parent / d).is_file() for d in CLI_DRIVERS)


def test_the_unit_graph_sees_lazy_and_relative_imports():
    """The walker itself: it must see what the contracts above rely on."""
    graph = unit_graph()
    assert "nodes" in graph["graph"]  # network.validate's function-level import of the node kinds
    assert "io" in graph["model"] and "planner" in graph["adapter"]


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_import_paths_load_the_moved_module_and_warn_once(old):
    new = MOVED[old]
    _run("import importlib, sys, warnings\n"
         "warnings.simplefilter('always')\n"
         "with warnings.catch_warnings(record=True) as caught:\n"
         f"    old = importlib.import_module({old!r})\n"
         f"    again = importlib.import_module({old!r})\n"
         f"assert old is again is importlib.import_module({new!r}), (old, {new!r})\n"
         "texts = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)\n"
         "         and 'tn_peft' in str(w.message)]\n"
         f"assert texts == [{old!r} + ' moved to ' + {new!r} + "
         "'; import it from there (the old path will be removed)'], texts\n")


def test_a_moved_package_keeps_its_submodules():
    _run("import warnings\nwarnings.simplefilter('error', DeprecationWarning)\n"
         "import tn_peft.apps.finetune.grid as new\n"
         "warnings.simplefilter('always')\n"
         "with warnings.catch_warnings(record=True) as caught:\n"
         "    from tn_peft.finetune import grid\n    import tn_peft.finetune.report\n"
         "assert grid is new\nimport tn_peft.apps.finetune.report as r\n"
         "assert tn_peft.finetune.report is r\n"
         "assert len([w for w in caught if 'tn_peft.finetune moved' in str(w.message)]) == 1\n")


def test_the_version_is_written_once():
    """pyproject.toml reads the version from tn_peft.__version__ (setuptools' static attr), never its own copy."""
    import tomllib

    import tn_peft

    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "tn_peft.__version__"}
    assert tn_peft.__version__.count(".") == 2
