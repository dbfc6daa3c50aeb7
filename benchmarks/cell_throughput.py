"""Tokens/s of one quickstart cell trained by `spt train` and by `spt sweep` (a Ray task running the same config).

A sweep cell used to train with one torch thread whatever CPUs it reserved (Ray's worker environment), 3.1k vs
5.3k tokens/s on a 2-core machine; cells now use as many threads as they reserve. This runs, on the quickstart's
built mix (run ``make quickstart`` or its first steps first), the same cell three ways:

- ``spt train`` on the cell's train config (torch's default threads: one per core);
- ``spt sweep`` of that one cell with the quickstart's ``resources.num_cpus`` (2: two threads);
- ``spt sweep`` with ``resources.num_cpus=1`` (one thread, what the quickstart reserved before).

Tokens/s is the run's tokens over the wall time of its training (``summary.json``: building the trainer, training,
evaluations; not the Python start-up). The load average is printed with each, since the machine may be shared.

    .venv/train/bin/python benchmarks/cell_throughput.py [--fraction 0.25] [--tokens 300000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SPT = [sys.executable, "-m", "cli.main"]


def run(command: list[str]) -> None:
    env = {**os.environ, "SPT_PROGRESS": "0"}
    env.pop("OMP_NUM_THREADS", None)  # as a user's shell: torch picks its default
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def rate(summary_path: Path, load_before: float) -> tuple[float, str]:
    summary = json.loads(summary_path.read_text())
    tokens_per_second = summary["tokens"] / summary["wall_seconds"]
    return tokens_per_second, (f"{tokens_per_second:8.0f} tokens/s  ({summary['tokens']:,} tokens in "
                               f"{summary['wall_seconds']:.1f} s, {summary['torch_threads']} threads; load "
                               f"{load_before:.2f} -> {os.getloadavg()[0]:.2f})")


def sweep_cell(common: list[str], folder: Path, *extra: str) -> Path:
    run([*SPT, "sweep", *common, f"output_dir={folder}", *extra])
    (cell,) = (folder / "cells").iterdir()
    return cell


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=0.25, help="δ of the cell")
    parser.add_argument("--tokens", type=int, default=300_000, help="T of the cell (tokens)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds of the three; the best counts")
    args = parser.parse_args()
    common = ["configs/sweeps/quickstart.yaml", f"grid.domain_fraction=[{args.fraction}]",
              f"grid.total_tokens=[{args.tokens}]"]
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=REPO / "outputs") as tmp:
        tmp = Path(tmp)
        for round_ in range(args.repeats):
            # Alternate the three, so a busy moment on a shared machine hurts none of them more than the others.
            load = os.getloadavg()[0]
            cell = sweep_cell(common, tmp / f"sweep2-{round_}")
            results = {"spt sweep cell (num_cpus=2)": rate(cell / "run" / "summary.json", load)}
            train = yaml.safe_load((cell / "train.yaml").read_text())
            train["run_dir"] = str(tmp / f"train-{round_}")
            (tmp / "train.yaml").write_text(yaml.safe_dump(train))
            load = os.getloadavg()[0]
            run([*SPT, "train", str(tmp / "train.yaml")])
            results["spt train (same config)"] = rate(tmp / f"train-{round_}" / "summary.json", load)
            load = os.getloadavg()[0]
            cell = sweep_cell(common, tmp / f"sweep1-{round_}", "resources.num_cpus=1")
            results["spt sweep cell (num_cpus=1)"] = rate(cell / "run" / "summary.json", load)
            for name, (tokens_per_second, line) in results.items():
                print(f"round {round_ + 1}: {name:<30} {line}", flush=True)
                best[name] = max(best.get(name, 0.0), tokens_per_second)
    print("best of each:")
    for name, tokens_per_second in best.items():
        print(f"  {name:<30} {tokens_per_second:8.0f} tokens/s")
    train_rate = best["spt train (same config)"]
    print(f"  sweep cell / spt train: {best['spt sweep cell (num_cpus=2)'] / train_rate:.2f} with 2 CPUs reserved, "
          f"{best['spt sweep cell (num_cpus=1)'] / train_rate:.2f} with 1")


if __name__ == "__main__":
    main()
