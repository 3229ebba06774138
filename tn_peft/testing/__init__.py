"""Property testing for tn_peft adapters, shipped for users' own test suites.

    from hypothesis import given
    from tn_peft.testing import adapters, assert_planner_matches_reference, load_profile

    load_profile("ci")                      # derandomized, no deadline, bounded examples

    @given(adapters())
    def test_my_planner(adapter):
        assert_planner_matches_reference(adapter)

Strategies (:mod:`.strategies`, need ``hypothesis``): :func:`networks`, :func:`specs`, :func:`adapters`,
:func:`stiefel_nodes`, :func:`layer_shapes`; :func:`randomize` makes tensors non-trivial. Assertions (:mod:`.assertions`, torch only):
:func:`assert_orthonormal`, :func:`assert_equivalent`, :func:`assert_merge_roundtrip`,
:func:`assert_save_load_roundtrip`, :func:`assert_right_inverse_round_trips`,
:func:`assert_planner_matches_reference`. The reference contraction (:mod:`.reference`) is a plain
numpy einsum, independent of the planner. Profiles (:mod:`.profiles`): ``ci`` and ``thorough``.
"""

from .assertions import (
    TOLERANCES,
    assert_equivalent,
    assert_merge_roundtrip,
    assert_orthonormal,
    assert_planner_matches_reference,
    assert_right_inverse_round_trips,
    assert_same_delta,
    assert_save_load_roundtrip,
    tolerance,
)
from .profiles import PROFILES, load_profile, register_profiles
from .reference import (
    reference_contraction,
    reference_delta,
    reference_delta_weight,
    reference_output,
)
from .strategies import (
    STIEFEL_KINDS,
    adapters,
    layer_shapes,
    networks,
    randomize,
    specs,
    stiefel_nodes,
)

__all__ = ["PROFILES", "STIEFEL_KINDS", "TOLERANCES", "adapters", "assert_equivalent", "assert_merge_roundtrip",
           "assert_orthonormal", "assert_planner_matches_reference", "assert_right_inverse_round_trips",
           "assert_same_delta", "assert_save_load_roundtrip", "layer_shapes", "load_profile", "networks",
           "randomize", "reference_contraction", "reference_delta", "reference_delta_weight", "reference_output",
           "register_profiles", "specs", "stiefel_nodes", "tolerance"]
