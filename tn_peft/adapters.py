"""``Adapter``: a :class:`~tn_peft.network.Network` built for one layer shape, as an ``nn.Module``.

``dW = scale * contract(node tensors) -> (out, in)`` and ``adapter(x) = x @ dW^T``, the
contraction order coming from the planner (:mod:`tn_peft.planner`) when one is attached, else a
fixed opt_einsum path computed once at build time.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import opt_einsum
import torch
from torch import nn

from .errors import ShapeError, SpecError
from .nodes.base import Node, create_node


class Adapter(nn.Module):
    """The trainable tensors of one adapted layer and the contraction that turns them into dW.

    Parameters
    ----------
    network : Network
        The structure (see :mod:`tn_peft.network`).
    in_features, out_features : int
        The layer's shape; ``W`` is ``(out_features, in_features)``.
    shared_nodes : mapping, optional
        Ready-made node modules for nodes the spec marks ``shared`` (LoTR). They are used, not
        registered as submodules: whoever shares them (the model wrapper) owns and saves them once.
    """

    def __init__(self, network, in_features: int, out_features: int, *,
                 shared_nodes: Mapping[str, Node] | None = None,
                 dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> None:
        super().__init__()
        network.validate()
        self.network = network
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.sizes = network.resolve(self.in_features, self.out_features)
        self.scale = network.scale_value(self.sizes)
        self.nodes = nn.ModuleDict()
        self._shared: dict[str, Node] = {}
        for spec in network.nodes:
            shape = tuple(self.sizes[leg] for leg in spec.legs)
            given = (shared_nodes or {}).get(spec.name) if spec.shared else None
            if given is not None:
                if tuple(given.shape) != shape:
                    raise SpecError(f"the shared node has shape {tuple(given.shape)}, this layer needs {shape}",
                                    node=spec.name, fix="share nodes only between layers of the same shape")
                self._shared[spec.name] = given
            else:
                self.nodes[spec.name] = create_node(spec.kind, spec.name, spec.legs, shape, spec.options,
                                                    source=network.source)
        if dtype is not None or device is not None:
            self.nodes.to(dtype=dtype, device=device)
        self.operands = network.node_names
        self.equation, _ = network.to_einsum()
        self.activation_equation, _ = network.to_einsum(activations=True)
        self.out_factors = tuple(self.sizes[leg] for leg in network.open["out"])
        self.in_factors = tuple(self.sizes[leg] for leg in network.open["in"])
        self._dw_expression = opt_einsum.contract_expression(
            self.equation, *(self.node(name).shape for name in self.operands), optimize="auto-hq")
        if network.delta:
            # QuanTA-style: dW = T(theta) - T(theta_0); keep theta_0's tensors frozen beside the nodes.
            with torch.no_grad():
                for name in self.operands:
                    self.register_buffer(f"initial_{name}", self.node(name)().detach().clone())

    # ------------------------------------------------------------------ nodes
    def node(self, name: str) -> Node:
        """The node module called ``name`` (own or shared)."""
        if name in self._shared:
            return self._shared[name]
        return self.nodes[name]

    def node_modules(self) -> dict[str, Node]:
        """Every node module in operand order, shared ones included."""
        return {name: self.node(name) for name in self.operands}

    def node_tensors(self) -> list[torch.Tensor]:
        """Each node's tensor (axes = its legs), in operand order."""
        return [self.node(name)() for name in self.operands]

    def initial_tensors(self) -> list[torch.Tensor]:
        """theta_0's tensors (only for ``delta`` networks)."""
        return [getattr(self, f"initial_{name}") for name in self.operands]

    def num_parameters(self) -> int:
        """Trainable scalars, shared nodes included."""
        return sum(node.num_parameters() for node in self.node_modules().values())

    # ------------------------------------------------------------ contraction
    def contract_dense(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """The network's dense tensor from given node tensors, as an (out, in) matrix (no scale)."""
        full = self._dw_expression(*tensors, backend="torch")
        return full.reshape(self.out_features, self.in_features)

    def delta_weight(self) -> torch.Tensor:
        """``dW`` as an (out, in) tensor: ``scale * contract(nodes)`` (minus theta_0's for delta nets)."""
        dw = self.contract_dense(self.node_tensors())
        if self.network.delta:
            dw = dw - self.contract_dense(self.initial_tensors())
        return self.scale * dw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ dW^T`` for ``x`` of shape ``(..., in_features)``."""
        if x.shape[-1] != self.in_features:
            raise ShapeError(f"adapter {self.network.name!r} takes inputs with last dimension {self.in_features}, "
                             f"got shape {tuple(x.shape)}")
        dw = self.delta_weight()
        return torch.nn.functional.linear(x, dw.to(x.dtype))

    def extra_repr(self) -> str:
        return (f"{self.network.name!r}, in={self.in_features}, out={self.out_features}, "
                f"params={self.num_parameters()}, scale={self.scale:g}")

    def describe(self) -> list[dict[str, Any]]:
        """One row per node: name, kind, legs with sizes, parameters, shared."""
        rows = []
        for spec in self.network.nodes:
            node = self.node(spec.name)
            rows.append({"name": spec.name, "kind": spec.kind,
                         "legs": {leg: self.sizes[leg] for leg in spec.legs},
                         "parameters": node.num_parameters(), "shared": spec.shared,
                         "elements": math.prod(node.shape)})
        return rows
