"""tn_peft.nodes.quantize: the quantizers, their straight-through gradient, packing, and the quantized nodes."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tn_peft
from tn_peft.errors import CheckpointError, SpecError
from tn_peft.nodes.quantize import (
    AngleQuantizer,
    SymmetricQuantizer,
    decode,
    encode,
    pack_codes,
    packed_size,
    unpack_codes,
)

BITS = range(1, 9)
QUANTIZERS = [AngleQuantizer, SymmetricQuantizer]


@pytest.mark.parametrize("kind", QUANTIZERS)
@pytest.mark.parametrize("bits", BITS)
def test_idempotent_and_encode_decode_exact(kind, bits):
    q = kind(bits)
    x = torch.randn(257) * 4
    y = q.quantize(x)
    assert torch.equal(q.quantize(y), y)
    packed, step = encode(x, q)
    assert packed.dtype == torch.uint8 and packed.numel() == packed_size(257, bits)
    assert torch.equal(decode(packed, step, q, (257,)), y)


@pytest.mark.parametrize("bits", BITS)
def test_angle_levels_lie_on_the_circle(bits):
    q = AngleQuantizer(bits)
    x = torch.linspace(-20, 20, 999, dtype=torch.float64)
    y = q.quantize(x)
    step = 4 * math.pi / 2 ** bits
    codes = torch.round(y / step)
    assert torch.allclose(y, codes * step)
    assert codes.min() >= -(2 ** (bits - 1)) and codes.max() < 2 ** (bits - 1)
    assert len(torch.unique(codes)) == 2 ** bits
    # periodic: one period further gives the same level; never clipped (the error is at most half a step)
    assert torch.equal(q.quantize(x + 4 * math.pi), y)
    assert (torch.remainder(x - y + 2 * math.pi, 4 * math.pi) - 2 * math.pi).abs().max() <= step / 2 + 1e-9


def test_one_bit_angles_are_zero_or_minus_two_pi():
    y = AngleQuantizer(1).quantize(torch.tensor([0.3, -2.0, 3.5, 9.0]))
    assert y.tolist() == pytest.approx([0.0, 0.0, -2 * math.pi, -2 * math.pi])


@pytest.mark.parametrize("bits", BITS)
def test_symmetric_levels(bits):
    q = SymmetricQuantizer(bits)
    x = torch.randn(500)
    y = q.quantize(x)
    step = float(q.step(x))
    assert math.log2(step).is_integer()
    if bits == 1:
        assert set(y.abs().tolist()) == {step}
        assert torch.equal(torch.sign(y), torch.where(x >= 0, 1.0, -1.0))
    else:
        covering = float(x.abs().max()) / q.levels      # the step is the power of two in [covering, 2 covering)
        assert covering <= step < 2 * covering
        assert (x - y).abs().max() <= step / 2 + 1e-7
        assert len(torch.unique(y)) <= 2 ** bits - 1
    assert torch.equal(q.quantize(torch.zeros(4)), torch.zeros(4))


@pytest.mark.parametrize("kind", QUANTIZERS)
def test_straight_through_gradient(kind):
    x = torch.randn(10, requires_grad=True)
    weights = torch.randn(10)
    (kind(3)(x) * weights).sum().backward()
    assert torch.equal(x.grad, weights)


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(1, 8), count=st.integers(0, 40), data=st.data())
def test_pack_unpack_roundtrip(bits, count, data):
    codes = torch.tensor(data.draw(st.lists(st.integers(0, 2 ** bits - 1), min_size=count, max_size=count)),
                         dtype=torch.int64)
    packed = pack_codes(codes, bits)
    assert packed.numel() == packed_size(count, bits)
    assert torch.equal(unpack_codes(packed, bits, count), codes)


def test_decode_names_key_and_fault():
    q = SymmetricQuantizer(4)
    packed, step = encode(torch.randn(10), q)
    with pytest.raises(CheckpointError, match=r"f\.safetensors: key 'k'.codes must be 5 uint8 bytes"):
        decode(packed[:3], step, q, (10,), key="k", path="f.safetensors")
    with pytest.raises(CheckpointError, match="scale must be one positive finite number"):
        decode(packed, torch.tensor(-1.0), q, (10,), key="k")
    with pytest.raises(CheckpointError, match="beyond the 4-bit range"):
        decode(torch.full_like(packed, 255), step, q, (10,), key="k")


@pytest.mark.parametrize("bits", [-1, 9, 2.5, True, "4"])
def test_bad_bits_name_the_node(bits):
    with pytest.raises(SpecError, match="node 's'.*bits must be an integer from 0"):
        tn_peft.load_graph("quantum_peft", diagonal_bits=bits).build(16, 16)


def test_pauli_node_computes_with_quantized_angles():
    adapter = tn_peft.load_graph("quantum_peft", angle_bits=3, diagonal_bits=2).build(24, 16)
    u = adapter.nodes["U"]
    theta = u.theta().detach()
    step = 4 * math.pi / 8
    assert torch.allclose(theta, torch.round(theta / step) * step)
    assert u.orthonormality_error() < 1e-5
    assert "bits=3" in repr(u) and "bits=2" in repr(adapter.nodes["s"])
    with torch.no_grad():
        adapter.nodes["s"].values.copy_(torch.tensor([0.3, -0.2, 0.05, 0.9]))
    s = adapter.nodes["s"]()
    assert len(torch.unique(s.abs())) <= 2


def test_csd_construction_refuses_bits():
    with pytest.raises(SpecError, match="node 'U'.*csd construction"):
        tn_peft.load_graph("quantum_peft", angle_bits=2).build(22, 22)   # 22 = 2 x 11: csd
