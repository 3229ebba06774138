import json
import re

import pytest
import torch

from tn_peft.errors import SpecError
from tn_peft.nodes import REGISTRY
from tn_peft.graph.spec import catalog, load_graph

SHAPES = [(384, 384), (384, 1536), (768, 768), (4096, 4096)]
EXPECTED = {"lora", "svd", "tt", "ttd", "lotr", "quanta", "kron", "quantum_peft"}


def test_catalog_is_complete():
    assert EXPECTED <= set(catalog())


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("in_features,out_features", SHAPES)
def test_catalog_builds_and_trains(name, in_features, out_features):
    net = load_graph(name)
    missing = [n.kind for n in net.nodes if n.kind not in REGISTRY]
    assert not missing
    try:
        adapter = net.build(in_features, out_features)
    except SpecError as err:  # a family may forbid a shape, but only with a clear message
        assert "Fix:" in str(err)
        return
    x = torch.randn(2, in_features)
    y = adapter(x)
    assert y.shape == (2, out_features)
    dw = adapter.delta_weight()
    assert dw.shape == (out_features, in_features)
    # every catalog adapter starts at dW = 0, so the adapted model equals the base model
    assert float(dw.detach().abs().max()) == 0.0
    (y.square().sum() + dw.sum()).backward()
    grads = [p.grad for p in adapter.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_catalog_spec_round_trips(name):
    net = load_graph(name)
    spec = net.to_spec()
    assert json.loads(json.dumps(spec)) == spec
    again = load_graph(spec)
    assert again.to_spec() == spec


def test_overrides_change_parameters():
    net = load_graph("tt", cores=4, rank=2)
    assert [n.name for n in net.nodes] == ["G1", "G2", "G3", "G4"]
    assert net.build(256, 256).sizes["r2"] == 2


def _write(tmp_path, text, name="g.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


BASE = """
name: t
params: {rank: 2}
sizes: {r: rank}
nodes:
  - {name: B, kind: dense, legs: [out, r]}
  - {name: A, kind: dense, legs: [r, in]}
"""


def _error(tmp_path, text, **overrides):
    path = _write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_graph(path, **overrides).build(8, 6)
    return str(info.value), path


def test_unknown_kind(tmp_path):
    msg, path = _error(tmp_path, BASE.replace("kind: dense, legs: [r, in]", "kind: dens, legs: [r, in]"))
    assert str(path) in msg and "node 'A'" in msg and "unknown node kind 'dens'" in msg and "dense" in msg


def test_dangling_leg(tmp_path):
    msg, _ = _error(tmp_path, BASE.replace("legs: [r, in]", "legs: [r, in, z]"))
    assert "node 'A'" in msg and "leg 'z'" in msg and "not open" in msg and ":7" in msg


def test_sizes_disagree(tmp_path):
    text = BASE.replace("legs: [out, r]}", "legs: {out: out, r: 3}}")
    msg, _ = _error(tmp_path, text)
    assert "leg 'r'" in msg and "disagree" in msg and "= 2" in msg and "= 3" in msg


def test_undefined_parameter(tmp_path):
    msg, _ = _error(tmp_path, BASE.replace("{r: rank}", "{r: rnak}"))
    assert "leg 'r'" in msg and "'rnak' is not defined" in msg


def test_unknown_override(tmp_path):
    msg, _ = _error(tmp_path, BASE, depth=3)
    assert "no parameter 'depth'" in msg and "rank" in msg


@pytest.mark.parametrize("size,word", [("rank - 2", "not positive"), ("rank / 4", "not an integer")])
def test_bad_sizes(tmp_path, size, word):
    msg, _ = _error(tmp_path, BASE.replace("{r: rank}", "{r: " + size + "}"))
    assert "leg 'r'" in msg and word in msg


def test_disconnected_node(tmp_path):
    text = BASE + "  - {name: C, kind: dense, legs: [p, q]}\n  - {name: D, kind: dense, legs: [p, q]}\n"
    msg, _ = _error(tmp_path, text)
    assert "node 'C'" in msg and "disconnected" in msg


def test_cannot_factor(tmp_path):
    text = """
name: f
open: {out: [m1, m2], in: [n1, n2]}
nodes:
  - {name: G, kind: dense, legs: [m1, m2, n1, n2]}
"""
    path = _write(tmp_path, text)
    with pytest.raises(SpecError, match="cannot split in = 7 into 2 factors"):
        load_graph(path).build(7, 6)
    with pytest.raises(SpecError, match="multiply to 6, but the layer's in size is 8"):
        load_graph(path).with_params().set_size("n1", 2).set_size("n2", 3).build(8, 6)


def test_yaml_syntax_error_has_line(tmp_path):
    path = _write(tmp_path, "name: t\nnodes:\n  - {name: A, kind: dense, legs: [r, in]\n  - x\n")
    with pytest.raises(SpecError) as info:
        load_graph(path)
    assert f"{path}:" in str(info.value) and "YAML syntax error" in str(info.value)


def test_unknown_option_and_key(tmp_path):
    msg, _ = _error(tmp_path, BASE.replace("legs: [r, in]}", "legs: [r, in], options: {innit: zeros}}"))
    assert "no option 'innit'" in msg and "init" in msg
    msg, _ = _error(tmp_path, BASE.replace("{name: A,", "{name: A, knd: x,"))
    assert "unknown key 'knd'" in msg


def test_yaml_is_loaded_safely(tmp_path):
    path = _write(tmp_path, "!!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(SpecError, match="YAML"):
        load_graph(path)


def test_catalog_name_or_path_errors():
    with pytest.raises(SpecError, match="neither a catalog graph nor a file"):
        load_graph("no_such_graph")


def test_overriding_a_loaded_network_expands_its_spec_again():
    """Parameters that shape nodes (a ``{layers}`` option, a loop over cores) take effect on a Network too."""
    circuit = load_graph(load_graph("quantum_peft"), layers=3)
    assert circuit.node("U").options["layers"] == 3
    assert circuit.build(64, 32).node("U").layers == 3
    assert load_graph("tt", cores=3).with_params(cores=5).node_names == ["G1", "G2", "G3", "G4", "G5"]


REQUIRES = BASE.replace("sizes: {r: rank}", 'requires: {"rank >= 2 and rank % 2 == 0": "pairs of directions"}\nsizes: {r: rank}')


def test_requires_names_the_condition_the_reason_and_the_values(tmp_path):
    assert load_graph(_write(tmp_path, REQUIRES)).build(8, 6).num_parameters() == 2 * (8 + 6)
    msg, path = _error(tmp_path, REQUIRES, rank=3)
    assert f"{path}:4" in msg and "needs rank >= 2 and rank % 2 == 0 (pairs of directions); got rank=3" in msg


@pytest.mark.parametrize(("requires", "word"), [("[rank >= 2]", "must map conditions"),
                                                 ('{"rnak >= 2": "typo"}', "'rnak' is not defined")])
def test_bad_requires(tmp_path, requires, word):
    msg, _ = _error(tmp_path, BASE.replace("sizes: {r: rank}", f"requires: {requires}\nsizes: {{r: rank}}"))
    assert "requires" in msg and word in msg


@pytest.mark.parametrize(("graph", "args", "condition"), [("ttd", {"cores": 1}, "1 <= center < cores"),
                                                          ("ttd", {"center": 3}, "1 <= center < cores"),
                                                          ("quanta", {"axes": 1}, "axes >= 2"),
                                                          ("tt", {"cores": 0}, "cores >= 1")])
def test_catalog_parameters_out_of_range_say_which_condition(graph, args, condition):
    with pytest.raises(SpecError, match=f"needs {condition}"):
        load_graph(graph, **args)


@pytest.mark.parametrize(("graph", "args", "words"), [
    ("tt", {"cores": "x"}, "requires: 'cores >= 1'"),           # comparisons of a str
    ("quanta", {"alpha": "x"}, "scale: 'alpha' is 'x', not a number"),
    ("quantum_peft", {"layers": True}, "layers must be an integer >= 0, got True"),
    ("ttd", {"center": None}, "requires: '1 <= center < cores'"),
])
def test_parameters_of_the_wrong_type_are_one_spec_error(graph, args, words):
    with pytest.raises(SpecError, match=re.escape(words)):
        load_graph(graph, **args).build(48, 64)


def test_a_graph_file_that_is_not_utf8_is_one_spec_error(tmp_path):
    import pytest

    from tn_peft import SpecError, load_graph

    good = "name: mine\nsizes: {r: 2}\nnodes:\n  - {name: B, kind: dense, legs: [out, r]}\n  - {name: A, kind: dense, legs: [r, in]}\n"
    (tmp_path / "bom.yaml").write_bytes(b"\xef\xbb\xbf" + good.encode())
    assert load_graph(tmp_path / "bom.yaml").name == "mine"  # a UTF-8 byte-order mark is fine
    (tmp_path / "u16.yaml").write_text(good, encoding="utf-16")
    (tmp_path / "bin.yaml").write_bytes(b"name: x\n\x80\x81\x00")
    with pytest.raises(SpecError, match="u16.yaml: is not UTF-8 text \\(a UTF-16 file\\)"):
        load_graph(tmp_path / "u16.yaml")
    with pytest.raises(SpecError, match="is not UTF-8 text \\(byte 8 is 0x80\\)"):
        load_graph(tmp_path / "bin.yaml")


def test_huge_declared_sizes_are_refused_before_anything_is_allocated():
    import pytest

    from tn_peft import SpecError, load_graph

    net = load_graph({"name": "huge", "sizes": {"r": 10**12},
                      "nodes": [{"name": "B", "kind": "dense", "legs": ["out", "r"]},
                                {"name": "A", "kind": "dense", "legs": ["r", "in"]}]})
    with pytest.raises(SpecError, match="node 'B', leg 'r': would hold 8e\\+12 elements"):
        net.resolve(8, 8)
    with pytest.raises(SpecError, match="MAX_NODE_ELEMENTS"):
        net.build(8, 8)


def test_a_name_that_is_not_a_string_is_refused():
    import pytest

    from tn_peft import SpecError, load_graph

    with pytest.raises(SpecError, match="name: must be a string, got float 2.5"):
        load_graph({"name": 2.5, "nodes": [{"name": "A", "kind": "dense", "legs": ["out", "in"]}]})


def test_huge_declared_sizes_in_a_saved_adapter_are_refused_at_load_time(tmp_path):
    import json

    import pytest
    from torch import nn

    import tn_peft

    model = tn_peft.get_model(nn.Sequential(nn.Linear(8, 8)), tn_peft.AdapterConfig(graph="lora", target_modules=["0"]))
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    config["graph_args"] = {"rank": 10**12}
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(tn_peft.TnPeftError, match="MAX_NODE_ELEMENTS"):
        tn_peft.from_pretrained(nn.Sequential(nn.Linear(8, 8)), tmp_path)
