"""Cost of checking a built source against its source.json (:func:`pipelines.mix.verify.source_problem`: sizes,
then the sha256 of every file) against one pass of Streaming over the same shards (what training reads).

The source is ``--megabytes`` of random uint16 tokens packed by spt's own writer into 64 MB MDS shards, in a
temp folder (so it is in the page cache, as a source just built or just trained on is; a cold disk or S3 reads
slower, for both sides). Rounds alternate the two sides; the best round of each and the median of the paired
ratios are printed, with the load average.

    .venv/train/bin/python benchmarks/mix_verify_cost.py [--megabytes 512] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SEQ_LEN = 2048


def write_source(folder: Path, megabytes: int) -> dict:
    """A source folder of random tokens; returns its source.json's ``files`` and ``sizes``."""
    import numpy as np

    from pipelines.mix.pack import SplitWriter
    from spt import storage

    writer = SplitWriter(folder / "train", SEQ_LEN, "uint16", None, 64 << 20)
    rng = np.random.default_rng(0)
    for _ in range(megabytes):
        writer.add(rng.integers(1, 4096, (1 << 20) // 2, dtype=np.uint16), documents=1)
    writer.close()
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {"files": {p.relative_to(folder).as_posix(): storage.sha256(str(p)) for p in files},
            "sizes": {p.relative_to(folder).as_posix(): p.stat().st_size for p in files}}


def time_check(folder: Path, manifest: dict) -> float:
    from pipelines.mix.verify import source_problem

    began = time.perf_counter()
    assert source_problem(str(folder), manifest) is None
    return time.perf_counter() - began


def time_streaming_pass(folder: Path) -> float:
    from streaming import StreamingDataset

    began = time.perf_counter()
    dataset = StreamingDataset(local=str(folder / "train"), shuffle=False, batch_size=16)
    for _ in dataset:
        pass
    seconds = time.perf_counter() - began
    del dataset
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from streaming.base.util import clean_stale_shared_memory

    clean_stale_shared_memory()
    with tempfile.TemporaryDirectory(prefix="spt-verify-bench-") as tmp:
        folder = Path(tmp) / "source"
        manifest = write_source(folder, args.megabytes)
        total_mb = sum(manifest["sizes"].values()) / 1e6
        checks, passes = [], []
        for _ in range(args.rounds):
            checks.append(time_check(folder, manifest))
            passes.append(time_streaming_pass(folder))
        ratios = [c / p for c, p in zip(checks, passes)]
        print(f"source: {total_mb:,.0f} MB in {len(manifest['files'])} files; load average "
              f"{os.getloadavg()[0]:.2f}")
        print(f"check (sizes + sha256): best {min(checks):.2f} s = {total_mb / min(checks):,.0f} MB/s")
        print(f"Streaming pass:         best {min(passes):.2f} s = {total_mb / min(passes):,.0f} MB/s")
        print(f"check / pass: median {statistics.median(ratios):.2f} (rounds: "
              + ", ".join(f"{r:.2f}" for r in ratios) + ")")


if __name__ == "__main__":
    main()
