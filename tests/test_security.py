"""Issue 28's reproductions: a graph file or an adapter folder carrying code in a name runs nothing.

Each payload ends in one clean SpecError (or CheckpointError) naming the field, and no file appears.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

import tn_peft
from tn_peft import CheckpointError, SpecError
from tn_peft.cli import main
from tn_peft.apps.fuzz.mutate import CODE_PAYLOADS
from tn_peft.names import is_name

EVIL = "r\n    import os; os.system('touch pwned')\n    #"


def _lora_spec_with_leg(leg: str) -> dict:
    """The catalog's lora spec with leg ``r`` renamed everywhere (sizes and both nodes), as the attack did."""
    spec = tn_peft.load_graph("lora").to_spec()
    spec["sizes"] = {leg: spec["sizes"]["r"]}
    for node in spec["nodes"]:
        node["legs"] = {leg if k == "r" else k: v for k, v in node["legs"].items()} if isinstance(
            node["legs"], dict) else [leg if k == "r" else k for k in node["legs"]]
    return spec


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_graph_file_with_code_in_a_leg_name_is_refused_and_runs_nothing(in_tmp, capsys):
    path = in_tmp / "evil.json"
    path.write_text(json.dumps(_lora_spec_with_leg(EVIL)))
    with pytest.raises(SpecError, match=r"evil\.json: sizes key .* is not a name") as caught:
        tn_peft.load_graph(path).build(in_features=64, out_features=64)(torch.randn(8, 64))
    assert "\\n" in str(caught.value) and "\n" not in str(caught.value)  # the value shown escaped, on one line
    assert main(["plan", str(path), "--in-features", "64", "--out-features", "64", "--rows", "8", "--train"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a name" in err
    assert not (in_tmp / "pwned").exists()


def test_adapter_folder_with_code_in_its_embedded_spec_is_refused_and_runs_nothing(in_tmp):
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 8))
    tn_peft.get_model(base, tn_peft.AdapterConfig(graph="lora", target_modules=["0", "2"])).save_pretrained("ad")
    config = json.loads((in_tmp / "ad" / "adapter_config.json").read_text())
    config["graph"] = _lora_spec_with_leg(EVIL) | {k: config["graph"][k] for k in ("params", "scale")}
    (in_tmp / "ad" / "adapter_config.json").write_text(json.dumps(config))
    fresh = nn.Sequential(nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 8))
    with pytest.raises(SpecError, match=r"adapter_config\.json: sizes key .* is not a name"):
        tn_peft.from_pretrained(fresh, in_tmp / "ad")(torch.randn(2, 16))
    assert not (in_tmp / "pwned").exists()


@pytest.mark.parametrize("payload", [p for p in CODE_PAYLOADS if not is_name(p)])
@pytest.mark.parametrize("field", ["leg", "node", "param", "graph"])
def test_every_payload_family_in_every_name_field_is_one_spec_error(in_tmp, payload, field):
    spec = tn_peft.load_graph("lora").to_spec()
    if field == "leg":
        spec = _lora_spec_with_leg(payload)
    elif field == "node":
        spec["nodes"][0]["name"] = payload
    elif field == "param":
        spec["params"][payload] = 1
    else:
        spec["name"] = payload
    path = in_tmp / "case.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(SpecError) as caught:  # "is not a name", or "{...}" refused by the expression language
        tn_peft.load_graph(path).build(8, 8)(torch.randn(2, 8)).sum().backward()
    assert "\n" not in str(caught.value) and "case.json" in str(caught.value)
    assert os.listdir(in_tmp) == ["case.json"]


def test_names_that_match_the_pattern_but_clash_with_torch_are_one_spec_error():
    net = tn_peft.Network("g").add_node("training", "dense", ["out", "r"]).add_node("A", "dense", ["r", "in"])
    with pytest.raises(SpecError, match="taken by torch's nn.ModuleDict"):
        net.set_size("r", 2).build(4, 4)


def test_keywords_and_dunder_like_names_run_as_plain_operands():
    net = (tn_peft.Network("g").add_node("lambda", "dense", ["out", "class_"], init="normal")
           .add_node("__x", "dense", ["class_", "in"]).set_size("class_", 2))
    adapter = net.build(4, 4)
    x = torch.randn(3, 4)
    expected = x @ (adapter.node("lambda")() @ adapter.node("__x")()).T
    torch.testing.assert_close(adapter(x), expected)


def test_an_adapter_name_cannot_lead_out_of_the_folder(tmp_path):
    torch.manual_seed(0)
    model = tn_peft.get_model(nn.Sequential(nn.Linear(8, 8)), tn_peft.AdapterConfig(graph="lora", target_modules=["0"]))
    outside = str(tmp_path / "escape")  # an absolute path: "out" / outside would be outside itself
    model.add_adapter(outside, tn_peft.AdapterConfig(graph="lora", target_modules=["0"]))
    with pytest.raises(CheckpointError, match="cannot name a subfolder"):
        model.save_pretrained(tmp_path / "out")
    assert not (tmp_path / "escape").exists()
    with pytest.raises(CheckpointError, match="cannot name a subfolder"):
        model.load_adapter(tmp_path / "out", adapter_name="a/b")


def test_a_peft_door_adapter_folder_with_code_in_its_graph_spec_is_refused(in_tmp):
    peft = pytest.importorskip("peft")

    def base():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 8))

    peft.get_peft_model(base(), tn_peft.TnPeftConfig(graph="lora", target_modules=["0", "2"])).save_pretrained("pd")
    config = json.loads((in_tmp / "pd" / "adapter_config.json").read_text())
    config["graph_spec"] = _lora_spec_with_leg(EVIL) | {k: config["graph_spec"][k] for k in ("params", "scale")}
    (in_tmp / "pd" / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(SpecError, match="sizes key .* is not a name"):
        peft.PeftModel.from_pretrained(base(), in_tmp / "pd")(torch.randn(2, 16))
    assert not (in_tmp / "pwned").exists()
