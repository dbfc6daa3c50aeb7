"""Training throughput: spt's Composer trainer vs a plain PyTorch loop, same model, batch and data, one run.

Both read the same MDS shards through the same StreamingDataset DataLoader, train the same randomly initialized
Llama (same seed) with AdamW and gradient clipping, and are timed over the same steady-state batches (the first
``--warmup`` batches are excluded from both). Prints tokens/s of each and the ratio (goal: >= 0.9).

    .venv/train/bin/python benchmarks/train_throughput.py [--preset micro] [--batches 40] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def write_shards(folder: Path, samples: int, seq_len: int, vocab: int) -> None:
    from streaming import MDSWriter

    rng = np.random.default_rng(0)
    with MDSWriter(out=str(folder), columns={"tokens": "ndarray:uint16"}) as writer:
        for _ in range(samples):
            writer.write({"tokens": rng.integers(0, vocab, size=seq_len).astype(np.uint16)})


def loader(folder: Path, batch_size: int):
    from streaming import StreamingDataset
    from torch.utils.data import DataLoader

    from pipelines.mix.streams import created
    from training.data import collate_tokens

    dataset = created(lambda: StreamingDataset(local=str(folder), shuffle=True, shuffle_seed=0,
                                               batch_size=batch_size))
    return DataLoader(dataset, batch_size=batch_size, collate_fn=collate_tokens, drop_last=True)


class BatchClock:
    """A Composer callback recording the wall time at the end of every batch."""

    def __init__(self):
        self.times: list[float] = []

    def run_event(self, event, state, logger):
        if event.value == "batch_end":
            self.times.append(time.perf_counter())


def composer_run(args, folder: Path, size, vocab: int, run_dir: Path) -> float:
    from composer.core import Callback

    from spt.config.train import OptimizerConfig, ScheduleConfig
    from training.composer_run import compose_trainer
    from training.layout import RunLayout
    from training.run_files import RunFiles
    from training.trainer import RunPlan, build_model

    clock = type("Clock", (BatchClock, Callback), {})()
    plan = RunPlan(args.seq_len, args.batch_size * args.seq_len, args.batches, args.batches, args.batches,
                   args.batch_size, args.batch_size, size, 0)
    spec = {"vocab_size": vocab, "eos_token_id": 0}
    layout = RunLayout(str(run_dir))
    trainer = compose_trainer(
        layout=layout, files=RunFiles(layout), model=build_model(plan, spec, seed=0), train_loader=loader(folder, args.batch_size),
        evals=[], roles={}, eval_samples={}, plan=plan, optimizer=OptimizerConfig(lr=1e-3),
        schedule=ScheduleConfig(kind="constant", warmup_fraction=0.0), device="cpu", precision="fp32", seed=0,
        autoresume=False, callbacks=[clock],
    )
    trainer.fit()
    trainer.close()
    steady = clock.times[args.warmup - 1:]
    return (len(steady) - 1) * plan.tokens_per_batch / (steady[-1] - steady[0])


def plain_run(args, folder: Path, size, vocab: int) -> float:
    import torch
    from transformers import LlamaForCausalLM

    from spt.presets import llama_config

    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config(size, vocab, args.seq_len, 0)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.0)
    times = []
    for step, batch in enumerate(loader(folder, args.batch_size)):
        if step == args.batches:
            break
        loss = model(input_ids=batch["input_ids"], labels=batch["labels"]).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        times.append(time.perf_counter())
    steady = times[args.warmup - 1:]
    return (len(steady) - 1) * args.batch_size * args.seq_len / (steady[-1] - steady[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="micro")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each; the best counts")
    args = parser.parse_args()

    import torch

    from spt.presets import PRESETS

    torch.set_num_threads(torch.get_num_threads())
    size = PRESETS[args.preset]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "shards"
        write_shards(folder, args.batches * args.batch_size + args.batch_size, args.seq_len, args.vocab)
        # Alternate the two and keep each one's best run, so a busy moment on a shared machine hurts neither.
        plain, composer = 0.0, 0.0
        for repeat in range(args.repeats):
            plain = max(plain, plain_run(args, folder, size, args.vocab))
            composer = max(composer, composer_run(args, folder, size, args.vocab, Path(tmp) / f"run{repeat}"))
    print(f"model={args.preset} batch={args.batch_size}x{args.seq_len} steady batches={args.batches - args.warmup}")
    print(f"plain PyTorch loop : {plain:10.0f} tokens/s")
    print(f"spt (Composer)     : {composer:10.0f} tokens/s")
    print(f"ratio spt/plain    : {composer / plain:10.3f}")


if __name__ == "__main__":
    main()
