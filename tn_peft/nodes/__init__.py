"""Node kinds: each file holds one kind (the Pauli circuits: the :mod:`.circuit` package); importing
this package registers them all. :mod:`.quantize` holds the quantizers a node trains its parameters
with (the ``bits`` option) and their packed checkpoint form.

See :mod:`tn_peft.nodes.base` for the interface and how to add a kind of your own.
"""

from .base import REGISTRY, MatrixNode, Node, StiefelNode, create_node, node_kind
from .circuit import (
           CircuitNetwork,
           CircuitOp,
           PauliNode,
           circuit_apply,
           circuit_columns,
           pauli_unitary,
)
from .dense import Dense
from .diagonal import Diagonal
from .givens import GivensNode, givens_columns
from .householder import HouseholderNode, householder_columns
from .lie import CayleyNode, ExpNode, TaylorNode, lie_columns

__all__ = [
           "REGISTRY",
           "CayleyNode",
           "CircuitNetwork",
           "CircuitOp",
           "Dense",
           "Diagonal",
           "ExpNode",
           "GivensNode",
           "HouseholderNode",
           "MatrixNode",
           "Node",
           "PauliNode",
           "StiefelNode",
           "TaylorNode",
           "circuit_apply",
           "circuit_columns",
           "create_node",
           "givens_columns",
           "householder_columns",
           "lie_columns",
           "node_kind",
           "pauli_unitary",
]
