"""WiSE-FT (Wortsman et al. 2022; used for SPT by Dang et al. 2025): evaluate θ(α) = (1 − α)·θ_start + α·θ_end.

Models are read from safetensors folders (``run_dir/model``), so nothing is unpickled.
"""

from __future__ import annotations

import csv
import io
import math

from spt import storage
from spt.config import InterpolateConfig
from spt.errors import InputError
from training.heldout_split import mean_loss, read_heldout
from training.trainer import read_mix_spec


def model_folder(location: str) -> str:
    """A run_dir's exported model, or a model folder itself (local or ``s3://``)."""
    for candidate in (storage.join(str(location), "model"), str(location)):
        names = {e.relative for e in storage.list_files(candidate)}
        if "config.json" in names and any(n.endswith(".safetensors") and "/" not in n for n in names):
            return candidate
    raise InputError(f"{str(location)!r}: no safetensors model there (expected a finished run_dir with model/)")


def load_model(location: str):
    """The HF Llama saved at a run_dir (its ``model/``) or model folder, local or on S3, in eval mode."""
    from transformers import LlamaForCausalLM

    from training.run_files import local_model  # expensive: imports composer

    with local_model(model_folder(location)) as folder:
        model = LlamaForCausalLM.from_pretrained(folder, use_safetensors=True)
    return model.eval()


def interpolate(config: InterpolateConfig) -> list[dict]:
    """Evaluates each α on every source's held-out shards; writes and returns the table rows."""
    from training.curves import role_loss  # expensive: imports composer

    storage.check_writable(storage.parent(config.output), "interpolate.output")
    spec = read_mix_spec(config.mix)
    start, end = load_model(config.start), load_model(config.end)
    start_state = {k: v.clone() for k, v in start.state_dict().items()}
    end_state = end.state_dict()
    if start_state.keys() != end_state.keys() or any(start_state[k].shape != end_state[k].shape for k in start_state):
        raise InputError(f"interpolate: {config.start!r} and {config.end!r} have different architectures")
    sources = [e for e in spec["eval"] if e.get("samples")]
    roles = {e["name"]: e["role"] for e in sources}
    # Each source's first held-out samples, read once (every dataset Streaming opens keeps file handles open).
    samples = {e["name"]: read_heldout(spec, e["name"], config.eval_samples) for e in sources}
    weights = {name: len(rows) for name, rows in samples.items()}
    rows = []
    for alpha in config.alphas:
        mixed = {k: (1 - alpha) * start_state[k] + alpha * end_state[k] if start_state[k].is_floating_point()
                 else start_state[k] for k in start_state}
        start.load_state_dict(mixed)
        losses = {name: mean_loss(start, rows) for name, rows in samples.items()}
        row = {"alpha": alpha, "domain_loss": role_loss(losses, roles, "domain", weights),
               "general_loss": role_loss(losses, roles, "general", weights)}
        row.update({f"loss_{n}": v for n, v in sorted(losses.items())})
        rows.append(row)
    write_table(rows, config.output)
    return rows


def write_table(rows: list[dict], location: str) -> None:
    """Writes the rows as CSV, atomically, to a local path or an ``s3://`` URL."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    storage.write_text(location, text.getvalue())


def format_table(rows: list[dict]) -> str:
    def fmt(value):
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"

    lines = [f"{'alpha':>6} {'domain_loss':>12} {'general_loss':>13}"]
    lines += [f"{r['alpha']:>6.2f} {fmt(r['domain_loss']):>12} {fmt(r['general_loss']):>13}" for r in rows]
    return "\n".join(lines)
