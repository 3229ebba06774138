"""Lowering: a plan's trees -> the program's torch source, and the ops it records (:class:`~.emit.Emitted`).

The driver over :mod:`.emit`: names the program's arguments, emits each branch's steps in tree
order (circuit operands gate by gate, the scale folded into the smallest tensor, each result laid
out for its consumer), combines the two branches of a ``delta`` network, and frees temporaries
after their last use. :class:`~.plan.Plan` calls :func:`lower` once; the source it returns is
compiled once in :data:`.runtime.namespace.NAMESPACE`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .cost import CostModel, pair_cost
from .cost.scorer import Scorer
from .emit import Emitted, Emitter, Op, Var, identifier
from .problem import TOKENS, Problem

if TYPE_CHECKING:
    from .plan import Branch


def lower(problem: Problem, model: CostModel, branches: list[Branch], *, delta: str | None = None,
          initial: Problem | None = None) -> tuple[str, Emitted]:
    """The program's source and what it emitted (ops, storages) for ``branches`` (theta's first)."""
    lowering = Lowering(problem, model, branches, delta=delta, initial=initial)
    return lowering.source(), lowering.emitted


class Lowering:
    """One plan's emission: the branches, the shared :class:`~.emit.Emitted`, the delta combination."""

    def __init__(self, problem: Problem, model: CostModel, branches: list[Branch], *, delta: str | None = None,
                 initial: Problem | None = None):
        self.problem, self.model, self.branches = problem, model, branches
        self.delta, self.initial = delta, initial
        self.emitted = Emitted()

    def source(self) -> str:
        """The program's source: ``def program(x, *nodes[, *nodes_0]): ... return y``."""
        problem = self.problem
        taken: set[str] = set()
        names = ["x" if op.kind == "x" else identifier(op.name, taken) for op in problem.operands]
        if problem.has_x:
            taken.add("x")
        args = list(names)
        initial_names = []
        if self.initial is not None:
            start = 1 if problem.has_x else 0
            initial_names = [identifier(op.name + "_0", taken) for op in problem.operands[start:]]
            args += initial_names
        # theta_0's branch first: it keeps nothing for backward, so its temporaries are gone before
        # theta's saved tensors pile up (a lower peak).
        order = list(enumerate(self.branches))[::-1]
        results = [""] * len(self.branches)
        for b, branch in order:
            if b == 0:
                branch_names = names if branch.problem.has_x == problem.has_x else names[1:]
            else:
                branch_names = (["x"] if branch.problem.has_x else []) + initial_names
            results[b] = self._emit_branch(branch, branch_names, prefix="t" if b == 0 else "u")
        body = self.emitted.lines
        if len(results) == 1:
            result = results[0]
        else:
            result = self._combine(results, body)
        lines = [f"def program({', '.join(args)}):"]
        lines += ["    " + line for line in _free_temporaries(body, result)]
        lines.append(f"    return {result}")
        return "\n".join(lines) + "\n"

    def _combine(self, results: list[str], body: list[str]) -> str:
        """Delta networks: ``y(theta) - y(theta_0)``, or ``x @ (dW(theta) - dW(theta_0))^T``."""
        problem, emitted = self.problem, self.emitted
        first, second = results
        grad = any(op.requires_grad for op in problem.operands if op.kind != "x")
        if self.delta == "dense" and problem.has_x:
            body.append(f"dw = {first} - {second}")
            emitted.storage_bytes["dw"] = problem.out_features * problem.in_features * problem.itemsize
            emitted.counted.update(("dw", "x"))
            emitted.storage_bytes["x"] = (problem.tokens or 0) * problem.in_features * problem.itemsize
            emitted.ops.append(self._subtraction("dw", emitted.storage_bytes["dw"], [first, second]))
            x_grad = problem.operands[0].requires_grad
            saves = (["x"] if grad else []) + (["dw"] if x_grad else [])
            out_bytes = (problem.tokens or 0) * problem.out_features * problem.itemsize
            step = pair_cost(self.model, problem.operands[0].legs, problem.out_legs + problem.in_legs, problem.output,
                             problem.size_dict, grad_a=x_grad, grad_b=grad, itemsize=problem.itemsize)
            emitted.ops.append(Op("matmul", "y", out_bytes, saves, ["x", "dw"], step.flops, step.backward_flops,
                                  step.time))
            return "F.linear(x, dw)"
        out_bytes = emitted.ops[-1].out_bytes if emitted.ops else 0
        emitted.ops.append(self._subtraction("y", out_bytes, [first, second]))
        return f"{first} - {second}"

    def _subtraction(self, out: str, nbytes: int, reads: list[str]) -> Op:
        """``out = a - b`` of two ``nbytes`` tensors: reads both, writes one, forward and backward."""
        return Op("sub", out, nbytes, [], reads, nbytes / self.problem.itemsize, 0,
                  self.model.op_seconds(0, 3 * nbytes, nbytes) * 2)

    def _emit_branch(self, branch: Branch, names: Sequence[str], prefix: str) -> str:
        problem = branch.problem
        emitter = Emitter(problem, self.emitted, self.model, prefix=prefix, widen=branch.widen)
        vars_: list[Var] = [emitter.leaf(i, name) for i, name in enumerate(names)]
        scorer = Scorer(problem, self.model, branch.gated)
        subsets = branch.subsets()
        scale, scale_at = problem.scale, self._scale_target(branch, scorer)
        if scale != 1.0 and scale_at is not None and scale_at < len(names):
            vars_[scale_at] = emitter.scale_leaf(vars_[scale_at], scale)
        after = self._after_hints(branch, scorer)
        for k, (i, j) in enumerate(branch.path):
            keep = scorer.legs_of(subsets[i] | subsets[j])
            a, b = vars_[i], vars_[j]
            if i in branch.gated and subsets[i] == 1 << i:
                out = emitter.circuit(a, b, i, keep)
            elif j in branch.gated and subsets[j] == 1 << j:
                out = emitter.circuit(b, a, j, keep)
            else:
                out = emitter.contract(a, b, keep, after[k])
            if scale != 1.0 and scale_at == len(names) + k:
                out = emitter.scale_leaf(out, scale)
            vars_.append(out)
        last = vars_[-1]
        lonely = [leg for leg in last.layout if leg not in problem.output]
        if lonely:
            last = emitter.sum_out(last, lonely)
        if problem.has_x:
            target = [(TOKENS,), tuple(problem.out_legs)]
        else:
            target = [tuple(problem.out_legs), tuple(problem.in_legs)]
        return emitter.finish(last, target)

    @staticmethod
    def _after_hints(branch: Branch, scorer: Scorer) -> list:
        """Per step, what its consumer needs: the legs the next step sums (a frozenset), or for
        the last step the program's output order (a tuple). Lets the emitter lay results out so
        that the next matmul can view them instead of copying."""
        problem = branch.problem
        n = len(problem.operands)
        subsets = branch.subsets()
        consumer: dict[int, tuple[int, int]] = {}
        for k, (i, j) in enumerate(branch.path):
            consumer[i], consumer[j] = (k, j), (k, i)
        final = ((TOKENS,) + tuple(problem.out_legs)) if problem.has_x else tuple(problem.out_legs + problem.in_legs)
        hints: list = []
        for k in range(len(branch.path)):
            if n + k not in consumer:
                hints.append(final)
                continue
            p, other = consumer[n + k]
            mine, theirs = scorer.legs_of(subsets[n + k]), scorer.legs_of(subsets[other])
            kept = scorer.legs_of(subsets[n + p])
            hints.append(frozenset(leg for leg in mine & theirs if leg not in kept))
        return hints

    @staticmethod
    def _scale_target(branch: Branch, scorer: Scorer) -> int | None:
        """The SSA id of the smallest tensor to fold the scale into: a node tensor, or a step result
        (at T = 1 the x-side intermediates are the smallest). Ties go to node tensors."""
        problem = branch.problem
        sizes = [(scorer.size(scorer.op_masks[i]), 0, i) for i, op in enumerate(problem.operands)
                 if op.kind != "x" and i not in branch.gated]
        n = len(problem.operands)
        subsets = branch.subsets()
        sizes += [(scorer.size(scorer.legs_mask(subsets[n + k])), 1, n + k) for k in range(len(branch.path))]
        return min(sizes)[2] if sizes else None


def _free_temporaries(body: list[str], result: str) -> list[str]:
    """Insert ``del`` after each temporary's last use: straight-line locals would otherwise live
    until the function returns, holding every intermediate (a peak far above what autograd keeps)."""
    word = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
    defined = {line.split(" = ", 1)[0] for line in body if " = " in line}
    last: dict[str, int] = {}
    for k, line in enumerate(body):
        code = line.split("  #", 1)[0]
        rhs = code.split(" = ", 1)[1] if " = " in code else code
        for name in word.findall(rhs):
            if name in defined:
                last[name] = k
    keep = set(word.findall(result))
    out = []
    for k, line in enumerate(body):
        out.append(line)
        dead = sorted(name for name, at in last.items() if at == k and name not in keep)
        if dead:
            out.append("del " + ", ".join(dead))
    return out
