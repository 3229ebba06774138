"""geotorch's interface on every Stiefel kind: ``sample`` moves to a random point, ``in_manifold`` checks it;
right inverses that cannot reach a matrix raise RightInverseError (a ValueError)."""

from __future__ import annotations

import pytest
import torch

import tn_peft
from tn_peft.nodes.base import REGISTRY, StiefelNode, create_node

#: the exact kinds (taylor truncates exp, so it is near the manifold only for small generators)
EXACT = sorted(k for k, cls in REGISTRY.items() if issubclass(cls, StiefelNode) and k != "taylor")


@pytest.mark.parametrize("kind", EXACT)
def test_sample_is_on_the_manifold_and_random(kind):
    node = create_node(kind, "Q", ["r", "k"], [12, 3])
    first = node.sample(torch.Generator().manual_seed(0)).clone()
    assert node.in_manifold() and first.shape == (12, 3)
    second = node.sample(torch.Generator().manual_seed(1))
    assert not torch.allclose(first, second)
    torch.testing.assert_close(node.matrix().detach(), second)


def test_in_manifold_sees_a_broken_node():
    node = create_node("householder", "Q", ["r", "k"], [12, 3])
    node.sample()
    assert node.in_manifold(eps=1e-5) and node.in_manifold()
    taylor = create_node("taylor", "Q", ["r", "k"], [12, 3])
    with torch.no_grad():
        for p in taylor.parameters():
            p.mul_(0).add_(5.0)          # a large generator: the truncated series leaves the manifold
    assert not taylor.in_manifold()


def test_refused_right_inverses_are_right_inverse_errors():
    assert issubclass(tn_peft.RightInverseError, ValueError)
    cayley = create_node("cayley", "Q", ["r", "k"], [4, 2])
    minus = torch.zeros(4, 2)
    minus[0, 0], minus[1, 1] = -1.0, 1.0           # an eigenvalue -1 in the top block
    with pytest.raises(tn_peft.RightInverseError, match="eigenvalue"):
        cayley.set_matrix(minus)
    with pytest.raises(tn_peft.RightInverseError, match="not orthonormal"):
        cayley.set_matrix(torch.ones(4, 2))
