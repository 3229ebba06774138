"""A finished finetune run, used: the loader gives back the trained model, ``tn-peft predict`` labels texts
with it, and the merged export gives the same logits in a fresh process without tn_peft (issue 27, item 4).

The run is ``examples/finetune_own_csv.py`` as written (its custom graph, beside peft's LoRA and the
head-only row), at the smallest size its options allow: this is also that example's default-suite run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tn_peft.apps.finetune import predict, runfolder
from tn_peft.errors import CheckpointError, UsageError

ROOT = Path(__file__).resolve().parents[3]
TEXTS = ["A gorgeous, witty film.", "The plot is nothing but boilerplate clichés.", "fine"]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    spec = importlib.util.spec_from_file_location("finetune_own_csv", ROOT / "examples" / "finetune_own_csv.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = tmp_path_factory.mktemp("predict") / "run"
    example.main(["--steps", "2", "--eval-every", "2", "--compare", "lora", "-o", str(out), "--no-progress",
                  "--threads", "1"])
    return out


def _test_split_of(run: Path):
    """The run's test split, rebuilt with the functions the run used."""
    from tn_peft.apps.finetune import userdata
    from tn_peft.apps.finetune.data import load_dataset

    metrics = json.loads((run / runfolder.METRICS).read_text())
    data, _ = load_dataset(str(ROOT / "examples" / "data" / "sample_reviews.csv"))
    sizes = userdata.split_sizes(len(data), None, None, None, None)
    return userdata.checked_split(data, sizes, seed=metrics["data"]["split_seed"]).test, metrics


@pytest.mark.parametrize("method", ["pauli_left_dense_right", "lora", "head"])
def test_the_loader_gives_back_the_trained_model(run_folder, method):
    model = predict.load_run(run_folder, method=method)
    test, metrics = _test_split_of(run_folder)
    entry = next(r for r in metrics["runs"] if r["saved_to"].endswith(model.adapter_folder.name))
    logits = model.logits(test.texts)
    loss = float(torch.nn.functional.cross_entropy(logits, torch.tensor(test.labels)))
    accuracy = float((logits.argmax(-1) == torch.tensor(test.labels)).float().mean())
    assert loss == pytest.approx(entry["test_loss"], abs=1e-5)  # the run's own test loss: the same model
    assert accuracy == pytest.approx(entry["test_accuracy"])
    assert model.labels == metrics["data"]["labels"]
    assert model.predict(TEXTS) == [model.labels[i] for i in model.logits(TEXTS).argmax(-1).tolist()]


def test_the_head_only_row_saves_only_its_head(run_folder):
    folder = next(run_folder.glob("adapter-head-seed*"))
    assert sorted(p.name for p in folder.iterdir()) == [runfolder.HEAD_FILE]
    assert (folder / runfolder.HEAD_FILE).stat().st_size < 10_000


def test_predict_command_gives_the_loaders_labels(run_folder):
    from tn_peft.cli import main

    model = predict.load_run(run_folder)  # the default: the table's first row at the first seed
    assert model.method["kind"] == "graph"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["predict", str(run_folder), "--json", "--text", *TEXTS]) == 0
    rows = [json.loads(line) for line in stdout.getvalue().splitlines() if line.startswith("{")]
    assert [r["text"] for r in rows] == TEXTS
    assert [r["label"] for r in rows] == model.predict(TEXTS)
    expected = model.probabilities(TEXTS)
    got = torch.tensor([[r["probabilities"][name] for name in model.labels] for r in rows])
    torch.testing.assert_close(got, expected)


def test_predict_command_on_a_data_file_prints_accuracy(run_folder, capsys):
    from tn_peft.cli import main

    assert main(["predict", str(run_folder), "--method", "lora", "--data",
                 str(ROOT / "examples" / "data" / "sample_reviews.csv")]) == 0
    out = capsys.readouterr().out
    assert "accuracy: " in out and "/60 = " in out


def test_merged_export_loads_without_tn_peft_and_gives_the_same_logits(run_folder, tmp_path):
    model = predict.load_run(run_folder)
    out = predict.export_merged(model, tmp_path / "plain")
    script = textwrap.dedent(f"""
        import json, sys
        import torch
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        folder = {str(out)!r}
        encoder, tokenizer = AutoModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
        head = load_file(folder + "/classifier.safetensors")
        enc = tokenizer({TEXTS!r}, truncation=True, max_length=encoder.config.tn_peft_export["max_length"],
                        padding=True, return_tensors="pt")
        with torch.no_grad():
            hidden = encoder(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        logits = ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)) @ head["weight"].T + head["bias"]
        assert not any(m == "tn_peft" or m.startswith(("tn_peft.", "peft")) for m in sys.modules), "tn_peft or peft loaded"
        print(json.dumps({{"logits": logits.tolist(),
                          "labels": [encoder.config.id2label[i] for i in logits.argmax(-1).tolist()]}}))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    torch.testing.assert_close(torch.tensor(result["logits"]), model.logits(TEXTS), atol=1e-4, rtol=1e-4)
    assert result["labels"] == model.predict(TEXTS)
    assert (out / "README.md").is_file()


def test_export_never_replaces_a_folder_unasked(run_folder, tmp_path):
    (tmp_path / "taken").mkdir()
    model = predict.load_run(run_folder, method="head")
    with pytest.raises(UsageError, match="exists"):
        predict.export_merged(model, tmp_path / "taken")
    predict.export_merged(model, tmp_path / "taken", overwrite=True)
    assert (tmp_path / "taken" / predict.EXPORT_HEAD_FILE).is_file()


def test_bad_run_folders_are_one_clear_error(run_folder, tmp_path):
    with pytest.raises(CheckpointError, match="no such folder"):
        predict.load_run(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="not a tn-peft finetune run folder"):
        predict.load_run(tmp_path)
    with pytest.raises(UsageError, match="choose one of"):
        predict.load_run(run_folder, method="vera")
    with pytest.raises(UsageError, match="choose one of"):
        predict.load_run(run_folder, seed=7)
    (tmp_path / runfolder.METRICS).write_text("{}")
    (tmp_path / runfolder.MARKER).write_text("{}")
    with pytest.raises(CheckpointError, match="did not finish"):
        predict.load_run(tmp_path)


def test_the_tables_adapter_bytes_are_the_files_on_disk(run_folder):
    metrics = json.loads((run_folder / runfolder.METRICS).read_text())
    for entry in metrics["runs"]:
        folder = run_folder / Path(entry["saved_to"]).name
        on_disk = sum(p.stat().st_size for p in folder.glob("*.safetensors") if p.name != runfolder.HEAD_FILE)
        assert entry["adapter_bytes"] == on_disk, entry["method"]["name"]


def test_the_command_line_export_needs_its_output_folder(run_folder, tmp_path, capsys):
    from tn_peft.cli import main

    assert main(["predict", str(run_folder), "--export-merged"]) == 2
    assert "add -o FOLDER" in capsys.readouterr().err
    assert main(["predict", str(run_folder), "--text", "x", "-o", str(tmp_path / "unused")]) == 2
    assert main(["predict", str(run_folder), "--export-merged", "-o", str(tmp_path / "plain")]) == 0
    assert (tmp_path / "plain" / "config.json").is_file()
