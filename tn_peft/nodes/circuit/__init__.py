"""Quantum-PEFT's renormalized nodes: Pauli circuits of small gates and everything they are made of.

- :mod:`.pauli`: the ``pauli`` node kind (the first K columns of a circuit; frames, init, QAT);
- :mod:`.layout`: which gate acts on which wire, layer by layer (qubits, mixed-radix wires);
- :mod:`.apply`: the circuit as a dense matrix, its first columns, and its action on a state;
- :mod:`.network`: the circuit as a network of gate ops the planner applies gate by gate;
- :mod:`.csd`: the cosine-sine construction for sizes that are not a power of two;
- :mod:`.fit`: fitting a circuit's angles to given orthonormal columns.
"""

from .apply import circuit_apply, circuit_columns, pauli_unitary
from .network import CircuitNetwork, CircuitOp
from .pauli import PauliNode

__all__ = ["CircuitNetwork", "CircuitOp", "PauliNode", "circuit_apply", "circuit_columns", "pauli_unitary"]
