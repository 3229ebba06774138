"""``tn-peft plan``: decisions, tree, predicted costs and source."""

from tn_peft.cli import main


def test_plan_command_prints_tree_decisions_costs_and_source(capsys):
    assert main(["plan", "tt", "--set", "cores=3", "--in-features", "64", "--out-features", "64", "--rows", "32", "--train",
                 "--family"]) == 0
    out = capsys.readouterr().out
    for text in ("decisions:", "tree (s<k> = step k):", "predicted: forward", "saved for backward",
                 "FLOP-optimal tree", "token ranges", "def program(x, G1, G2, G3):"):
        assert text in out, text


def test_plan_command_for_dw_and_delta_networks(capsys):
    assert main(["plan", "quanta", "--in-features", "64", "--out-features", "64", "--no-source"]) == 0
    out = capsys.readouterr().out
    assert "build dW" in out and "def program" not in out


def test_plan_command_reports_bad_graph_cleanly(capsys):
    assert main(["plan", "no_such_graph", "--rows", "4"]) == 2
    err = capsys.readouterr().err
    assert "no_such_graph" in err and "Traceback" not in err
