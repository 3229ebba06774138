"""The README and examples/ run as written, and the numbers they quote are the ones on file (issue 27, item 1).

What the README's markers mean (HTML comments: invisible on GitHub):

- Every fenced block names its language. ``python`` blocks run, each in a fresh process in an empty
  folder, unless the line before says ``<!-- docs: fragment (why) -->`` (then it must compile) or
  ``<!-- docs: copy of PATH -->`` (then it must equal that file, which runs below). ``yaml`` blocks
  are graphs (loaded and built; ``<!-- docs: equivalent to PATH -->`` compares them to that graph).
  ``bash`` lines and ``$ tn-peft ...`` lines of ``text`` blocks that call ``tn-peft`` must parse with
  today's command line. ``text`` blocks only show output; ``diff`` blocks show a change.
- ``<!--json KEY-->NUMBER`` ties the number after it to a JSON file: ``KEY`` is ``[FILE#]PATH[*SCALE]``,
  ``PATH`` a dotted path whose steps are names, ``[i]`` indexes or ``[field=value]`` list selectors,
  and ``FILE`` (relative to the repository) defaults to the last ``<!--json-source FILE-->``. A list
  value ties as many numbers in a row (``76.93 ± 0.47``). The quoted number must be the file's value
  rounded to the quoted digits.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LANGUAGES = {"python", "bash", "yaml", "text", "diff"}
#: README python blocks over ~10 s (a MiniLM model loaded twice); the quick start stays in the default suite
SLOW_BLOCKS = ("tn_peft.get_model(model, config)",)


@dataclass
class Block:
    file: Path
    line: int  # 1-based line of the opening fence
    language: str
    text: str
    marker: str  # the `<!-- docs: ... -->` on the line before, or ""

    @property
    def name(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a markdown file, with their languages and markers."""
    lines = path.read_text(encoding="utf-8").split("\n")
    found, start, language = [], None, ""
    for i, line in enumerate(lines):
        if not line.startswith("```"):
            continue
        if start is None:
            start, language = i, line[3:].strip()
            continue
        before = lines[start - 1].strip() if start else ""
        marker = re.fullmatch(r"<!-- docs: (.*) -->", before)
        found.append(Block(path, start + 1, language, "\n".join(lines[start + 1:i]) + "\n",
                           marker.group(1) if marker else ""))
        start = None
    assert start is None, f"{path}:{start + 1}: a code fence is never closed"
    return found


ALL_BLOCKS = [b for path in DOCS for b in blocks(path)]
README_BLOCKS = [b for b in ALL_BLOCKS if b.file.name == "README.md"]
PYTHON = [b for b in README_BLOCKS if b.language == "python"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    return env


def _run(argv: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{shlex.join(argv)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done


def test_every_block_names_its_language():
    bad = [b.name for b in README_BLOCKS if b.language not in LANGUAGES]
    assert not bad, f"blocks without a known language (use ```text for output): {bad}"
    assert len(PYTHON) >= 4


@pytest.mark.parametrize("block", [pytest.param(b, id=b.name, marks=[pytest.mark.slow] if any(
    s in b.text for s in SLOW_BLOCKS) else []) for b in PYTHON if not b.marker])
def test_python_block_runs_as_written(block, tmp_path):
    (tmp_path / "block.py").write_text(block.text, encoding="utf-8")
    _run([sys.executable, "block.py"], tmp_path)


@pytest.mark.parametrize("block", [b for b in PYTHON if b.marker], ids=lambda b: b.name)
def test_marked_python_block(block):
    if block.marker.startswith("copy of "):
        source = (ROOT / block.marker.removeprefix("copy of ").strip()).read_text(encoding="utf-8")
        assert block.text == source, f"{block.name} differs from {block.marker}: copy the file again"
    else:
        assert block.marker.startswith("fragment"), f"{block.name}: unknown marker {block.marker!r}"
        ast.parse(block.text)


@pytest.mark.parametrize("block", [b for b in README_BLOCKS if b.language == "yaml"], ids=lambda b: b.name)
def test_yaml_block_is_a_graph(block):
    import yaml

    import tn_peft
    from tn_peft.testing import assert_equivalent

    net = tn_peft.load_graph(yaml.safe_load(block.text))
    net.build(in_features=24, out_features=16)
    if block.marker:
        other = block.marker.removeprefix("equivalent to ").strip()
        assert_equivalent(net, tn_peft.load_graph(ROOT / other), in_features=24, out_features=16)


def command_lines() -> list[tuple[str, list[str]]]:
    """(where, argv) of every ``tn-peft`` command in the README's bash blocks and ``$ tn-peft`` text lines."""
    found = []
    for b in README_BLOCKS:
        for k, line in enumerate(b.text.split("\n")):
            line = line.strip()
            if b.language == "text":
                if not line.startswith("$ tn-peft "):
                    continue
                line = line[2:]
            elif b.language != "bash":
                continue
            for part in re.split(r"&&|;", line.split(" #")[0]):
                words = shlex.split(part.strip(), comments=True)
                while words and "=" in words[0]:  # HF_HUB_OFFLINE=1 tn-peft ...
                    words = words[1:]
                if words[:1] == ["tn-peft"]:
                    # [--rank 0.99] shows an optional part; a|b shows a choice: parse the first
                    words = [w.strip("[]").split("|")[0] for w in words[1:]]
                    found.append((f"{b.name}+{k + 1}", words))
    return found


@pytest.mark.parametrize("where,argv", command_lines(), ids=[w for w, _ in command_lines()])
def test_readme_command_parses(where, argv):
    from tn_peft.cli import build_parser

    try:
        build_parser(argv).parse_args(argv)
    except SystemExit as err:
        pytest.fail(f"{where}: `tn-peft {shlex.join(argv)}` does not parse (exit {err.code})")


# --- numbers tied to JSON files -------------------------------------------------------------------

NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?")
MARKER = re.compile(r"<!--json(-source)? ([^>]*?)-->")


@dataclass
class Quote:
    where: str
    file: Path
    path: str
    scale: float
    text: str  # what follows the marker


def quotes(path: Path) -> list[Quote]:
    text = path.read_text(encoding="utf-8")
    source, found = None, []
    for m in MARKER.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        where = f"{path.relative_to(ROOT)}:{line}"
        if m.group(1):
            source = ROOT / m.group(2).strip()
            continue
        key = m.group(2).strip()
        file, _, key = key.rpartition("#") if "#" in key.split("[")[0] else ("", "", key)
        scale = 1.0
        if (s := re.search(r"\*([0-9.e+-]+)$", key)) is not None:
            key, scale = key[: s.start()], float(s.group(1))
        assert file or source, f"{where}: no JSON file: name one (FILE#KEY) or put <!--json-source FILE--> before"
        found.append(Quote(where, ROOT / file if file else source, key, scale, text[m.end(): m.end() + 200]))
    return found


ALL_QUOTES = [q for path in DOCS for q in quotes(path)]


def _field(row, field: str):
    """``row[a][b]`` for the dotted ``field`` ``a.b`` (None where a step is missing)."""
    for name in field.split("."):
        row = row.get(name) if isinstance(row, dict) else None
    return row


def lookup(value, path: str, where: str):
    """Follow ``a.b[0].c[field=value]`` into a JSON value."""
    steps = re.findall(r"\[[^\]]*\]|[^.\[\]]+", path)
    for step in steps:
        if step.startswith("["):
            inner = step[1:-1]
            if "=" in inner:
                field, _, wanted = inner.partition("=")
                hits = [row for row in value if str(_field(row, field)) == wanted]
                assert len(hits) == 1, f"{where}: {len(hits)} rows with {field}={wanted!r} (keys: {path})"
                value = hits[0]
            else:
                value = value[int(inner)]
        else:
            assert isinstance(value, dict) and step in value, f"{where}: no key {step!r} on the way to {path}"
            value = value[step]
    return value


def matches(quoted: str, value: float) -> bool:
    """Whether ``quoted`` is ``value`` rounded to the quoted digits."""
    number = Decimal(quoted.replace(",", ""))
    half_unit = Decimal(5) * Decimal(10) ** (number.as_tuple().exponent - 1)
    return abs(Decimal(repr(float(value))) - number) <= half_unit * Decimal("1.000001")


def quoted_numbers(text: str, count: int) -> list[str]:
    """The first ``count`` numbers of ``text``: the first at its start (after ``**``), each next one within
    a few characters (`` ± ``, `` / ``) of the one before."""
    numbers, position = [], 0
    for m in NUMBER.finditer(text):
        gap = text[position:m.start()]
        if len(gap.strip("* ")) > (0 if not numbers else 3):
            break
        numbers.append(m.group())
        position = m.end()
        if len(numbers) == count:
            break
    return numbers


def test_quotes_are_found():
    assert len(ALL_QUOTES) >= 14


@pytest.mark.parametrize("quote", ALL_QUOTES, ids=lambda q: q.where)
def test_quoted_number_is_the_one_on_file(quote):
    assert quote.file.is_file(), f"{quote.where}: {quote.file.relative_to(ROOT)} does not exist"
    value = lookup(json.loads(quote.file.read_text(encoding="utf-8")), quote.path, quote.where)
    values = value if isinstance(value, list) else [value]
    numbers = quoted_numbers(quote.text, len(values))
    assert len(numbers) == len(values), f"{quote.where}: expected {len(values)} number(s) after the marker: {quote.text[:60]!r}"
    for quoted, v in zip(numbers, values):
        assert matches(quoted, float(v) * quote.scale), (
            f"{quote.where}: the README says {quoted}, {quote.file.relative_to(ROOT)} {quote.path} "
            f"gives {float(v) * quote.scale!r}: update the README (or rerun the command that writes the file)")


def test_the_number_check_can_fail():
    assert matches("76.93", 76.9333) and matches("1.5e-7", 1.49e-7) and matches("1,440", 1440)
    assert not matches("76.93", 76.94) and not matches("1.3e-7", 1.49e-7) and not matches("1,440", 2880)
    assert quoted_numbers("76.93 ± 0.47 | 12", 2) == ["76.93", "0.47"]
    assert quoted_numbers("**2,880** parameters", 1) == ["2,880"]


# --- examples/ -------------------------------------------------------------------------------------

#: every script in examples/ and the arguments that make it tiny (OUT: a fresh folder)
EXAMPLES: dict[str, list[str]] = {
    "finetune_own_csv.py": ["--steps", "2", "--eval-every", "1", "-o", "OUT", "--no-progress"],
    "hf_trainer.py": ["--steps", "2", "-o", "OUT"],
    "trl_sft.py": ["--steps", "2", "-o", "OUT"],
    "convert_minilm_lora.py": ["OUT", "--steps", "2"],
}
#: pytest files in examples/, run with pytest as the README says
EXAMPLE_TESTS = ["test_my_graph.py"]
#: slow here, and run in the default suite elsewhere: trl_sft and hf_trainer through
#: tests/model/test_peft_examples.py (which checks what they save), finetune_own_csv through
#: tests/apps/finetune/test_predict.py (its run folder is what the loader, predict and export are tested on);
#: convert_minilm_lora is over ~10 s under load
SLOW_EXAMPLES = {"trl_sft.py", "hf_trainer.py", "convert_minilm_lora.py", "finetune_own_csv.py"}


def test_every_example_is_run():
    scripts = {p.name for p in (ROOT / "examples").glob("*.py")}
    assert scripts == set(EXAMPLES) | set(EXAMPLE_TESTS), "add the new example to EXAMPLES in tests/test_docs.py"


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW_EXAMPLES else [])
                                  for n in EXAMPLES])
def test_example_runs_as_written(name, tmp_path):
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in EXAMPLES[name]]
    _run([sys.executable, str(ROOT / "examples" / name), *argv], tmp_path)


@pytest.mark.parametrize("name", EXAMPLE_TESTS)
def test_example_test_file_passes(name, tmp_path):
    _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
          str(ROOT / "examples" / name)], tmp_path)


@pytest.mark.parametrize("name", ["rotten-tomatoes", "bbc-news", "debates-2016"])
def test_frontier_study_tables_are_rendered_from_their_json(name):
    """docs/frontier.md's tables are what ``tn-peft frontier`` renders from each saved frontier.json, line for line."""
    from tn_peft.apps.finetune import frontier

    rows = json.loads((ROOT / "docs" / f"frontier-{name}" / "frontier.json").read_text(encoding="utf-8"))["rows"]
    study = (ROOT / "docs" / "frontier.md").read_text(encoding="utf-8")
    lines = [line for line in frontier.markdown(rows).splitlines() if line.startswith("| ")]
    assert len(lines) > 10
    missing = [line for line in lines if line not in study]
    assert not missing, f"docs/frontier.md lacks {len(missing)} rendered rows of frontier-{name}, e.g. {missing[0]}"


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but - and _ dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_contents_line_links_every_section_and_every_link_resolves():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    outside = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    headings = re.findall(r"^(#{2,3}) (.+)$", outside, flags=re.MULTILINE)
    anchors = {_anchor(h) for _, h in headings}
    contents = next(p for p in outside.split("\n\n") if p.startswith("Contents:"))
    linked = set(re.findall(r"\]\(#([^)]+)\)", contents))
    unlisted = [h for level, h in headings if level == "##" and _anchor(h) not in linked]
    assert not unlisted, f"sections missing from the contents line: {unlisted}"
    broken = sorted({a for a in re.findall(r"\]\(#([^)]+)\)", outside) if a not in anchors})
    assert not broken, f"links to no heading: {broken}"
    files = sorted({f for f in re.findall(r"\]\(((?:docs|examples)/[^)#]+)", outside) if not (ROOT / f).exists()})
    assert not files, f"links to missing files: {files}"
