"""Node kinds: each file holds one kind; importing this package registers them all.

See :mod:`tn_peft.nodes.base` for the interface and how to add a kind of your own.
"""

from .base import REGISTRY, MatrixNode, Node, StiefelNode, create_node, node_kind  # noqa: F401
from .dense import Dense  # noqa: F401
from .diagonal import Diagonal  # noqa: F401
from .circuit import circuit_apply, circuit_columns, pauli_unitary  # noqa: F401
from .circuit_network import CircuitNetwork, CircuitOp  # noqa: F401
from .pauli import PauliNode  # noqa: F401
from .lie import CayleyNode, ExpNode, TaylorNode, lie_columns  # noqa: F401
from .householder import HouseholderNode, householder_columns  # noqa: F401
from .givens import GivensNode, givens_columns  # noqa: F401

__all__ = ["REGISTRY", "Node", "MatrixNode", "StiefelNode", "create_node", "node_kind", "Dense", "Diagonal",
           "pauli_unitary", "circuit_columns", "circuit_apply", "CircuitNetwork", "CircuitOp", "PauliNode",
           "ExpNode", "CayleyNode", "TaylorNode", "lie_columns",
           "HouseholderNode", "householder_columns", "GivensNode", "givens_columns"]
