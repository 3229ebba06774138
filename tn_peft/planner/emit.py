"""Emission: a contraction tree -> straight-line torch source, and the exact list of what it keeps.

Each pairwise step becomes one ``matmul`` / ``F.linear`` (or one broadcast ``*`` when nothing is
summed), preceded only by the reshapes and permutes its operands need. The emitter tracks every
tensor's leg order (``layout``) and physical shape, so it knows which reshapes are free views and
which permutes copy, and which storage each op makes autograd keep. :class:`Emitted` carries the
source lines and that op list; :mod:`~tn_peft.planner.lower` drives the emitter over a plan's
trees, :mod:`~tn_peft.planner.plan` derives ``saved_bytes`` and ``peak_bytes`` from the ops and
compiles the source once with :func:`compile_source`.

Example (LoRA contracted into x, ``y = ((x A^T) B^T) * scale`` with the scale folded into A)::

    def program(x, B, A):
        A_s = A * 2.0
        t0 = F.linear(x, A_s)  # [T,in] . [r,in] -> [T,r]
        t1 = F.linear(t0, B)  # [T,r] . [out,r] -> [T,out]
        return t1
"""

from __future__ import annotations

import keyword
import linecache
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .cost import CostModel, circuit_cost, pair_cost
from .cost.step import matmul_cost
from ..names import is_name
from .problem import TOKENS, Operand, Problem
from .verify import verify_source

#: how the file name of every compiled program starts (tracebacks, linecache, the fuzzers' audit hook)
PROGRAM_FILENAME_PREFIX = "<tn_peft plan "


@dataclass
class Var:
    """A tensor in the program: its Python name, leg order, physical dims (groups of legs), storage."""

    name: str
    layout: tuple[str, ...]
    phys: tuple[tuple[str, ...], ...]
    storage: str
    grad: bool
    leaf: bool = False


@dataclass
class Op:
    """One emitted op: the storage it creates (bytes), the storages autograd keeps for it."""

    kind: str
    out: str | None = None
    out_bytes: int = 0
    saves: list[str] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)
    flops: float = 0.0
    backward_flops: float = 0.0
    time: float = 0.0           # predicted seconds, forward + backward


@dataclass
class Emitted:
    """Source lines of a program body, its ops, and the byte size of every storage."""

    lines: list[str] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    storage_bytes: dict[str, int] = field(default_factory=dict)
    counted: set[str] = field(default_factory=set)   # storages whose bytes count (not node tensors)
    widened: list[str] = field(default_factory=list)  # node matrices copied thin side first (emit.widen)


@dataclass(frozen=True)
class Orientation:
    """How ``a . b`` groups its legs and stores each operand, before the result's order is chosen.

    ``left`` / ``right``: legs of a only / of b only; ``batch``: shared legs kept; ``contr``: shared
    legs summed; ``widened``: b's layout after :meth:`Emitter.widen` (None: unchanged); ``copied``:
    bytes the operands' layout copies cost; ``a_ff`` / ``b_ff``: an operand stored free legs first.
    """

    left: list[str]
    right: list[str]
    batch: list[str]
    contr: list[str]
    widened: tuple[str, ...] | None
    copied: int
    a_ff: bool
    b_ff: bool


@dataclass(frozen=True)
class MatmulSetup:
    """One way to emit ``a . b``: its :class:`Orientation`, the result's leg order (``layout``), the
    view ops it adds, and whether a transposed product puts a's legs first (``left_first``)."""

    orientation: Orientation
    layout: tuple[str, ...]
    views: int
    left_first: bool


#: names a program's operands may not take: the compiled namespace's globals (runtime.namespace.NAMESPACE,
#: kept torch-free here; a test holds the two together) and the activations argument ``x``
RESERVED = ("torch", "F", "apply_circuit", "x")


def identifier(name: str, taken: set[str]) -> str:
    """A Python identifier for an operand name, unique among ``taken``: ASCII letters, digits and '_' only,
    whatever ``name`` holds (names are checked identifiers already; this holds even if they were not)."""
    base = "".join(c if (c.isascii() and c.isalnum()) or c == "_" else "_" for c in name)[:64] or "t"
    if base[0].isdigit() or keyword.iskeyword(base) or base in RESERVED or base.startswith("__"):
        base = "n_" + base
    out, k = base, 1
    while out in taken:
        out, k = f"{base}_{k}", k + 1
    taken.add(out)
    return out


def comment_text(name: str) -> str:
    """``name`` as it may stand in a comment of generated source: as is if it is a plain name
    (:func:`tn_peft.names.is_name`), else its ``ascii()`` repr (one line of printable ASCII)."""
    return name if is_name(name) else ascii(name)


#: Node matrices with a side of at most WIDEN_SMALL elements and the other WIDEN_RATIO times larger
#: are laid out thin side first before meeting the activations (see :meth:`Emitter.widen`).
WIDEN_SMALL = 64
WIDEN_RATIO = 16


class Emitter:
    """Emits the steps of one tree over one problem into an :class:`Emitted` (shared by branches)."""

    def __init__(self, problem: Problem, emitted: Emitted, model: CostModel, prefix: str = "t",
                 widen: bool = False):
        self.problem = problem
        self.widen_nodes = widen
        self.model = model
        self.views = 0  # view ops (reshape, t, permute for broadcasting) emitted since the last op
        self.sizes = problem.size_dict
        self.itemsize = problem.itemsize
        self.out = emitted
        self.prefix = prefix
        self.count = 0

    # --------------------------------------------------------------- helpers
    def fresh(self) -> str:
        name = f"{self.prefix}{self.count}"
        self.count += 1
        return name

    def nbytes(self, legs: Sequence[str]) -> int:
        return math.prod(self.sizes[leg] for leg in legs) * self.itemsize

    def dim(self, legs: Sequence[str]) -> str:
        """A reshape size: the product, or -1 for the one dimension holding the tokens."""
        return "-1" if TOKENS in legs else str(math.prod(self.sizes[leg] for leg in legs))

    def shape(self, groups: Sequence[Sequence[str]]) -> str:
        return "(" + ", ".join(self.dim(g) for g in groups) + ("," if len(groups) == 1 else "") + ")"

    def label(self, legs: Sequence[str]) -> str:
        """``[T,in]``: legs for a comment; a leg that is not a plain name is written escaped (``ascii``),
        so no string from a spec can end the comment it stands in."""
        return "[" + ",".join("T" if leg == TOKENS else comment_text(leg) for leg in legs) + "]"

    def new_storage(self, name: str, legs: Sequence[str], counted: bool = True) -> str:
        self.out.storage_bytes[name] = self.nbytes(legs)
        if counted:
            self.out.counted.add(name)
        return name

    def record(self, op: Op, grad: bool) -> None:
        """Append ``op``, charging the view ops emitted for it (forward, and backward if ``grad``)."""
        op.time += self.views * self.model.op_overhead * (1 + int(grad))
        self.views = 0
        self.out.ops.append(op)

    def leaf(self, index: int, var_name: str) -> Var:
        op = self.problem.operands[index]
        if op.kind == "x":
            storage = self.new_storage(var_name, op.legs)
            return Var(var_name, op.legs, ((TOKENS,), tuple(op.legs[1:])), storage, op.requires_grad)
        storage = self.new_storage(var_name, op.legs, counted=False)
        return Var(var_name, op.legs, tuple((leg,) for leg in op.legs), storage, op.requires_grad, leaf=True)

    def view(self, v: Var, groups: Sequence[Sequence[str]]) -> str:
        """Expression of v with physical dims ``groups`` (in v's leg order; a reshape, never a copy)."""
        groups = tuple(tuple(g) for g in groups)
        if groups == v.phys:
            return v.name
        self.views += 1
        return f"{v.name}.reshape{self.shape(groups)}"

    def arrange(self, v: Var, groups: Sequence[Sequence[str]]) -> tuple[str, str]:
        """Expression of v laid out as ``groups`` (any leg order): (expr, storage it reads)."""
        order = tuple(leg for g in groups for leg in g)
        if order == v.layout:
            expr = self.view(v, groups)
            return expr, v.storage
        perm = tuple(v.layout.index(leg) for leg in order)
        base = self.view(v, tuple((leg,) for leg in v.layout))
        name = self.fresh()
        storage = self.new_storage(name, order)
        self.out.lines.append(f"{name} = {base}.permute{perm}.reshape{self.shape(groups)}  # copy")
        self._charge_copy(storage, v, self._inner_run(order, v.layout))
        return name, storage

    def sum_out(self, v: Var, legs: Sequence[str]) -> Var:
        """Sum legs no other tensor needs."""
        expr = self.view(v, tuple((leg,) for leg in v.layout))
        dims = tuple(v.layout.index(leg) for leg in legs)
        keep = tuple(leg for leg in v.layout if leg not in legs)
        name = self.fresh()
        storage = self.new_storage(name, keep)
        self.out.lines.append(f"{name} = {expr}.sum({dims})")
        self._charge_sum(storage, v)
        return Var(name, keep, tuple((leg,) for leg in keep), storage, v.grad)

    # ------------------------------------------------------------------ steps
    def contract(self, a: Var, b: Var, keep: frozenset[str], after: frozenset[str] | tuple | None = None) -> Var:
        """``C = contract(a, b)`` keeping legs ``keep``: one matmul, or one broadcast multiply.

        ``after``: the legs the next step sums over C (a set), or C's final leg order (a tuple);
        among the ways to lay the matmul out, the one that spares that step a copy wins.
        """
        lonely_a = [leg for leg in a.layout if leg not in b.layout and leg not in keep]
        lonely_b = [leg for leg in b.layout if leg not in a.layout and leg not in keep]
        if lonely_a:
            a = self.sum_out(a, lonely_a)
        if lonely_b:
            b = self.sum_out(b, lonely_b)
        summed = [leg for leg in a.layout if leg in b.layout and leg not in keep]
        lead = self.problem.output[0]
        if lead in b.layout and lead not in a.layout:  # results start with T (or out): fewer final copies
            a, b = b, a
        if not summed:
            return self.broadcast(a, b)
        options = []
        for rank, (x, y) in enumerate(((a, b), (b, a))):
            base = self._orientation(x, y, keep)
            for left_first in (False, True):
                setup = self._setup(base, left_first)
                later = self._later_copy(setup.layout, base.batch, after)
                options.append((base.copied + later, setup.views, rank, left_first, x, y, setup))
        *_, x, y, setup = min(options, key=lambda o: o[:4])
        return self.matmul(x, y, keep, setup=setup)

    def _later_copy(self, layout: tuple, batch: list[str], after) -> int:
        """Bytes the consumer of a result laid out ``layout`` must copy (0 if it can view it)."""
        if after is None:
            return 0
        if isinstance(after, tuple):  # the final order
            return 0 if layout == after else self.nbytes(layout)
        rest = layout[len(batch):]
        width = len(after)
        if not width or set(rest[:width]) == after or set(rest[-width:]) == after:
            return 0
        return self.nbytes(layout)

    def _orientation(self, a: Var, b: Var, keep: frozenset[str]) -> Orientation:
        """The groups of ``a . b`` and how each operand is stored: the part of :meth:`_setup` that
        does not depend on the result's order (``left_first``)."""
        left = [leg for leg in a.layout if leg not in b.layout]
        right = [leg for leg in b.layout if leg not in a.layout]
        b_layout = b.layout
        best = None
        for source in (a, b):  # take the order of shared legs from a or from b: fewer copied bytes
            batch = [leg for leg in source.layout if leg in keep and leg in a.layout and leg in b.layout]
            contr = [leg for leg in source.layout if leg not in keep and leg in a.layout and leg in b.layout]
            widened = self._widened(b, right, contr, a, batch)
            copied = sum(self.nbytes(lay) for lay, free in ((a.layout, left), (widened or b_layout, right))
                         if self._orient(lay, batch, free, contr) is None)
            if best is None or copied < best[0]:
                best = (copied, batch, contr, widened)
        copied, batch, contr, widened = best
        a_ff = self._orient(a.layout, batch, left, contr)
        b_ff = self._orient(widened or b_layout, batch, right, contr)
        a_ff = True if a_ff is None else a_ff
        b_ff = (not a_ff) if b_ff is None else b_ff
        return Orientation(left, right, batch, contr, widened, copied, a_ff, b_ff)

    @staticmethod
    def _setup(orientation: Orientation, left_first: bool = False) -> MatmulSetup:
        """How ``a . b`` would be emitted (from :meth:`_orientation`): result layout and view ops."""
        left, right, batch = orientation.left, orientation.right, orientation.batch
        a_ff, b_ff = orientation.a_ff, orientation.b_ff
        views = 0
        if a_ff:
            rest = left + right
            views = int(bool(batch) and b_ff)
        elif b_ff:
            rest = left + right if left_first else right + left
            views = 2 if left_first else 0
        else:
            rest = left + right
            views = 1
        return MatmulSetup(orientation, tuple(batch) + tuple(rest), views, left_first and not a_ff and b_ff)

    def _widened(self, b: Var, right: list[str], contr: list[str], a: Var, batch: list[str]) -> tuple | None:
        """b's layout after :meth:`widen`, or None if it stays."""
        if not (self.widen_nodes and not batch and TOKENS in a.layout and b.leaf):
            return None
        split = self._thin_side_first(b.layout, right, contr)
        return None if split is None else tuple(split[0] + split[1])

    def _thin_side_first(self, layout: tuple, free: list[str], contr: list[str]) -> tuple[list, list] | None:
        """``(small legs, big legs)`` of a thin matrix stored big side first, else None."""
        f, c = (math.prod(self.sizes[leg] for leg in g) for g in (free, contr))
        small, big = min(f, c), max(f, c)
        if small > WIDEN_SMALL or big < WIDEN_RATIO * small:
            return None
        small_legs, big_legs = (free, contr) if f <= c else (contr, free)
        if tuple(layout) != tuple(big_legs + small_legs):
            return None
        return small_legs, big_legs

    @staticmethod
    def _orient(layout: tuple, batch: list[str], free: list[str], contr: list[str]) -> bool | None:
        if layout == tuple(batch + free + contr):
            return True
        if layout == tuple(batch + contr + free):
            return False
        return None

    def matmul(self, a: Var, b: Var, keep: frozenset[str], setup: MatmulSetup) -> Var:
        """``a . b`` as laid out by ``setup`` (from :meth:`_setup`, chosen by :meth:`contract`)."""
        o = setup.orientation
        batch, contr, left, right = o.batch, o.contr, o.left, o.right
        if o.widened is not None:
            b = self.widen(b, right, contr)
        a_ff, b_ff = o.a_ff, o.b_ff
        a_expr, a_st = self.arrange(a, [g for g in ([batch] if batch else []) + ([left, contr] if a_ff else [contr, left])])
        b_expr, b_st = self.arrange(b, [g for g in ([batch] if batch else []) + ([right, contr] if b_ff else [contr, right])])
        name = self.fresh()
        # a_ff: a is (left, contr); b_ff: b is (right, contr), the natural F.linear weight.
        if not batch:
            if a_ff and b_ff:
                expr, rest = f"F.linear({a_expr}, {b_expr})", left + right
            elif a_ff:
                expr, rest = f"torch.matmul({a_expr}, {b_expr})", left + right
            elif b_ff and setup.left_first:
                expr, rest = f"torch.matmul({a_expr}.t(), {b_expr}.t())", left + right
            elif b_ff:
                expr, rest = f"torch.matmul({b_expr}, {a_expr})", right + left
            else:
                expr, rest = f"torch.matmul({a_expr}.t(), {b_expr})", left + right
        else:
            if a_ff and not b_ff:
                expr, rest = f"torch.matmul({a_expr}, {b_expr})", left + right
            elif not a_ff and b_ff and setup.left_first:
                expr, rest = (f"torch.matmul({a_expr}.transpose(-1, -2), {b_expr}.transpose(-1, -2))",
                              left + right)
            elif not a_ff and b_ff:
                expr, rest = f"torch.matmul({b_expr}, {a_expr})", right + left
            elif a_ff:
                expr, rest = f"torch.matmul({a_expr}, {b_expr}.transpose(-1, -2))", left + right
            else:
                expr, rest = f"torch.matmul({a_expr}.transpose(-1, -2), {b_expr})", left + right
        first, second = (left, right) if rest == left + right else (right, left)
        layout = tuple(batch) + tuple(rest)
        # the result's real dims, size-1 ones included (an empty group is a dim of size 1)
        phys = tuple(tuple(g) for g in ((batch, first, second) if batch else (first, second)))
        storage = self.new_storage(name, layout)
        self.out.lines.append(f"{name} = {expr}  # {self.label(a.layout)} . {self.label(b.layout)} -> "
                              f"{self.label(layout)}")
        self.views += expr.count(".t()") + expr.count(".transpose(")
        self._charge_matmul(a, b, (a_st, b_st), storage, layout, (left, right, contr, batch))
        return Var(name, layout, phys, storage, a.grad or b.grad)

    def widen(self, v: Var, free: list[str], contr: list[str]) -> Var:
        """A thin node matrix applied to activations, stored big side first (LoRA's ``B[out, r]``,
        ``V[in, k]``), is copied once to small side first: BLAS runs the forward and both backward
        products of such skinny shapes several times faster that way (measured: 5-9x on MKL)."""
        split = self._thin_side_first(v.layout, free, contr)
        if split is None:
            return v
        small_legs, big_legs = split
        layout = tuple(small_legs + big_legs)
        name = self.fresh()
        storage = self.new_storage(name, layout)
        self.views += 1
        self.out.lines.append(f"{name} = {self.view(v, [big_legs, small_legs])}.t().contiguous()  # thin side first")
        self.out.widened.append(v.name)
        self._charge_copy(storage, v, 1)
        return Var(name, layout, (tuple(small_legs), tuple(big_legs)), storage, v.grad)

    def broadcast(self, a: Var, b: Var) -> Var:
        """``C = a * b`` with broadcasting (a diagonal scaling, or an outer product)."""
        base, other = (a, b) if self.nbytes(a.layout) >= self.nbytes(b.layout) else (b, a)
        extra = tuple(leg for leg in other.layout if leg not in base.layout)
        layout = tuple(base.layout) + extra
        per_leg = tuple((leg,) for leg in other.layout)
        name = self.fresh()
        head = base.phys[:len(base.phys) - len(per_leg)]
        if not extra and len(per_leg) <= len(base.phys) and base.phys[len(head):] == per_leg:
            # e.g. h[T, k] * s[k]: plain broadcasting on the trailing dims
            base_expr, phys = base.name, base.phys
            other_expr = self.view(other, per_leg)
        else:
            dims = [self.dim((leg,)) for leg in base.layout] + ["1"] * len(extra)
            if base.phys == tuple((leg,) for leg in base.layout) and not extra:
                base_expr = base.name
            else:
                base_expr = f"{base.name}.reshape({', '.join(dims)}{',' if len(dims) == 1 else ''})"
            other_expr = self.view(other, per_leg)
            order = [leg for leg in layout if leg in other.layout]
            perm = tuple(other.layout.index(leg) for leg in order)
            if perm != tuple(range(len(perm))):
                other_expr += f".permute{perm}"
            if len(order) < len(layout):
                other_expr += "[" + ", ".join(":" if leg in other.layout else "None" for leg in layout) + "]"
            phys = tuple((leg,) for leg in layout)
        storage = self.new_storage(name, layout)
        self.out.lines.append(f"{name} = {base_expr} * {other_expr}  # {self.label(a.layout)} * "
                              f"{self.label(b.layout)} -> {self.label(layout)}")
        self.views += other_expr.count(".permute") + other_expr.count("[") + base_expr.count(".reshape")
        self._charge_broadcast(a, b, storage, layout)
        return Var(name, layout, phys, storage, a.grad or b.grad)

    def circuit(self, q: Var, a: Var, op_index: int, keep: frozenset[str]) -> Var:
        """A renormalized node ``q`` applied gate by gate to ``a`` (rows of a are states)."""
        operand = self.problem.operands[op_index]
        rows, col = tuple(operand.legs[:-1]), operand.legs[-1]
        if all(leg in a.layout for leg in rows):   # a[..., rows] -> a[..., k] = a @ Q
            rest = [leg for leg in a.layout if leg not in rows]
            expr, st = self.arrange(a, [rest, list(rows)] if rest else [[], list(rows)])
            call, layout = f"apply_circuit({q.name}, {expr}, transpose=True)", tuple(rest) + (col,)
        else:                                      # a[..., k] -> a[..., rows] = a @ Q^T
            rest = [leg for leg in a.layout if leg != col]
            expr, st = self.arrange(a, [rest, [col]] if rest else [[], [col]])
            call, layout = f"apply_circuit({q.name}, {expr}, transpose=False)", tuple(rest) + rows
        if not rest:
            expr = f"{expr}.reshape(1, -1)"
        name = self.fresh()
        storage = self.new_storage(name, layout)
        self.out.lines.append(f"{name} = {call}  # {q.name} gate by gate on {self.label(a.layout)} -> "
                              f"{self.label(layout)}")
        self._charge_circuit(q, a, operand, st, storage, rest, rows)
        phys = (tuple(rest), tuple(layout[len(rest):])) if rest else (tuple(layout),)
        return Var(name, layout, phys, storage, q.grad or a.grad)

    def finish(self, v: Var, target: Sequence[Sequence[str]]) -> str:
        """Bring v to the physical dims ``target`` (e.g. ``(T, out)``): the program's result."""
        expr, _ = self.arrange(v, target)
        return expr

    def scale_leaf(self, v: Var, scale: float) -> Var:
        name = f"{v.name}_s"
        self.out.lines.append(f"{name} = {v.name} * {float(scale)!r}")  # a float's repr: a number, never code
        storage = self.new_storage(name, v.layout)
        self._charge_scale(storage, v)
        return Var(name, v.layout, v.phys, storage, v.grad, leaf=True)

    # -------------------------------------------------------- cost accounting
    # The methods above write source lines; each method below records the Op one emitted line is
    # charged as: the bytes it makes, the storages autograd keeps for it, its FLOPs and seconds.
    def _charge_copy(self, storage: str, v: Var, run: int) -> None:
        """A layout copy of ``v`` into ``storage`` keeping a contiguous inner run of ``run`` entries."""
        nbytes = self.out.storage_bytes[storage]
        time = self.model.copy_seconds(nbytes, run) * (1 + int(v.grad))
        self.record(Op("copy", storage, nbytes, [], [v.storage], time=time), v.grad)

    def _inner_run(self, order: tuple[str, ...], layout: tuple[str, ...]) -> int:
        """Entries of the trailing legs ``order`` keeps in ``layout``'s place (the contiguous inner run)."""
        run = 1
        for leg_a, leg_b in zip(reversed(order), reversed(layout)):
            if leg_a != leg_b:
                break
            run *= self.sizes[leg_a]
        return run

    def _charge_sum(self, storage: str, v: Var) -> None:
        nbytes = self.nbytes(v.layout)
        time = self.model.op_seconds(nbytes / self.itemsize, nbytes) * (1 + int(v.grad))
        self.record(Op("sum", storage, self.out.storage_bytes[storage], [], [v.storage],
                       nbytes / self.itemsize, nbytes / self.itemsize * v.grad, time), v.grad)

    def _charge_matmul(self, a: Var, b: Var, reads: tuple[str, str], storage: str, layout: tuple[str, ...],
                       groups: tuple[list[str], list[str], list[str], list[str]]) -> None:
        """``a . b`` reading storages ``reads`` (as arranged), grouped ``(left, right, contr, batch)``."""
        a_st, b_st = reads
        saves = ([a_st] if b.grad else []) + ([b_st] if a.grad else [])
        m, n, k, batch_size = (math.prod(self.sizes[leg] for leg in g) for g in groups)
        entries = [math.prod(self.sizes[leg] for leg in lay) for lay in (a.layout, b.layout, layout)]
        # the search's matmul cost; layout copies are ops of their own here, so none are charged
        cost = matmul_cost(self.model, *entries, m * n * k * batch_size, m, n, k, a.grad, b.grad,
                           itemsize=self.itemsize)
        self.record(Op("matmul", storage, entries[2] * self.itemsize, saves, [a_st, b_st], cost.flops,
                       cost.backward_flops, cost.time), a.grad or b.grad)

    def _charge_broadcast(self, a: Var, b: Var, storage: str, layout: tuple[str, ...]) -> None:
        saves = ([a.storage] if b.grad else []) + ([b.storage] if a.grad else [])
        cost = pair_cost(self.model, a.layout, b.layout, layout, self.sizes, grad_a=a.grad, grad_b=b.grad,
                         itemsize=self.itemsize)
        self.record(Op("mul", storage, self.out.storage_bytes[storage], saves, [a.storage, b.storage],
                       cost.flops, cost.backward_flops, cost.time), a.grad or b.grad)

    def _charge_circuit(self, q: Var, a: Var, operand: Operand, read: str, storage: str, rest: list[str],
                        rows: tuple[str, ...]) -> None:
        """Circuit ``q`` applied gate by gate to the rows of ``a`` (arranged as storage ``read``)."""
        passes = max(operand.passes, 1)
        saves = [read] * passes if q.grad else []
        width = math.prod(self.sizes[leg] for leg in rows)
        cost = circuit_cost(self.model, max(self.nbytes(rest) // self.itemsize, 1), width, passes, operand.chunk,
                            a.grad, q.grad, self.itemsize)
        self.record(Op("circuit", storage, self.out.storage_bytes[storage], saves, [read], cost.flops,
                       cost.backward_flops, cost.time), a.grad or q.grad)

    def _charge_scale(self, storage: str, v: Var) -> None:
        nbytes = self.out.storage_bytes[storage]
        time = self.model.op_seconds(nbytes / self.itemsize, 2 * nbytes) * (1 + int(v.grad))
        self.record(Op("scale", storage, nbytes, [], [v.storage], nbytes / self.itemsize,
                       nbytes / self.itemsize * v.grad, time), v.grad)


def compile_source(source: str, name: str, namespace: dict[str, Any]) -> Callable:
    """Compile generated source once into a function (registered in linecache for tracebacks).

    The source first passes :func:`~.verify.verify_source` (raises UnsafeProgramError, running nothing).
    """
    verify_source(source)
    filename = f"{PROGRAM_FILENAME_PREFIX}{comment_text(name)} #{abs(hash(source)) % 10**8}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    code = compile(source, filename, "exec")
    scope = dict(namespace)
    exec(code, scope)  # noqa: S102 - our own generated source, checked by verify_source above
    return scope["program"]
