"""One rank reader for every conversion report and for `tn-peft inspect` (tn_peft/convert/report.py)."""

import pytest

from tn_peft.convert.report import ConversionReport, LayerReport, adapter_rank
from tn_peft.graph.spec import load_graph


@pytest.mark.parametrize(("graph", "args", "expected"), [
    ("lora", {"rank": 6}, 6),
    ("svd", {"rank": 5}, 5),
    ("quantum_peft", {"rank": 4}, 4),
    ("tt", {"cores": 3, "rank": 7}, 7),
    ("tt", {"cores": 1}, None),   # a one-core TT is dW itself: no bond
    ("quanta", {}, None),
    ("kron", {}, 4),              # its number of Kronecker terms
])
def test_adapter_rank(graph, args, expected):
    adapter = load_graph(graph, **args).build(64, 64)
    assert adapter_rank(adapter) == expected


def test_report_shows_a_missing_rank_as_n_a():
    layers = [LayerReport("a", (8, 8), 4, 64, 64, 0.0, rank=None), LayerReport("b", (8, 8), None, 64, 32, 0.0, rank=2)]
    text = ConversionReport("src", "dst", "tt", "tt", {}, exact=True, layers=layers).format()
    assert " 4->n/a  " in text and " n/a->2  " in text


def test_an_exact_form_larger_than_its_source_warns():
    big = [LayerReport("a", (64, 64), 2, 256, 6000, 0.0)]
    text = ConversionReport("src", "dst", "tt", "tt", {}, exact=True, layers=big).format()
    assert "warning: the exact tt form has 6,000 parameters, 23.4x the 256 of the LoRA" in text
    assert "--max-bond" in text
    small = [LayerReport("a", (64, 64), 2, 256, 200, 0.0)]
    assert ConversionReport("src", "dst", "svd", "svd", {}, exact=True, layers=small).warnings == []
    fit = ConversionReport("src", "dst", "tt", "tt", {}, exact=False, layers=big)  # a fit: its size was asked for
    assert fit.warnings == [] and fit.to_dict()["warnings"] == []
