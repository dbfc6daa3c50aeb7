"""The model card (``README.md``) of an exported run: what it was trained on and what it measured.

Every number comes from the run's ``summary.json`` and its mix's streams spec; nothing is recomputed here.
"""

from __future__ import annotations

DOMAIN_ROLES = ("domain", "domain_synthetic")


def domain_fraction(spec: dict) -> float:
    """δ: the share of the mix's tokens that the domain set and its rephrasings supply (fraction)."""
    return sum(float(s.get("fraction") or 0.0) for s in spec["streams"] if s.get("role") in DOMAIN_ROLES)


def _number(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _mix_table(spec: dict) -> list[str]:
    lines = ["| source | role | fraction | epochs | tokens per pass |", "|---|---|---:|---:|---:|"]
    for stream in spec["streams"]:
        lines.append(f"| {stream['name']} | {stream['role']} | {float(stream.get('fraction') or 0):.4f} | "
                     f"{float(stream.get('epochs') or 0):.2f} | {_number(stream.get('realized_tokens'))} |")
    return lines


def _loss_table(summary: dict) -> list[str]:
    losses = {"domain": summary.get("domain_loss", summary.get("best_domain_loss")),
              "general": summary.get("general_loss")}
    losses.update({f"source {name}": value for name, value in sorted((summary.get("losses") or {}).items())})
    lines = ["| held-out set | loss (nats/token) |", "|---|---:|"]
    lines += [f"| {name} | {_number(value)} |" for name, value in losses.items() if value is not None]
    return lines


def model_card(source) -> str:
    """The card's Markdown, with Hub metadata (library, pipeline, tags) in its front matter.

    Args:
        source: The run to export (a :class:`training.export.RunToExport`: its summary, mix spec and configs).
    """
    summary, spec, config = source.summary, source.spec, source.model_config
    tokens = summary.get("tokens", summary.get("trained_tokens"))
    shape = summary.get("model") or {}
    name = source.run.rstrip("/").rsplit("/", 1)[-1]
    base = source.config.get("base_run")
    how = f"finetuned on domain data from `{base}`, pretrained with spt" if base else "pretrained with spt"
    lines = [
        "---", "library_name: transformers", "pipeline_tag: text-generation",
        "tags: [spt, specialized-pretraining, llama]", "---", "",
        f"# {name}", "",
        f"A Llama-style decoder ({_number(summary.get('params'))} parameters: {config.get('hidden_size')} hidden, "
        f"{config.get('num_hidden_layers')} layers, {config.get('num_attention_heads')} heads, "
        f"{config.get('num_key_value_heads')} key/value heads; context {config.get('max_position_embeddings')} "
        f"tokens; vocabulary {config.get('vocab_size')}) {how} (specialized pretraining: the domain set repeated "
        "inside pretraining as a fraction δ of all tokens).", "",
        "## Data mix", "",
        f"Mix `{spec.get('name')}`: {_number(spec.get('total_tokens'))} tokens per pass in samples of "
        f"{spec.get('seq_len')} tokens. Domain fraction δ = {domain_fraction(spec):.4f} (domain sources and their "
        "rephrasings).", "",
        *_mix_table(spec), "",
        "## Training", "",
        f"- tokens trained: {_number(tokens)}",
        f"- batches: {_number(summary.get('batches'))} of {_number(summary.get('global_batch_size'))} sequences",
        f"- run: `{source.run}`",
    ]
    if shape:
        lines.append("- shape: " + ", ".join(f"{k}={v}" for k, v in shape.items()))
    lines += ["", "## Held-out losses at the end of training", "", *_loss_table(summary), "",
              "## Use", "", "```python",
              "from transformers import AutoModelForCausalLM, AutoTokenizer",
              "model = AutoModelForCausalLM.from_pretrained(FOLDER)",
              "tokenizer = AutoTokenizer.from_pretrained(FOLDER)", "```", "",
              "With vLLM: `LLM(model=FOLDER, max_model_len=<at most the context above>)`.", ""]
    return "\n".join(lines)
