"""Third-party warnings the user did not cause are filtered by logger and message (tn_peft/cli/quiet.py),
nothing else, and ``--verbose`` shows them."""

from __future__ import annotations

import logging

import pytest

from tn_peft.cli import main
from tn_peft.cli.quiet import UNCAUSED, quiet_third_party


@pytest.fixture(autouse=True)
def _restore():
    yield
    quiet_third_party(verbose=True)  # leave no filter behind for other tests


class _Seen(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _emit(logger: str, message: str, caplog=None) -> bool:
    """Whether ``message`` logged as a warning on ``logger`` gets past that logger's filters (a handler on
    the logger itself: some, torch's, do not propagate to the root)."""
    seen, log = _Seen(), logging.getLogger(logger)
    log.addHandler(seen)
    try:
        log.warning(message)
    finally:
        log.removeHandler(seen)
    return message in seen.messages


#: one line each filter is for, as this machine prints them when peft is imported offline
SEEN = {
    "kernels._internals.hf_hub": "Skipping publisher trust check for 'kernels-community/quantization-bitsandbytes' "
                                 "because Hugging Face Hub is in offline mode.",
    "bitsandbytes.backends.cpu.ops": "Failed to load CPU gemm_4bit_forward from kernels-community: Version 1 of "
                                     "'kernels-community/quantization-bitsandbytes' is not available in the local "
                                     "cache and Hugging Face Hub is in offline mode. Download the kernel while "
                                     "online first. Please make sure you already `pip install kernels`",
    "torchao": "Failed to load /x/site-packages/torchao/_C_mxfp8.cpython-310-x86_64-linux-gnu.so: Could not load "
               "this library",
    "torch.utils._pytree": "<enum 'KernelPreference'> is an Enum subclass and is now natively supported by "
                           "torch.compile as an opaque value type.",
}


def test_only_the_listed_lines_of_the_listed_loggers_are_dropped(caplog):
    assert set(SEEN) == {logger for logger, _, _ in UNCAUSED}
    quiet_third_party()
    for logger, line in SEEN.items():
        assert not _emit(logger, line, caplog)
        assert _emit(logger, "some other warning of the same library", caplog)  # same logger, other message
        assert _emit("somewhere.else", line, caplog)  # same message, other logger
    assert _emit("torchao", "Failed to load the user's own file.so: no such file", caplog)  # not torchao's _C
    assert _emit("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward from kernels-community: "
                 "HTTP 500", caplog)  # online and failing: the user should see it
    assert len(quiet_third_party()) == len(UNCAUSED)  # installed once, however often it is called
    quiet_third_party(verbose=True)
    assert all(_emit(logger, line, caplog) for logger, line in SEEN.items())


def test_every_command_takes_verbose(caplog):
    logger, line = next(iter(SEEN.items()))
    assert main(["check", "lora"]) == 0
    assert not _emit(logger, line, caplog)
    assert main(["check", "lora", "--verbose"]) == 0
    assert _emit(logger, line, caplog)
