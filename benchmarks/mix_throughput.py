"""Throughput of `spt mix build` (read + Ray Data tokenize + pack + MDS write) against raw `encode_batch`.

Both sides process the same documents with the same tokenizer in one run. The text is the quickstart corpora's
training documents, written ``--repeat`` times into that many parquet files with row groups of 1,024 documents
(so a run lasts long enough for fixed costs to amortize, as on real data). The baseline is ``tokenizers.Tokenizer.encode_batch`` over the texts
already in memory, with the Rust thread pool on every core. The pipeline (``pipelines.mix.build.build_sources``)
reads the files, tokenizes in Ray Data tasks, packs and writes MDS shards; it is timed with Ray already running
(as on a long-lived cluster), and Ray's start is printed apart.

Rounds alternate baseline and pipeline so that load from other processes hits both alike; the best round of each
side and the median of the paired ratios are printed, with the load average. Prints MB/s of UTF-8 text, tokens/s,
the ratio pipeline / baseline (goal >= 0.8) and the pipeline's throughput for each number of workers.

    .venv/train/bin/python benchmarks/mix_throughput.py [--corpora DIR] [--tokenizer DIR] [--repeat 4] [--rounds 3]

Inputs default to outputs/quickstart/{corpora,tokenizer}; when missing they are built in a temp folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _inputs(corpora: Path, tokenizer: Path, scratch: Path) -> tuple[Path, Path]:
    from pipelines.corpora import build_corpora
    from pipelines.tokenizer import train_tokenizer
    from spt.config import CorporaConfig, TokenizerConfig

    if not (corpora / "domain" / "train.parquet").exists():
        corpora = scratch / "corpora"
        print(f"building sample corpora in {corpora}", flush=True)
        build_corpora(CorporaConfig(kind="corpora", output_dir=str(corpora)))
    if not (tokenizer / "tokenizer.json").exists():
        tokenizer = scratch / "tokenizer"
        print(f"training a tokenizer in {tokenizer}", flush=True)
        files = [str(corpora / name / "train.parquet") for name in ("domain", "general")]
        train_tokenizer(TokenizerConfig(kind="tokenizer", inputs=files, output_dir=str(tokenizer)))
    return corpora, tokenizer


def _texts(corpora: Path, repeat: int, folder: Path) -> list[str]:
    """The corpora's training texts, ``repeat`` times, also written as ``repeat`` parquet files in ``folder``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [
        text
        for name in ("domain", "general")
        for text in pq.read_table(corpora / name / "train.parquet")["text"].to_pylist()
        if text and text.strip()
    ]
    folder.mkdir(parents=True)
    for copy in range(repeat):
        # Row groups of 1,024 documents, as `spt corpora` writes them: a row group is the unit a build task reads.
        pq.write_table(pa.table({"text": texts}), folder / f"part-{copy:03d}.parquet", row_group_size=1024)
    return texts * repeat


def _config(data: Path, tokenizer: Path, output_dir: Path, workers: int, batch_documents: int):
    from spt.config.mix import MixConfig

    return MixConfig(
        kind="mix",
        output_dir=str(output_dir),
        tokenizer=str(tokenizer),
        total_tokens=1_000_000,
        seq_len=128,
        sources=[{"name": "text", "role": "general", "paths": [str(data)], "fraction": 1.0}],
        build={"workers": workers, "batch_documents": batch_documents},
    )


def baseline(texts: list[str], tokenizer_dir: Path, batch_documents: int) -> tuple[float, int]:
    """Seconds and tokens of raw encode_batch over every text (EOS not added: that is the pipeline's extra)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    start = time.perf_counter()
    tokens = 0
    for index in range(0, len(texts), batch_documents):
        tokens += sum(len(e.ids) for e in tokenizer.encode_batch(texts[index : index + batch_documents]))
    return time.perf_counter() - start, tokens


def pipeline(config) -> tuple[float, int]:
    """Seconds and tokens of building the source (read, tokenize, pack, write), Ray already up."""
    from pipelines.mix.build import build_sources
    from pipelines.mix.plan import commit_counts, make_plan

    plan = make_plan(config)  # counts are cached after the warm-up; build_sources checks its tokens against them
    commit_counts(plan)
    shutil.rmtree(Path(config.output_dir) / "sources", ignore_errors=True)
    start = time.perf_counter()
    build_sources(plan, plan.used())
    seconds = time.perf_counter() - start
    return seconds, sum(sum(s.counts.tokens.values()) for s in plan.used())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", type=Path, default=REPO / "outputs/quickstart/corpora")
    parser.add_argument("--tokenizer", type=Path, default=REPO / "outputs/quickstart/tokenizer")
    parser.add_argument("--repeat", type=int, default=4, help="copies of the text (one parquet file each)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of baseline and pipeline")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="concurrent Ray tokenizer tasks to try")
    parser.add_argument("--batch-documents", type=int, default=256)
    args = parser.parse_args()

    import ray

    scratch = Path(tempfile.mkdtemp(prefix="spt-mix-bench-"))
    try:
        corpora, tokenizer = _inputs(args.corpora, args.tokenizer, scratch)
        texts = _texts(corpora, args.repeat, scratch / "text")
        megabytes = sum(len(t.encode()) for t in texts) / 1e6
        start = time.perf_counter()
        ray.init(num_cpus=max(args.workers), include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - start
        configs = {
            w: _config(scratch / "text", tokenizer, scratch / f"out-{w}", w, args.batch_documents) for w in args.workers
        }
        pipeline(configs[max(args.workers)])  # warm-up: counts cached, workers' imports done
        load_before = os.getloadavg()[0]
        raw_runs, pipe_runs = [], {w: [] for w in args.workers}
        raw_tokens = pipe_tokens = 0
        for _ in range(args.rounds):
            seconds, raw_tokens = baseline(texts, tokenizer, args.batch_documents)
            raw_runs.append(seconds)
            for workers, config in configs.items():
                seconds, pipe_tokens = pipeline(config)
                pipe_runs[workers].append(seconds)
        load_after = os.getloadavg()[0]
        ray.shutdown()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    best_raw = min(raw_runs)
    best = {w: min(runs) for w, runs in pipe_runs.items()}

    eos = pipe_tokens - raw_tokens
    print(f"\ntext: {len(texts):,} documents, {megabytes:.2f} MB; {raw_tokens:,} tokens (+{eos:,} EOS)")
    print(f"ray start (not in the timings): {ray_start:.1f} s")
    print(f"{'run':<34} {'seconds':>8} {'MB/s':>7} {'Mtok/s':>7}")
    raw_rate = raw_tokens / best_raw / 1e6
    print(f"{'raw encode_batch (all cores)':<34} {best_raw:>8.2f} {megabytes / best_raw:>7.2f} {raw_rate:>7.3f}")
    for workers, seconds in best.items():
        label = f"mix build, {workers} Ray worker{'s' if workers > 1 else ''}"
        print(f"{label:<34} {seconds:>8.2f} {megabytes / seconds:>7.2f} {pipe_tokens / seconds / 1e6:>7.3f}")
    top = max(args.workers)
    paired = statistics.median(raw / pipe for raw, pipe in zip(raw_runs, pipe_runs[top]))
    print(f"\nratio (mix build with {top} workers / raw encode_batch, MB/s): best {best_raw / best[top]:.2f}, "
          f"median of {args.rounds} paired rounds {paired:.2f}  (goal >= 0.8)")
    if len(best) > 1:
        low = min(args.workers)
        print(f"scaling ({top} vs {low} workers): {best[low] / best[top]:.2f}x")
    print(f"load average (1 min) before / after the rounds: {load_before:.1f} / {load_after:.1f} "
          f"on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
