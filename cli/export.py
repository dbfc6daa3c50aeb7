"""`spt export RUN --out DIR`: a finished run as a Hugging Face folder for transformers and vLLM."""

from __future__ import annotations

import argparse
import json

from spt import storage
from training.export import export_run, read_run


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser(
        "export", help="write a finished run as a Hugging Face model folder (weights, tokenizer, model card)"
    )
    export.add_argument("run", metavar="RUN", help="run_dir of a finished `spt train` or `spt finetune` run")
    export.add_argument("--out", required=True, help="the folder to write, local or s3://")
    export.add_argument("--force", action="store_true", help="replace an export of another run in --out")
    export.add_argument("--dry-run", action="store_true", help="check the run and print what would be exported")
    export.set_defaults(func=run_export, environment="train")


def run_export(args: argparse.Namespace) -> int:
    storage.check(args.run, "run")
    storage.check_output(args.out, "--out", probe=not args.dry_run)
    if args.dry_run:
        source = read_run(args.run)
        print(json.dumps({"run": args.run, "out": args.out, "tokenizer": source.tokenizer,
                          "weights": source.weights, "eos_token_id": source.eos_token_id,
                          "pad_token_id": source.pad_token_id}, indent=2))
        return 0
    manifest = export_run(args.run, args.out, force=args.force)
    state = "already exported, reused" if manifest["reused"] else "written"
    print(f"{len(manifest['files'])} files: {', '.join(manifest['files'])}")
    print(f"export {state}: {args.out} (AutoModelForCausalLM.from_pretrained / vLLM LLM(model=...))")
    return 0
