"""tn_peft.patterns: module-name regexes that could backtrack for long are refused before any matching."""

from __future__ import annotations

import pytest

import tn_peft
from tn_peft import SpecError
from tn_peft.limits import MAX_PATTERN_CHARS
from tn_peft.patterns import check_pattern


@pytest.mark.parametrize("pattern", [r".*\.(q_proj|v_proj)", r".*decoder.*(self_attn|encoder_attn).*(q_proj|v_proj)$",
                                     "query", "1|2", r"^(?!.*embed).*", "layer[0-3]", r"[a-z]+_proj"])
def test_usual_patterns_pass(pattern):
    check_pattern("target_modules", pattern)


@pytest.mark.parametrize("pattern,why", [(r"(a+)+$", "holds another one"), (r"(a|ab)*c", "holds an alternation"),
                                         (r"(\w+\s?)*$", "holds another one"), (".*" * 5 + "x", "5 unbounded repeats"),
                                         ("x" * (MAX_PATTERN_CHARS + 1), "more than the limit"),
                                         ("(", "not a valid regex")])
def test_slow_or_broken_patterns_are_one_spec_error(pattern, why):
    with pytest.raises(SpecError, match=why):
        check_pattern("target_modules", pattern)


def test_configs_and_lora_configs_check_their_patterns(tmp_path):
    with pytest.raises(SpecError, match="target_modules .* could make matching"):
        tn_peft.AdapterConfig(graph="lora", target_modules=r"(a+)+$")
    with pytest.raises(SpecError, match="layer_graph_args key"):
        tn_peft.AdapterConfig(graph="lora", target_modules=["q"], layer_graph_args={".*.*.*.*": {"rank": 2}})
    from tn_peft import CheckpointError
    from tn_peft.convert.lora_io import check_config

    with pytest.raises(CheckpointError, match="rank_pattern.*could make matching"):
        check_config({"peft_type": "LORA", "r": 2, "lora_alpha": 4, "rank_pattern": {"(a*)*": 2}}, tmp_path / "c.json")
