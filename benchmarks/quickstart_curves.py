"""Checks that a pilot sweep's curves show the finding the SPT law needs, for every seed (see
:mod:`sweeps.curve_check`): the best δ falls as the budget grows, and the largest δ's held-out domain loss turns
upward before the end of its run.

    .venv/train/bin/python benchmarks/quickstart_curves.py [SWEEP_FOLDER] [--strict]

Prints the two checks per seed; with ``--strict`` exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweeps.curve_check import check_sweep, format_check  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default="outputs/quickstart/sweep", help="a sweep output folder")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the finding is not shown")
    args = parser.parse_args()
    checks = check_sweep(args.folder)
    print(f"curve check of {args.folder}")
    for check in checks:
        print(format_check(check))
    shown = all(c.shown for c in checks)
    print(f"finding shown for every seed: {'yes' if shown else 'NO'}")
    return 0 if shown or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
