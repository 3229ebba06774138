import json

import numpy as np
import torch
from hypothesis import given, settings

from tn_peft.graph.network import Network
from tn_peft.graph.spec import network_from_spec
from tn_peft.testing import networks, reference_delta_weight


@given(networks())
@settings(max_examples=60)
def test_random_networks_contract_like_numpy(case):
    net, n_in, n_out = case
    adapter = net.build(n_in, n_out, dtype=torch.float64)
    tensors = {name: t.detach().numpy() for name, t in zip(adapter.operands, adapter.node_tensors())}
    expected = reference_delta_weight(net, tensors, n_in, n_out) * adapter.scale
    got = adapter.delta_weight().detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
    x = torch.randn(3, 2, n_in, dtype=torch.float64)
    np.testing.assert_allclose(adapter(x).detach().numpy(), x.numpy() @ expected.T, rtol=1e-9, atol=1e-9)


@given(networks())
def test_spec_round_trip(case):
    net, _, _ = case
    spec = net.to_spec()
    again = network_from_spec(json.loads(json.dumps(spec)))
    assert again.to_spec() == spec
    assert again == net


def test_builder_lora_matches_formula():
    net = Network("lora", params={"rank": 2, "alpha": 4}, scale="alpha / rank")
    net.add_node("B", "dense", ["out", "r"], init="normal").add_node("A", "dense", ["r", "in"], init="normal")
    net.set_size("r", "rank").validate()
    assert net.to_einsum() == ("ab,bc->ac", ["B", "A"])
    adapter = net.build(5, 3)
    b, a = adapter.node_tensors()
    torch.testing.assert_close(adapter.delta_weight(), 2.0 * b @ a)
    assert adapter.num_parameters() == 2 * (5 + 3)


def test_hyperedges_and_activation_equation():
    net = Network("svd", sizes={"k": 2})
    net.add_node("U", "dense", ["out", "k"]).add_node("s", "diagonal", ["k"]).add_node("V", "dense", ["in", "k"])
    assert net.hyperedges() == ["k"]
    equation, operands = net.to_einsum(activations=True)
    assert operands == ["x", "U", "s", "V"]
    assert equation.split("->")[0].split(",")[0][1:] == equation.split(",")[3][0]


def test_factor_legs_get_balanced_sizes():
    net = Network("fold", open={"out": ["m1", "m2"], "in": ["n1", "n2", "n3"]})
    net.add_node("G", "dense", ["m1", "m2", "n1", "n2", "n3"])
    sizes = net.resolve(in_features=384, out_features=1536)
    assert (sizes["n1"], sizes["n2"], sizes["n3"]) == (8, 8, 6)
    assert sizes["m1"] * sizes["m2"] == 1536
    # a size given for one factor is kept; the rest share what is left
    net.set_size("n1", 3)
    sizes = net.resolve(in_features=384, out_features=1536)
    assert sizes["n1"] == 3 and sizes["n2"] * sizes["n3"] == 128
