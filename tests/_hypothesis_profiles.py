"""Hypothesis profiles for the numbaconv test suite.

* ``ci`` (the default): a bounded number of examples, no deadline (the
  first call of a kernel compiles it), ``derandomize=True`` so every run
  draws the same examples, and no example database written to disk;
* ``thorough``: many more examples, random seeds, the database kept, for a
  long run on demand: ``NUMBACONV_HYPOTHESIS_PROFILE=thorough pytest ...``;
* ``dev``: a handful of examples for quick local iterations.

Tests take their settings from :data:`PROFILE` (``@PROFILE`` as a
decorator, or ``settings(PROFILE, max_examples=...)``) rather than from the
globally loaded profile, so importing this module changes nothing for other
test modules.  :func:`examples` scales a test's own example count by the
profile.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

_SUPPRESS = [HealthCheck.too_slow, HealthCheck.filter_too_much,
             HealthCheck.data_too_large]
#: No "explain" phase: it re-runs failures to annotate them and writes patch
#: files into the working tree.
_PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]

settings.register_profile(
    "ci", max_examples=40, deadline=None, derandomize=True, database=None,
    print_blob=True, suppress_health_check=_SUPPRESS, phases=_PHASES)
settings.register_profile(
    "thorough", max_examples=1000, deadline=None, derandomize=False,
    print_blob=True, suppress_health_check=_SUPPRESS)
settings.register_profile(
    "dev", max_examples=10, deadline=None, derandomize=True, database=None,
    print_blob=True, suppress_health_check=_SUPPRESS, phases=_PHASES)

#: Name of the selected profile (``NUMBACONV_HYPOTHESIS_PROFILE``, default ci).
NAME = os.environ.get("NUMBACONV_HYPOTHESIS_PROFILE", "ci")
if NAME not in ("ci", "thorough", "dev"):
    raise ValueError(f"NUMBACONV_HYPOTHESIS_PROFILE must be 'ci', 'thorough' or "
                     f"'dev', got {NAME!r}")

#: The selected profile, usable as a decorator.
PROFILE = settings.get_profile(NAME)

_SCALE = {"ci": 1.0, "thorough": 25.0, "dev": 0.25}[NAME]


def examples(n_ci: int):
    """Settings with ``n_ci`` examples under ``ci``, scaled for other profiles."""
    return settings(PROFILE, max_examples=max(1, int(round(n_ci * _SCALE))))
