"""Output tokens/s of `spt rephrase` against raw `vllm.LLM.generate` on the same prompts, in one run.

    .venv/generate/bin/python benchmarks/rephrase_throughput.py [--sample-fraction 0.03] [--max-tokens 96]
        [--variants raw,spt,ray-data-llm] [--dtype auto]
    # bf16 against float32 on this CPU: the same 32 prompts, one batch, exactly 64 output tokens each
    .venv/generate/bin/python benchmarks/rephrase_throughput.py --variants raw:bfloat16,raw:float32 \
        --prompts 32 --max-tokens 64 --fixed-length

The prompts are the rows `spt rephrase` builds from the quickstart config (corpus sample -> filter -> chunks ->
styles -> token ids). Each variant runs in its own process, one after the other:

- raw: one ``vllm.LLM`` in-process, every prompt in one ``generate`` call (the engine's best case).
- spt: the real ``spt rephrase`` command (Ray Data, the engine actor, shard commits, manifest).
- ray-data-llm (optional): the same prompts through ``ray.data.llm``'s vLLM processor, the alternative engine
  stage; compared end to end with spt, since both pay for Ray and an engine actor.

Rates: output tokens over generation time. For raw that is the ``generate`` call; for spt it is from the engine
being ready to the last shard committed, as in its manifest, so every pipeline cost during generation counts.
Engine start-up (the same ~35 s model load for every variant here) is reported apart. Goal: spt/raw >= 0.9.
End to end (e2e) is each variant's whole process, start to exit: imports, prompt building, Ray, engine, output.

A variant may name its dtype (``raw:float32``); otherwise ``--dtype`` (default ``auto``: see
``pipelines.engine.resolve_dtype``) applies. The CPU's relevant flags and each variant's dtype are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def overrides(args: argparse.Namespace, out_dir: Path) -> list[str]:
    return [
        f"engine.dtype={args.dtype}",
        f"input.sample_fraction={args.sample_fraction}",
        f"sampling.max_tokens={args.max_tokens}",
        f"engine.batch_size={args.batch_size}",
        f"output.dir={out_dir}",
        "output.documents_per_shard=128",
    ]


def build_rows(args: argparse.Namespace, out_dir: Path) -> tuple[list[dict], object]:
    from pipelines.rephrase.expand import ExpandUnit
    from pipelines.rephrase.runner import prepare
    from spt.config import load_config

    config = load_config(args.config, overrides(args, out_dir), kind="rephrase")
    plan = prepare(config)
    stage = ExpandUnit(plan.config, plan.styles, plan.weights, plan.model)
    rows = [row for unit in plan.units for row in stage(unit.to_dict()) if row["kind"] == "row"]
    if args.prompts:
        if len(rows) < args.prompts:
            raise SystemExit(f"--prompts {args.prompts}: the sample has only {len(rows)} rows; raise --sample-fraction")
        rows = rows[: args.prompts]
    return rows, plan


def run_raw(args: argparse.Namespace, work: Path) -> dict:
    from pipelines.engine import import_vllm, make_llm, resolve_dtype
    from pipelines.rephrase.generate import sampling_params

    rows, plan = build_rows(args, work / "unused")
    dtype = resolve_dtype(plan.config.engine.dtype, "cpu")
    vllm = import_vllm()
    from vllm.inputs import TokensPrompt

    engine = plan.config.engine
    start = time.time()
    llm = make_llm(plan.model, dtype=dtype, max_model_len=engine.max_model_len,
                   enforce_eager=engine.enforce_eager, seed=plan.config.sampling.seed)
    ready = time.time()
    sampling = plan.config.sampling.model_dump()
    prompts = [TokensPrompt(prompt_token_ids=row["prompt_token_ids"]) for row in rows]
    params = [sampling_params(vllm, sampling, row["max_tokens"]) for row in rows]
    if args.fixed_length:  # every row generates exactly max_tokens: both dtypes do the same work
        for param in params:
            param.min_tokens = param.max_tokens
    outputs = llm.generate(prompts, params, use_tqdm=False)
    done = time.time()
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    return {"rows": len(rows), "output_tokens": tokens, "generation_seconds": done - ready,
            "startup_seconds": ready - start, "wall_seconds": done - start, "dtype": dtype}


def run_spt(args: argparse.Namespace, work: Path) -> dict:
    out_dir = work / "spt"
    command = [sys.executable, "-m", "cli.main", "rephrase", args.config, *overrides(args, out_dir)]
    start = time.time()
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    wall = time.time() - start
    if proc.returncode != 0:
        raise SystemExit(f"spt rephrase failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    manifest = json.loads((out_dir / "manifest.json").read_text())
    run = manifest["runs"][-1]
    return {"rows": run["rows"], "output_tokens": run["output_tokens"], "generation_seconds": run["generation_seconds"],
            "startup_seconds": run["wall_seconds"] - run["generation_seconds"], "wall_seconds": wall,
            "dtype": run.get("engine", {}).get("dtype", "?")}


def run_ray_data_llm(args: argparse.Namespace, work: Path) -> dict:
    import ray
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    from pipelines.engine import resolve_dtype
    from pipelines.rephrase.generate import engine_env

    rows, plan = build_rows(args, work / "unused")
    engine, sampling = plan.config.engine, plan.config.sampling
    dtype = resolve_dtype(engine.dtype, "cpu")
    start = time.time()
    os.environ.update(engine_env(engine.cpu_kv_cache_gib))
    temp_dir = tempfile.mkdtemp(prefix="spt-ray-", dir="/tmp")
    ray.init(address="local", _temp_dir=temp_dir, include_dashboard=False,
             object_store_memory=512 * 1024 * 1024, logging_level="warning")
    processor = build_processor(
        vLLMEngineProcessorConfig(
            model_source=plan.model,
            engine_kwargs={"dtype": dtype, "max_model_len": engine.max_model_len,
                           "enforce_eager": engine.enforce_eager, "seed": sampling.seed},
            batch_size=args.batch_size, concurrency=1, max_concurrent_batches=4,
            chat_template_stage=False, tokenize_stage=False, detokenize_stage=False,
            log_engine_metrics=False, placement_group_config={"bundles": [{"CPU": 1}]},
        ),
        preprocess=lambda row: {
            "tokenized_prompt": row["prompt_token_ids"],
            "sampling_params": {"temperature": sampling.temperature, "top_p": sampling.top_p,
                                "repetition_penalty": sampling.repetition_penalty,
                                "max_tokens": int(row["max_tokens"])},
        },
        postprocess=lambda row: {"output_tokens": row["num_generated_tokens"]},
    )
    data = ray.data.from_items([{"prompt_token_ids": r["prompt_token_ids"], "max_tokens": r["max_tokens"]}
                                for r in rows])
    first = None
    tokens = 0
    for batch in processor(data).iter_batches(batch_size=None):
        first = first or time.time()
        tokens += int(sum(batch["output_tokens"]))
    done = time.time()
    ray.shutdown()
    from pipelines.rephrase.runner import end_processes_using

    end_processes_using(temp_dir)
    shutil.rmtree(temp_dir, ignore_errors=True)
    return {"rows": len(rows), "output_tokens": tokens, "generation_seconds": None,
            "startup_seconds": None, "wall_seconds": done - start, "dtype": dtype}


RUNNERS = {"raw": run_raw, "spt": run_spt, "ray-data-llm": run_ray_data_llm}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/rephrase/quickstart.yaml")
    parser.add_argument("--sample-fraction", type=float, default=0.03, help="share of corpus documents (fraction)")
    parser.add_argument("--max-tokens", type=int, default=96, help="output tokens per row at most (tokens)")
    parser.add_argument("--batch-size", type=int, default=64, help="spt engine.batch_size (rows)")
    parser.add_argument("--variants", default="raw,spt",
                        help="comma list of raw, spt, ray-data-llm, each optionally with :DTYPE (raw:float32)")
    parser.add_argument("--dtype", default="auto", help="engine dtype of variants that name none (auto by CPU flags)")
    parser.add_argument("--prompts", type=int, default=0, help="use only the first N prompt rows (0: all)")
    parser.add_argument("--fixed-length", action="store_true",
                        help="raw: every row generates exactly --max-tokens tokens (min_tokens = max_tokens)")
    parser.add_argument("--only", choices=sorted(RUNNERS), help=argparse.SUPPRESS)  # one variant, in a child
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.chdir(REPO)
    if args.only:
        Path(args.work).mkdir(parents=True, exist_ok=True)
        print("RESULT " + json.dumps(RUNNERS[args.only](args, Path(args.work))), flush=True)
        return 0
    from spt.environments import is_current, python_for

    if not is_current("generate"):
        return subprocess.call([str(python_for("generate")), *sys.argv])
    from pipelines.engine import describe_cpu

    print(f"CPU flags: {describe_cpu()}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="spt-bench-") as work:
        for variant in args.variants.split(","):
            runner, _, dtype = variant.partition(":")
            child = [sys.executable, __file__, "--only", runner, "--work", f"{work}/{len(results)}",
                     "--config", args.config, "--sample-fraction", str(args.sample_fraction),
                     "--max-tokens", str(args.max_tokens), "--batch-size", str(args.batch_size),
                     "--dtype", dtype or args.dtype, "--prompts", str(args.prompts),
                     *(["--fixed-length"] if args.fixed_length else [])]
            print(f"== {variant}", file=sys.stderr, flush=True)
            start = time.time()
            proc = subprocess.run(child, capture_output=True, text=True)
            process_seconds = time.time() - start
            lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                print(proc.stderr[-3000:], file=sys.stderr)
                return 1
            results[variant] = json.loads(lines[-1][len("RESULT "):])
            results[variant]["process_seconds"] = process_seconds
    print(f"{'variant':<16} {'dtype':<9} {'rows':>5} {'out tokens':>10} {'gen s':>7} {'tok/s':>7} {'start s':>8} "
          f"{'e2e s':>7} {'e2e tok/s':>9}")
    for name, r in results.items():
        rate = r["output_tokens"] / r["generation_seconds"] if r["generation_seconds"] else float("nan")
        r["tokens_per_second"] = rate
        r["e2e_tokens_per_second"] = r["output_tokens"] / r["process_seconds"]
        start = f"{r['startup_seconds']:.1f}" if r["startup_seconds"] is not None else "-"
        gen = f"{r['generation_seconds']:.1f}" if r["generation_seconds"] is not None else "-"
        print(f"{name:<16} {r['dtype']:<9} {r['rows']:>5} {r['output_tokens']:>10,} {gen:>7} {rate:>7.1f} {start:>8} "
              f"{r['process_seconds']:>7.1f} {r['e2e_tokens_per_second']:>9.1f}")
    if "raw" in results and "spt" in results:
        ratio = results["spt"]["tokens_per_second"] / results["raw"]["tokens_per_second"]
        print(f"spt rephrase / raw LLM.generate output tokens/s: {ratio:.2f} (goal >= 0.9)")
    if "spt" in results and "ray-data-llm" in results:
        ratio = results["spt"]["e2e_tokens_per_second"] / results["ray-data-llm"]["e2e_tokens_per_second"]
        print(f"spt rephrase (actor) / ray.data.llm processor, end-to-end output tokens/s: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
