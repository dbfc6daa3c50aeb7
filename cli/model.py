"""`spt model check`: loads the rephraser model in vLLM (generate environment) and generates once."""

from __future__ import annotations

import argparse
import json
import time

from pipelines.engine import import_vllm, make_llm
from spt.errors import InputError
from spt.models import default_model_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    model = subparsers.add_parser("model", help="check the local rephraser model with vLLM")
    actions = model.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="load the model in vLLM and generate a reply to one prompt")
    check.add_argument("--model", default=None, help="model folder or hub id (default: the local SmolLM2 folder)")
    check.add_argument("--prompt", default="Explain in one sentence what a tokenizer does.")
    check.add_argument("--max-tokens", type=int, default=32, help="output tokens at most (tokens)")
    check.add_argument("--dry-run", action="store_true", help="print what would run and exit")
    check.set_defaults(func=run_check, environment="generate")


def run_check(args: argparse.Namespace) -> int:
    model = args.model or str(default_model_dir())
    if args.max_tokens < 1:
        raise InputError(f"--max-tokens={args.max_tokens}: must be >= 1")
    if not args.prompt.strip():
        raise InputError("--prompt: must not be empty")
    if args.dry_run:
        print(json.dumps({"model": model, "prompt": args.prompt, "max_tokens": args.max_tokens}, indent=2))
        return 0

    start = time.time()
    vllm = import_vllm()
    llm = make_llm(model, max_model_len=1024)
    params = vllm.SamplingParams(max_tokens=args.max_tokens, temperature=0.0)
    reply = llm.chat([[{"role": "user", "content": args.prompt}]], params, use_tqdm=False)[0].outputs[0].text
    print(json.dumps({"model": model, "reply": reply, "seconds": round(time.time() - start, 1)}))
    return 0 if reply.strip() else 1
