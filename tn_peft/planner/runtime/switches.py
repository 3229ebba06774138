"""Fused kernels switched off, and why: the plan chooser then runs the torch program instead.

A fused kernel that ``tn-peft bench gpu`` measures slower than the torch program it replaces (or
wrong on some card) is a bug to fix or a kernel to switch off, everywhere or from some token count
on (a kernel that wins at small T and loses at large T). Switched off, the plans it would have
replaced run their own torch programs, and ``Plan.decisions`` says which kernel is off and why.

    from tn_peft.planner.runtime import switches
    switches.switch_off("kron_rows", "1.8x slower than the torch program at T = 4096 on H100 (bench gpu)",
                        from_tokens=1024)

``TN_PEFT_FUSED_OFF=lowrank,kron_rows@1024`` in the environment switches kernels off for a process
(``@T``: from T tokens on; the reason then names the variable). :data:`SWITCHED_OFF` holds the
kernels off by default, each with the measurement behind it; none is, as no kernel has been
measured slower yet.
"""

from __future__ import annotations

import os

#: The fused kernels (:mod:`.triton_kernels`), by the name plans record (``Plan.kernel``).
KERNELS = ("lowrank", "circuit_chain", "circuit_rows", "kron_rows")
#: kernel -> (why it is off, the token count from which it is off). Change it with :func:`switch_off`.
SWITCHED_OFF: dict[str, tuple[str, int]] = {}
ENVIRONMENT = "TN_PEFT_FUSED_OFF"


def _check(kernel: str) -> None:
    if kernel not in KERNELS:
        raise ValueError(f"no fused kernel is named {kernel!r}; the kernels are {', '.join(KERNELS)}")


def switch_off(kernel: str, reason: str, *, from_tokens: int = 1) -> None:
    """Run the torch programs instead of ``kernel`` for ``from_tokens`` rows and more, from now on
    (plans made before are forgotten)."""
    _check(kernel)
    if not reason.strip():
        raise ValueError(f"switching {kernel!r} off needs a reason (it goes into Plan.decisions)")
    if int(from_tokens) < 1:
        raise ValueError(f"from_tokens must be at least 1, got {from_tokens}")
    SWITCHED_OFF[kernel] = (reason.strip(), int(from_tokens))
    _forget_plans()


def switch_on(kernel: str) -> None:
    """Let ``kernel`` replace the torch programs again."""
    _check(kernel)
    SWITCHED_OFF.pop(kernel, None)
    _forget_plans()


def why_off(kernel: str, tokens: int) -> str | None:
    """Why ``kernel`` is off for ``tokens`` rows, or None when it runs."""
    entry = SWITCHED_OFF.get(kernel)
    if entry is None or tokens < entry[1]:
        return None
    reason, start = entry
    return reason if start == 1 else f"{reason}; off from T = {start}"


def token_breaks() -> list[int]:
    """The token counts (above 1) from which some kernel is off: plan families split their ranges there."""
    return sorted({start for _, start in SWITCHED_OFF.values() if start > 1})


def _forget_plans() -> None:
    from .dispatch import clear_caches

    clear_caches()


def _from_environment() -> None:
    for part in filter(None, (p.strip() for p in os.environ.get(ENVIRONMENT, "").split(","))):
        name, _, start = part.partition("@")
        name = name.strip()
        if name not in KERNELS or (start and not start.strip().isdigit()):
            raise ValueError(f"{ENVIRONMENT} names {part!r}, which is no fused kernel (or no kernel@TOKENS); "
                             f"use a comma-separated list of {', '.join(KERNELS)}, each optionally @T")
        SWITCHED_OFF[name] = (f"switched off by {ENVIRONMENT}", max(int(start or 1), 1))


_from_environment()
