"""WiSE-FT (Wortsman et al. 2022; used for SPT by Dang et al. 2025): evaluate θ(α) = (1 − α)·θ_start + α·θ_end.

Models are read from safetensors folders (``run_dir/model``), so nothing is unpickled.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from spt.config import InterpolateConfig
from spt.errors import InputError


def model_folder(path: str | Path) -> Path:
    """A run_dir's exported model, or a model folder itself."""
    path = Path(path)
    for candidate in (path / "model", path):
        if (candidate / "config.json").exists() and any(candidate.glob("*.safetensors")):
            return candidate
    raise InputError(f"{str(path)!r}: no safetensors model there (expected a finished run_dir with model/)")


def load_model(path: str | Path):
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(model_folder(path), use_safetensors=True)
    return model.eval()


def heldout_loss(model, spec: dict, source: str, max_samples: int, batch_size: int = 16) -> float:
    """Mean next-token cross-entropy (nats/token) over the first ``max_samples`` held-out sequences of a source."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from pipelines.mix.streams import eval_dataset
    from training.data import collate_tokens

    loader = DataLoader(eval_dataset(spec, source, batch_size=batch_size, num_canonical_nodes=1),
                        batch_size=batch_size, collate_fn=collate_tokens)
    total, count, seen = 0.0, 0, 0
    with torch.no_grad():
        for batch in loader:
            ids = batch["input_ids"][: max_samples - seen]
            logits = model(input_ids=ids).logits[:, :-1]
            targets = ids[:, 1:]
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                                     reduction="sum").item()
            count += targets.numel()
            seen += len(ids)
            if seen >= max_samples:
                break
    return total / max(count, 1)


def interpolate(config: InterpolateConfig) -> list[dict]:
    """Evaluates each α on every source's held-out shards; writes and returns the table rows."""
    from training.curves import role_loss
    from training.trainer import read_mix_spec

    spec = read_mix_spec(config.mix)
    start, end = load_model(config.start), load_model(config.end)
    start_state = {k: v.clone() for k, v in start.state_dict().items()}
    end_state = end.state_dict()
    if start_state.keys() != end_state.keys() or any(start_state[k].shape != end_state[k].shape for k in start_state):
        raise InputError(f"interpolate: {config.start!r} and {config.end!r} have different architectures")
    sources = [e for e in spec["eval"] if e.get("samples")]
    roles = {e["name"]: e["role"] for e in sources}
    weights = {e["name"]: min(config.eval_samples, e["samples"]) for e in sources}
    rows = []
    for alpha in config.alphas:
        mixed = {k: (1 - alpha) * start_state[k] + alpha * end_state[k] if start_state[k].is_floating_point()
                 else start_state[k] for k in start_state}
        start.load_state_dict(mixed)
        losses = {e["name"]: heldout_loss(start, spec, e["name"], config.eval_samples) for e in sources}
        row = {"alpha": alpha, "domain_loss": role_loss(losses, roles, "domain", weights),
               "general_loss": role_loss(losses, roles, "general", weights)}
        row.update({f"loss_{n}": v for n, v in sorted(losses.items())})
        rows.append(row)
    write_table(rows, Path(config.output))
    return rows


def write_table(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def format_table(rows: list[dict]) -> str:
    def fmt(value):
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"

    lines = [f"{'alpha':>6} {'domain_loss':>12} {'general_loss':>13}"]
    lines += [f"{r['alpha']:>6.2f} {fmt(r['domain_loss']):>12} {fmt(r['general_loss']):>13}" for r in rows]
    return "\n".join(lines)
