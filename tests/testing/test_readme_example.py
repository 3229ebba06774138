"""The README's tn_peft.testing example is examples/test_my_graph.py verbatim, and it passes as written."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_shows_the_example_file_verbatim():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    example = (ROOT / "examples" / "test_my_graph.py").read_text()
    assert example in blocks


def test_the_example_runs_as_written_against_a_custom_graph(tmp_path):
    for name in ("test_my_graph.py", "pauli_left_dense_right.yaml"):
        shutil.copy(ROOT / "examples" / name, tmp_path / name)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_my_graph.py"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "3 passed" in result.stdout
