"""What a conversion did, layer by layer: shapes, ranks, parameters, and how exact it was."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class LayerReport:
    """One converted layer. ``relative_error`` = ||dW_new - dW||_F / ||dW||_F (fp64); fidelity = 1 - error.
    Ranks are :func:`adapter_rank`'s (None: the form has no single bond; printed "n/a")."""

    name: str
    shape: tuple[int, int]
    source_rank: int | None
    source_parameters: int
    parameters: int
    relative_error: float
    rank: int | None = None
    note: str = ""

    @property
    def fidelity(self) -> float:
        return 1.0 - self.relative_error

    @property
    def reduction(self) -> float:
        """source parameters / converted parameters (> 1: the new form is smaller)."""
        return self.source_parameters / max(self.parameters, 1)


@dataclass
class ConversionReport:
    """Every layer of one conversion plus where it went; ``format()`` is what the CLI prints."""

    source: str
    destination: str
    kind: str
    graph: str
    graph_args: dict[str, Any]
    exact: bool
    layers: list[LayerReport] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)

    @property
    def max_error(self) -> float:
        return max((r.relative_error for r in self.layers), default=0.0)

    @property
    def source_parameters(self) -> int:
        return sum(r.source_parameters for r in self.layers)

    @property
    def parameters(self) -> int:
        return sum(r.parameters for r in self.layers)

    @property
    def warnings(self) -> list[str]:
        """What the user should know: an exact form larger than the LoRA it came from."""
        if self.exact and self.parameters > self.source_parameters:
            return [f"the exact {self.kind} form has {self.parameters:,} parameters, "
                    f"{self.parameters / max(self.source_parameters, 1):.1f}x the {self.source_parameters:,} of the "
                    "LoRA it came from: an exact form keeps every degree of freedom of dW's factorization; "
                    + ("cap the bonds (--max-bond) or allow an error (--tolerance) for a smaller fit"
                       if self.kind in ("tt", "ttd") else "convert --to svd for the smallest exact form")]
        return []

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(max_error=self.max_error, source_parameters=self.source_parameters, parameters=self.parameters,
                    warnings=self.warnings)
        return data

    def format(self, *, per_layer: bool = True) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.graph_args.items())
        lines = [f"{self.kind}: {self.source} -> {self.destination}",
                 f"  graph {self.graph} ({args}); {'exact' if self.exact else 'a fit'}"]
        if per_layer and self.layers:
            width = max(len(r.name) for r in self.layers)
            lines.append(f"  {'layer':<{width}}  {'out x in':>11}  {'rank':>9}  {'params':>15}  {'reduction':>9}  rel.err(dW)")
            for r in self.layers:
                rank = "->".join("n/a" if v is None else str(v) for v in (r.source_rank, r.rank))
                lines.append(f"  {r.name:<{width}}  {r.shape[0]:>5} x {r.shape[1]:<5}  {rank:>9}  "
                             f"{r.source_parameters:>7}->{r.parameters:<7}  {r.reduction:>8.2f}x  {r.relative_error:.2e}"
                             + (f"  {r.note}" if r.note else ""))
        lines.append(f"  total: {len(self.layers)} layers, parameters {self.source_parameters:,} -> {self.parameters:,} "
                     f"({self.source_parameters / max(self.parameters, 1):.2f}x fewer), max relative error of dW "
                     f"{self.max_error:.2e}")
        if self.copied:
            lines.append(f"  copied through: {len(self.copied)} tensors of modules_to_save")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def adapter_rank(adapter) -> int | None:
    """The rank an adapter is reported with: the size of its bond leg (``k``: the SVD and Pauli forms,
    ``r``: LoRA, LoTR, and Kronecker's number of terms), else its largest TT bond (``r1, r2, ...``),
    else None (no single bond: QuanTA, a one-core TT)."""
    sizes = adapter.sizes
    for key in ("k", "r"):
        if key in sizes:
            return int(sizes[key])
    bonds = [int(size) for leg, size in sizes.items() if leg[:1] == "r" and leg[1:].isdigit()]
    return max(bonds) if bonds else None
