"""The plan as rows, as a printed table and as JSON (plan.json)."""

from __future__ import annotations

from pipelines.mix.plan import MixPlan, SourcePlan


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(float(value), 6)


def source_row(plan: MixPlan, source: SourcePlan) -> dict:
    """Every number of one source, by name (tokens, samples, epochs, documents)."""
    seq_len = plan.seq_len
    row = {
        "name": source.name,
        "role": source.config.role,
        "fraction": float(source.fraction) if source.left_out is None else 0.0,
        "fraction_configured": source.config.fraction,
        "max_epochs": source.config.max_epochs,
        "asked_tokens": _number(plan.asked_tokens(source)) if source.left_out is None else 0,
        "samples": source.samples,
        "realized_tokens": source.samples * seq_len,
        "left_out": source.left_out,
        "units_missing": source.units_missing,
        "rephrases": None if (target := plan.config.rephrased_source(source.index)) is None
        else plan.sources[target].name,
        "heldout_ids_of_rephrased": len(source.heldout_ids),
    }
    if source.counts is None:
        return row
    counts = source.counts
    unique = plan.unique_samples(source)
    row.update(
        {
            "unique_samples": unique,
            "unique_tokens": unique * seq_len,
            "epochs": round(plan.epochs(source), 6),
            "documents": counts.documents["train"],
            "document_tokens": counts.tokens["train"],
            "dropped_tokens": counts.tokens["train"] - unique * seq_len,
            "heldout_documents": counts.documents["heldout"],
            "heldout_samples": plan.unique_samples(source, "heldout"),
            "heldout_tokens": plan.unique_samples(source, "heldout") * seq_len,
            "skipped": counts.skipped,
            "source_dir": source.dir_name,
            "count_key": source.count_key,
            "counts_from": source.counts_from,
        }
    )
    return row


def domain_groups(plan: MixPlan) -> list[dict]:
    """Per domain source with rephrasings: δ (their shares together), the synthetic share, and the unique tokens
    and epochs of the original and of the rephrased part."""
    groups = []
    for source in plan.sources:
        synthetic = [plan.sources[i] for i in plan.config.synthetic_of(source.index)]
        if source.config.role != "domain" or source.config.synthetic_share is None:
            continue
        parts = {"domain": [source], "rephrased": [s for s in synthetic if s.left_out is None]}
        group = {"name": source.name, "delta": float(source.fraction + sum(s.fraction for s in synthetic)),
                 "synthetic_share": source.config.synthetic_share}
        for key, members in parts.items():
            unique = sum(plan.unique_samples(m) for m in members) * plan.seq_len
            realized = sum(m.samples for m in members) * plan.seq_len
            group[key] = {
                "sources": [m.name for m in members],
                "fraction": float(sum((m.fraction for m in members), 0)),
                "unique_tokens": unique,
                "realized_tokens": realized,
                "epochs": round(realized / unique, 6) if unique else (0.0 if realized == 0 else float("inf")),
            }
        groups.append(group)
    return groups


def _group_line(group: dict) -> str:
    domain, rephrased = group["domain"], group["rephrased"]
    return (
        f"{group['name']}: δ {group['delta']:.4f} with synthetic_share {group['synthetic_share']:g}: "
        f"domain {domain['fraction']:.4f} of T, {domain['unique_tokens']:,} unique tokens, "
        f"{domain['epochs']:.3f} epochs; rephrased ({', '.join(rephrased['sources']) or 'none'}) "
        f"{rephrased['fraction']:.4f} of T, {rephrased['unique_tokens']:,} unique tokens, "
        f"{rephrased['epochs']:.3f} epochs"
    )


def format_plan(plan: MixPlan) -> str:
    """The plan table a person reads before paying for compute."""
    config = plan.config
    realized = plan.total_samples * plan.seq_len
    lines = [
        f"mix {plan.name!r}: {config.total_tokens:,} tokens asked = {plan.total_samples:,} samples x seq_len "
        f"{plan.seq_len} ({realized:,} tokens realized); tokenizer vocab {plan.tokenizer.vocab_size:,} "
        f"({plan.tokenizer.dtype}), EOS id {plan.tokenizer.eos_token_id}",
        "",
        f"{'source':<16} {'role':<16} {'fraction':>8} {'tokens asked':>14} {'samples':>10} {'realized':>14} "
        f"{'unique tokens':>14} {'epochs':>8} {'held-out':>9}",
    ]
    notes = []
    for source in plan.sources:
        row = source_row(plan, source)
        if source.left_out is not None:
            lines.append(f"{source.name:<16} {source.config.role:<16} {'-':>8}  left out ({source.left_out})")
            continue
        lines.append(
            f"{source.name:<16} {source.config.role:<16} {row['fraction']:>8.4f} {round(row['asked_tokens']):>14,} "
            f"{row['samples']:>10,} {row['realized_tokens']:>14,} {row['unique_tokens']:>14,} "
            f"{row['epochs']:>8.3f} {row['heldout_samples']:>9,}"
        )
        notes += _notes(source, row)
    lines.append(
        f"{'total':<16} {'':<16} {1.0:>8.4f} {config.total_tokens:>14,} {plan.total_samples:>10,} {realized:>14,}"
    )
    groups = domain_groups(plan)
    if groups:
        lines += ["", "domain and its rephrasings (δ = their shares together):"]
        lines += [f"  {_group_line(group)}" for group in groups]
    lines.append("")
    lines.append("samples and held-out in samples of seq_len tokens; epochs = samples / unique samples")
    return "\n".join(lines + notes)


def _notes(source, row: dict) -> list[str]:
    notes = []
    if row["skipped"]:
        detail = ", ".join(f"{reason}: {n}" for reason, n in row["skipped"].items())
        notes.append(f"  {source.name}: skipped rows: {detail}")
    if row["units_missing"]:
        notes.append(f"  {source.name}: incomplete rephrase output: {row['units_missing']} work units not committed "
                     "yet (allow_incomplete: committed shards only)")
    if row["rephrases"] is not None:
        notes.append(f"  {source.name}: rephrases {row['rephrases']!r}: rows of its "
                     f"{row['heldout_ids_of_rephrased']:,} held-out documents are held out here")
    return notes


def plan_json(plan: MixPlan) -> dict:
    """plan.json: the resolved config, the tokenizer and every source's numbers."""
    return {
        "format": "spt-mix-plan/1",
        "name": plan.name,
        "config": plan.config.model_dump(mode="json"),
        "tokenizer": {
            "folder": plan.tokenizer.folder,
            "sha256": plan.tokenizer.sha256,
            "vocab_size": plan.tokenizer.vocab_size,
            "eos_token_id": plan.tokenizer.eos_token_id,
            "dtype": plan.tokenizer.dtype,
        },
        "total_tokens": plan.config.total_tokens,
        "seq_len": plan.seq_len,
        "total_samples": plan.total_samples,
        "realized_tokens": plan.total_samples * plan.seq_len,
        "sources": [source_row(plan, s) for s in plan.sources],
        "domain_groups": domain_groups(plan),
        "table": format_plan(plan).splitlines(),
    }
