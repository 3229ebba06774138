"""Hypothesis settings profiles for tests of adapters.

- ``ci``: derandomized (the same examples every run), no deadline, 25 examples: for a CI machine;
- ``thorough``: 500 examples, no deadline, random: for a release check.

``register_profiles()`` registers both (idempotent); load one with ``settings.load_profile("ci")``, or
set ``HYPOTHESIS_PROFILE=thorough`` for :func:`load_profile`.
"""

from __future__ import annotations

import os

from ..errors import require

#: profile name -> settings keywords
PROFILES = {"ci": {"derandomize": True, "deadline": None, "max_examples": 25},
            "thorough": {"deadline": None, "max_examples": 500}}


def register_profiles() -> None:
    """Register the ``ci`` and ``thorough`` profiles with hypothesis."""
    hypothesis = require("hypothesis", "hypothesis", "tn_peft.testing profiles")
    for name, options in PROFILES.items():
        hypothesis.settings.register_profile(
            name, suppress_health_check=[hypothesis.HealthCheck.too_slow], **options)


def load_profile(default: str = "ci") -> str:
    """Register the profiles and load ``$HYPOTHESIS_PROFILE`` (else ``default``); returns its name."""
    hypothesis = require("hypothesis", "hypothesis", "tn_peft.testing profiles")
    register_profiles()
    name = os.environ.get("HYPOTHESIS_PROFILE", default)
    hypothesis.settings.load_profile(name)
    return name
