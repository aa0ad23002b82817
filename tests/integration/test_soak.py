"""
The short fault soak (issue 18): about a minute of tests/soak/ with 100 charge
points, 40 s of faults and the settle period.  The seed is random per run (or
SOAK_SEED from the environment) and printed; `make soak SOAK_SEED=<it>`
replays the same fault schedule, longer.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from tests.soak.run import run

FAULT_SECONDS = 40
CHARGE_POINTS = 100


def test_short_soak(tmp_path: Path) -> None:
    """Under 40 s of seeded random faults, every CALL both ways ends in exactly one answer."""
    seed = int(os.environ.get("SOAK_SEED") or random.SystemRandom().randrange(1 << 31))
    print(f"soak seed {seed}")
    report = run(tmp_path, seed, FAULT_SECONDS, CHARGE_POINTS)
    assert report.ok, "\n".join(report.summary)
