"""
``python -m tests.soak [--seconds N] [--seed S] [--charge-points K]``: the soak
of issue 18 (``make soak``).  Prints the seed first and last; exits 1 when an
invariant broke, with the work directory (gateway and broker logs) kept.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from tests.soak.run import SETTLE, run


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=600, help="the fault period (600)")
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument("--charge-points", type=int, default=300, help="(300)")
    parser.add_argument("--settle", type=float, default=SETTLE, help=f"({SETTLE})")
    args = parser.parse_args(argv)
    # SIGTERM (make killed, a CI timeout) ends the run through its finally blocks.
    signal.signal(signal.SIGTERM, _terminated)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    workdir = Path(tempfile.mkdtemp(prefix=f"ocppgw-soak-{seed}-"))
    report = run(workdir, seed, args.seconds, args.charge_points, args.settle)
    if report.ok:
        shutil.rmtree(workdir, ignore_errors=True)
        return 0
    print(f"soak: logs kept in {workdir}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
