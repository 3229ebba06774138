"""Property tests: LoRA -> svd -> LoRA reproduces dW for random shapes, ranks, alphas, rsLoRA and
rank/alpha patterns; TT-SVD is exact at full rank and canonical."""

import tempfile
from pathlib import Path

import torch
from convert_helpers import fast_map
from hypothesis import given, settings
from hypothesis import strategies as st

from tn_peft.convert import from_lora, read_lora, to_lora, tt
from tn_peft.convert.linalg import orthonormality_error, relative_error
from tn_peft.convert.lora_io import lora_tensors, write_lora


@st.composite
def lora_checkpoints(draw):
    n = draw(st.integers(1, 3))
    default_r = draw(st.integers(1, 6))
    default_alpha = draw(st.sampled_from([1, 4, 8, 16, 32]))
    layers, rank_pattern, alpha_pattern = {}, {}, {}
    for i in range(n):
        name = f"model.layers.{i}.proj"
        out, inp = draw(st.integers(1, 20)), draw(st.integers(1, 20))
        r = default_r
        if draw(st.booleans()):
            r = draw(st.integers(1, 8))
            rank_pattern[f"layers.{i}.proj"] = r
        if draw(st.booleans()):
            alpha_pattern[f"layers.{i}.proj"] = draw(st.floats(0.5, 64).map(lambda a: round(a, 3)))
        layers[name] = (out, inp, r)
    config = {"peft_type": "LORA", "r": default_r, "lora_alpha": default_alpha, "use_rslora": draw(st.booleans()),
              "rank_pattern": rank_pattern, "alpha_pattern": alpha_pattern,
              "target_modules": sorted(layers), "bias": "none"}
    seed = draw(st.integers(0, 2**16))
    return config, layers, seed


@settings(max_examples=15)
@given(case=lora_checkpoints())
def test_lora_svd_lora_round_trip(case):
    config, layers, seed = case
    g = torch.Generator().manual_seed(seed)
    factors = {name: (torch.randn(out, r, generator=g), torch.randn(r, inp, generator=g))
               for name, (out, inp, r) in layers.items()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_lora(tmp / "lora", config, lora_tensors(factors))
        original = read_lora(tmp / "lora")
        report = from_lora(tmp / "lora", tmp / "svd", "svd", map=fast_map())
        assert report.exact
        to_lora(tmp / "svd", tmp / "back")
        back = read_lora(tmp / "back")
        for name, layer in original.layers.items():
            dw, dw_back = layer.delta_weight(), back.layers[name].delta_weight()
            assert float((dw - dw_back).abs().max()) <= 1e-5 * max(1.0, float(dw.abs().max())), name
            assert back.layers[name].rank == min(layer.rank, layer.out_features, layer.in_features)


@st.composite
def factored_matrices(draw):
    d = draw(st.integers(2, 4))
    out_f = [draw(st.integers(1, 4)) for _ in range(d)]
    in_f = [draw(st.integers(1, 4)) for _ in range(d)]
    out, inp = torch.Size(out_f).numel(), torch.Size(in_f).numel()
    r = draw(st.integers(1, 5))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    dW = torch.randn(out, r, generator=g, dtype=torch.float64) @ torch.randn(r, inp, generator=g, dtype=torch.float64)
    return dW, out_f, in_f


@given(case=factored_matrices(), data=st.data())
def test_tt_svd_exact_and_canonical(case, data):
    dW, out_f, in_f = case
    cores = tt.tt_svd(dW, out_f, in_f)
    assert relative_error(tt.tt_to_matrix(cores), dW) < 1e-10
    center = data.draw(st.integers(1, len(cores) - 1))
    canon, s = tt.mixed_canonical(cores, center)
    padded, s = tt.pad_canonical(canon, s, center, tt.full_ranks(out_f, in_f))
    assert relative_error(tt.canonical_to_matrix(padded, s, center), dW) < 1e-10
    for t, core in enumerate(padded):
        r0, m, n, r1 = core.shape
        matrix = core.reshape(r0 * m * n, r1) if t < center else core.reshape(r0, m * n * r1).T
        assert orthonormality_error(matrix) < 1e-10


@given(case=factored_matrices(), tolerance=st.floats(1e-3, 0.9))
def test_tt_tolerance_bounds_the_error(case, tolerance):
    dW, out_f, in_f = case
    ranks = tt.ranks_for_tolerance(dW, out_f, in_f, tolerance)
    approx = tt.tt_to_matrix(tt.tt_svd(dW, out_f, in_f, ranks))
    assert relative_error(approx, dW) <= tolerance * (1 + 1e-9) + 1e-12
