"""Third-party log lines the user did not cause, filtered narrowly: by logger and message, never globally.

Importing peft (which every command that trains or measures a model does) imports bitsandbytes, which
asks the Hugging Face kernel hub for a CPU kernel; offline (tn_peft never downloads), that prints two
warnings on every run although nothing quantized was asked for. It also imports torchao, whose CUDA
extensions fail to load on other builds and whose enum registration torch deprecates: four more lines. :data:`UNCAUSED` lists each such line
by the logger that emits it and the start of its message; :func:`quiet_third_party` drops exactly those
records (a filter on those loggers only), and ``--verbose`` (every sub-command takes it) shows them.
"""

from __future__ import annotations

import logging
import re

#: (logger name, message pattern, why it is noise): records on that logger whose message matches the
#: pattern from its start (re.match) are dropped
UNCAUSED: tuple[tuple[str, str, str], ...] = (
    ("kernels._internals.hf_hub", r"Skipping publisher trust check for 'kernels-community/.*offline mode",
     "bitsandbytes asks the kernel hub for its CPU kernel when peft imports it; offline there is nothing to check"),
    ("bitsandbytes.backends.cpu.ops", r"Failed to load CPU gemm_4bit_forward from kernels-community: .*offline mode",
     "the same lookup, offline: bitsandbytes falls back to its own CPU code"),
    ("torchao", r"Failed to load \S*torchao[/\\]_C\w*\.\S*so: ",
     "peft imports torchao, whose compiled extensions for other CUDA builds do not load here; unused by tn_peft"),
    ("torch.utils._pytree", r"<enum '(KernelPreference|ScaleCalculationMode)'> is an Enum subclass and is now",
     "torchao registers its enums in the way torch now deprecates, when peft imports it"),
)


class _Uncaused(logging.Filter):
    """Drop the records of one logger whose message matches ``prefix`` (a pattern) from its start."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        self.pattern = re.compile(prefix, re.DOTALL)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to judge
            return True
        return self.pattern.match(message) is None


def quiet_third_party(verbose: bool = False) -> list[logging.Filter]:
    """Add the :data:`UNCAUSED` filters (once) unless ``verbose``; returns the filters in place."""
    installed = []
    for name, prefix, _ in UNCAUSED:
        logger = logging.getLogger(name)
        found = [f for f in logger.filters if isinstance(f, _Uncaused) and f.prefix == prefix]
        if verbose:
            for f in found:
                logger.removeFilter(f)
            continue
        if not found:
            found = [_Uncaused(prefix)]
            logger.addFilter(found[0])
        installed += found
    return installed
