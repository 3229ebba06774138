"""Fused kernels switched off, and why: the plan chooser then runs the torch program instead.

A fused kernel that ``tn-peft bench gpu`` measures slower than the torch program it replaces (or
wrong on some card) is a bug to fix or a kernel to switch off. Switched off, the plans it would have
replaced run their own torch programs, and ``Plan.decisions`` says which kernel is off and why.

    from tn_peft.planner.runtime import switches
    switches.switch_off("kron_rows", "1.8x slower than the torch program at T = 4096 on H100 (bench gpu)")

``TN_PEFT_FUSED_OFF=lowrank,kron_rows`` in the environment switches kernels off for a process (the
reason then names the variable). :data:`SWITCHED_OFF` holds the kernels off by default, each with
the measurement behind it; none is, as no kernel has been measured slower yet.
"""

from __future__ import annotations

import os

#: The fused kernels (:mod:`.triton_kernels`), by the name plans record (``Plan.kernel``).
KERNELS = ("lowrank", "circuit_chain", "circuit_rows", "kron_rows")
#: kernel -> why it is off. Change it with :func:`switch_off` / :func:`switch_on`.
SWITCHED_OFF: dict[str, str] = {}
ENVIRONMENT = "TN_PEFT_FUSED_OFF"


def _check(kernel: str) -> None:
    if kernel not in KERNELS:
        raise ValueError(f"no fused kernel is named {kernel!r}; the kernels are {', '.join(KERNELS)}")


def switch_off(kernel: str, reason: str) -> None:
    """Run the torch programs instead of ``kernel`` from now on (plans made before are forgotten)."""
    _check(kernel)
    if not reason.strip():
        raise ValueError(f"switching {kernel!r} off needs a reason (it goes into Plan.decisions)")
    SWITCHED_OFF[kernel] = reason.strip()
    _forget_plans()


def switch_on(kernel: str) -> None:
    """Let ``kernel`` replace the torch programs again."""
    _check(kernel)
    SWITCHED_OFF.pop(kernel, None)
    _forget_plans()


def why_off(kernel: str) -> str | None:
    """Why ``kernel`` is switched off, or None when it runs."""
    return SWITCHED_OFF.get(kernel)


def _forget_plans() -> None:
    from .dispatch import clear_caches

    clear_caches()


def _from_environment() -> None:
    for name in filter(None, (part.strip() for part in os.environ.get(ENVIRONMENT, "").split(","))):
        if name not in KERNELS:
            raise ValueError(f"{ENVIRONMENT} names {name!r}, which is no fused kernel; "
                             f"use a comma-separated list of {', '.join(KERNELS)}")
        SWITCHED_OFF[name] = f"switched off by {ENVIRONMENT}"


_from_environment()
