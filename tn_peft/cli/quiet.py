"""Third-party log lines the user did not cause, filtered narrowly: by logger and message, never globally.

Importing peft (which every command that trains or measures a model does) imports bitsandbytes, which
asks the Hugging Face kernel hub for a CPU kernel; offline (tn_peft never downloads), that prints two
warnings on every run although nothing quantized was asked for. :data:`UNCAUSED` lists each such line
by the logger that emits it and the start of its message; :func:`quiet_third_party` drops exactly those
records (a filter on those loggers only), and ``--verbose`` (every sub-command takes it) shows them.
"""

from __future__ import annotations

import logging

#: (logger name, message prefix, why it is noise): records on that logger whose message starts so are dropped
UNCAUSED: tuple[tuple[str, str, str], ...] = (
    ("kernels._internals.hf_hub", "Skipping publisher trust check for 'kernels-community/",
     "bitsandbytes asks the kernel hub for its CPU kernel when peft imports it; offline there is nothing to check"),
    ("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward from kernels-community",
     "the same lookup, offline: bitsandbytes falls back to its own CPU code"),
)


class _Uncaused(logging.Filter):
    """Drop the records of one logger whose message starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to judge
            return True
        return not message.startswith(self.prefix)


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
