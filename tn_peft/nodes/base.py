"""The node interface every node kind implements, and the open registry of kinds.

A node is an ``nn.Module`` that owns parameters and produces one tensor whose axes are its legs:
``node() -> Tensor`` of shape ``node.shape`` (one size per leg, in ``node.legs`` order).

New kinds register themselves by subclassing with a keyword::

    class MyNode(Node, kind="my_kind"):
        def __init__(self, name, legs, shape, *, init="zeros"):   # options are keyword arguments
            super().__init__(name, legs, shape)
            ...
        def forward(self):
            ...

The keyword arguments of ``__init__`` after ``shape`` are the kind's options: a graph spec sets them
on the node entry, and an option the kind does not take is a :class:`~tn_peft.errors.SpecError`.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import SpecError
from .kinds import BUILTIN_KINDS, check_options, kind_info

#: kind name -> class; filled by ``Node.__init_subclass__``.
REGISTRY: dict[str, type[Node]] = {}


class Node(nn.Module):
    """Base class of every node kind: parameters in, one tensor (axes = legs) out.

    Interface (the same for every kind):

    - ``forward() -> Tensor`` of shape ``self.shape``;
    - ``num_parameters()``: trainable parameter count;
    - ``right_inverse(tensor)``: set the parameters so that ``forward()`` returns ``tensor``,
      where the map has an inverse (otherwise ``NotImplementedError``);
    - ``as_network()``: for renormalized nodes (circuits of small gates) the gate network the
      planner may contract instead of the dense tensor; ``None`` for ordinary nodes;
      ``circuit_profile()`` what the planner reads of it (passes over the state, widest wire);
    - ``quantizers``: parameter name -> :class:`~tn_peft.nodes.quantize.Quantizer` for the parameters the node
      trains quantized (the ``bits`` option); the node computes with ``quantized(name)``, and the
      checkpoint stores those parameters as packed codes.

    Optional, to be evaluated many at once across layers (:mod:`tn_peft.adapter.batching`): ``batch_key()``
    (nodes of one class with equal keys go together; None: this one cannot) and a classmethod
    ``forward_many(nodes) -> list[Tensor]`` (their tensors from one batched computation).
    """

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, kind: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if kind is not None:
            other = REGISTRY.get(kind)
            if other is not None and other.__qualname__ != cls.__qualname__:
                raise ValueError(f"node kind {kind!r} is already registered by {other.__module__}.{other.__qualname__}")
            builtin = BUILTIN_KINDS.get(kind)
            if builtin is not None and cls.__module__ == builtin.module and cls.option_names() != builtin.options:
                raise TypeError(f"node kind {kind!r}: the options of {cls.__qualname__}.__init__ "
                                f"{cls.option_names()} differ from its row in tn_peft.nodes.kinds "
                                f"{builtin.options}; change both together")
            cls.kind = kind
            REGISTRY[kind] = cls

    def __init__(self, name: str, legs: Sequence[str], shape: Sequence[int]) -> None:
        super().__init__()
        if len(legs) != len(shape):
            raise SpecError(f"has {len(legs)} legs but {len(shape)} sizes", node=name)
        self.name = name
        self.legs = tuple(legs)
        self.shape = tuple(int(s) for s in shape)
        self.quantizers: dict[str, Any] = {}

    def forward(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def num_parameters(self) -> int:
        """Number of trainable scalars this node owns."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def right_inverse(self, tensor: torch.Tensor) -> None:
        """Set parameters so that ``forward()`` equals ``tensor``; kinds without an inverse refuse."""
        raise NotImplementedError(f"node kind {self.kind!r} has no right inverse")

    def quantized(self, name: str) -> torch.Tensor:
        """Parameter ``name`` as the node computes with it: ``q(p)`` (straight-through) when quantized, else ``p``."""
        param = getattr(self, name)
        quantizer = self.quantizers.get(name)
        return param if quantizer is None else quantizer(param)

    def as_network(self):
        """The gate network of a renormalized node, or ``None`` (the node is contracted as one tensor)."""
        return

    def circuit_profile(self) -> tuple[int, int] | None:
        """``(passes, chunk)`` the planner costs applying this node gate by gate with: passes over the
        state (one per gate op) and the widest wire; None (the default) for a node contracted as one
        tensor. A circuit kind overrides it beside ``as_network()`` (see the ``pauli`` kind)."""
        return None

    def extra_repr(self) -> str:
        legs = ", ".join(f"{leg}={size}" for leg, size in zip(self.legs, self.shape))
        return f"{self.name!r}, legs=({legs}), params={self.num_parameters()}"

    @classmethod
    def option_names(cls) -> dict[str, Any]:
        """The options this kind takes, with their defaults (the keyword-only arguments of ``__init__``)."""
        params = inspect.signature(cls.__init__).parameters
        return {n: p.default for n, p in params.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY}


def node_kind(kind: str, *, node: str | None = None, source: str | None = None) -> type[Node]:
    """The registered class of a kind (a built-in one's module is imported on first use), or a
    SpecError listing the known kinds."""
    info = kind_info(kind, node=node, source=source)
    if kind not in REGISTRY:
        importlib.import_module(info.module)
    return REGISTRY[kind]


def load_builtin_kinds() -> dict[str, type[Node]]:
    """Import every built-in kind's module (registering its class); the registry, now complete."""
    for info in BUILTIN_KINDS.values():
        importlib.import_module(info.module)
    return REGISTRY


def create_node(kind: str, name: str, legs: Sequence[str], shape: Sequence[int],
                options: dict[str, Any] | None = None, *, source: str | None = None,
                checked: bool = False) -> Node:
    """Instantiate a node of a registered kind, validating its options first (unless ``checked``: the
    node of a network that :meth:`~tn_peft.graph.network.Network.validate` passed)."""
    options = dict(options or {})
    if not checked:
        check_options(kind, options, node=name, source=source)
    cls = node_kind(kind, node=name, source=source)
    try:
        return cls(name, legs, shape, **options)
    except SpecError as err:
        if err.node is None or err.source is None:
            raise SpecError(err.bare_message, source=err.source or source, line=err.line,
                            node=err.node or name, leg=err.leg, fix=err.fix) from None
        raise
    except (TypeError, ValueError) as err:  # an option of the wrong type that the kind did not check itself
        given = ", ".join(f"{k}={v!r}" for k, v in options.items()) or "no options"
        raise SpecError(f"node kind {kind!r} cannot be built with {given}: {err}", source=source, node=name,
                        fix=f"give the options the types of their defaults ({cls.option_names()})") from None


class MatrixNode(Node):
    """A node that is a matrix in disguise: some legs are rows, the rest columns.

    Stiefel (orthonormal-column) kinds subclass this and implement ``matrix() -> (rows, cols)``;
    ``forward`` reshapes it to the legs. The ``cols`` option names the column legs (default: the
    last leg), e.g. a right-canonical TT core ``[r0, m, n, r1]`` uses ``cols: r0``.
    """

    def __init__(self, name: str, legs: Sequence[str], shape: Sequence[int],
                 cols: str | Sequence[str] | None = None) -> None:
        super().__init__(name, legs, shape)
        if cols is None:
            col_legs = (self.legs[-1],)
        elif isinstance(cols, str):
            col_legs = (cols,)
        else:
            col_legs = tuple(cols)
        for leg in col_legs:
            if leg not in self.legs:
                raise SpecError(f"option cols names {leg!r}, which is not one of its legs {list(self.legs)}",
                                node=name, leg=leg, fix="name column legs among the node's own legs")
        self.col_legs = col_legs
        self.row_legs = tuple(leg for leg in self.legs if leg not in col_legs)
        size = dict(zip(self.legs, self.shape))
        self.rows = math.prod(size[leg] for leg in self.row_legs)
        self.cols = math.prod(size[leg] for leg in self.col_legs)
        # permutation from (row legs..., col legs...) to the declared leg order
        order = self.row_legs + self.col_legs
        self._matrix_shape = tuple(size[leg] for leg in order)
        self._to_legs = tuple(order.index(leg) for leg in self.legs)
        self._from_legs = tuple(self.legs.index(leg) for leg in order)

    def matrix(self) -> torch.Tensor:  # pragma: no cover - abstract
        """The node as a (rows, cols) matrix."""
        raise NotImplementedError

    def set_matrix(self, matrix: torch.Tensor) -> None:
        """Right inverse on the matrix view; kinds with an inverse override this."""
        raise NotImplementedError(f"node kind {self.kind!r} has no right inverse")

    def forward(self) -> torch.Tensor:
        return self.matrix().reshape(self._matrix_shape).permute(self._to_legs)

    def to_matrix(self, tensor: torch.Tensor) -> torch.Tensor:
        """Reshape a tensor laid out like this node's legs into its (rows, cols) matrix view."""
        return tensor.permute(self._from_legs).reshape(self.rows, self.cols)

    def right_inverse(self, tensor: torch.Tensor) -> None:
        self.set_matrix(self.to_matrix(tensor))


def orthonormality_error(q: torch.Tensor, dtype: torch.dtype | None = None) -> float:
    """``max |Q^T Q - I|`` over a matrix (or a batch of matrices) meant to have orthonormal columns,
    computed in ``dtype`` (default: q's own); 0 for an empty matrix."""
    q = q.detach() if dtype is None else q.detach().to(dtype)
    if not q.numel():
        return 0.0
    eye = torch.eye(q.shape[-1], dtype=q.dtype, device=q.device)
    return float((q.transpose(-1, -2) @ q - eye).abs().max())


class StiefelNode(MatrixNode):
    """A matrix node with orthonormal columns (rows >= cols): ``Q^T Q = I``."""

    def __init__(self, name: str, legs: Sequence[str], shape: Sequence[int],
                 cols: str | Sequence[str] | None = None) -> None:
        super().__init__(name, legs, shape, cols)
        if self.rows < self.cols:
            raise SpecError(
                f"is an orthonormal-column (Stiefel) node of {self.rows} rows x {self.cols} columns; "
                f"it needs at least as many rows as columns",
                node=name, leg=self.col_legs[0],
                fix="lower the rank / bond size, or choose a dense node kind")

    def orthonormality_error(self) -> float:
        """max |Q^T Q - I|, a check of the parameterization's exactness."""
        with torch.no_grad():
            return orthonormality_error(self.matrix())

    def in_manifold(self, eps: float | None = None) -> bool:
        """geotorch's check: ``max |Q^T Q - I| <= eps`` (default: 1e-5 in float32, 1e-10 in float64)."""
        if eps is None:
            eps = 1e-10 if next(iter(self.parameters()), torch.empty(0)).dtype == torch.float64 else 1e-5
        return self.orthonormality_error() <= eps

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Move the node to a random point of its manifold and return its matrix (geotorch's ``sample``).

        A Haar-random Stiefel matrix (QR of a Gaussian, column signs fixed) through the kind's right
        inverse; a kind that cannot take it (circuits; a Lie map of intrinsic rank below K) redraws its
        parameters instead (``reset_parameters``, else standard normal), a random point it does reach.
        """
        from ..errors import RightInverseError

        like = next(iter(self.parameters()))
        gauss = torch.randn(self.rows, self.cols, generator=generator, dtype=torch.float64)
        q, r = torch.linalg.qr(gauss)
        q = q * torch.where(torch.diagonal(r) < 0, -1.0, 1.0)
        flip = torch.ones(self.cols, dtype=q.dtype)
        flip[-1] = -1.0
        for candidate in (q, q * flip):   # exp / Cayley may refuse one orientation, never both
            try:
                self.set_matrix(candidate.to(dtype=like.dtype, device=like.device))
                break
            except (NotImplementedError, RightInverseError):
                continue
        else:
            reset = getattr(self, "reset_parameters", None)
            with torch.no_grad():
                if callable(reset):
                    reset()
                else:
                    for p in self.parameters():
                        p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64).to(p))
        with torch.no_grad():
            return self.matrix()
