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


def _emit(logger: str, message: str, caplog) -> bool:
    """Whether ``message`` logged as a warning on ``logger`` gets through."""
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        logging.getLogger(logger).warning(message)
    return any(r.getMessage() == message for r in caplog.records)


def test_only_the_listed_lines_of_the_listed_loggers_are_dropped(caplog):
    quiet_third_party()
    for logger, prefix, _ in UNCAUSED:
        assert not _emit(logger, prefix + " ... offline mode", caplog)
        assert _emit(logger, "some other warning of the same library", caplog)  # same logger, other message
        assert _emit("somewhere.else", prefix + " ... offline mode", caplog)  # same message, other logger
    assert len(quiet_third_party()) == len(UNCAUSED)  # installed once, however often it is called
    quiet_third_party(verbose=True)
    assert all(_emit(logger, prefix + " ...", caplog) for logger, prefix, _ in UNCAUSED)


def test_every_command_takes_verbose(caplog):
    logger, prefix, _ = UNCAUSED[0]
    assert main(["check", "lora"]) == 0
    assert not _emit(logger, prefix + "x", caplog)
    assert main(["check", "lora", "--verbose"]) == 0
    assert _emit(logger, prefix + "x", caplog)
