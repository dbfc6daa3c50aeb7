"""Counts per unit, per style, per run and overall, and the printed summary.

Definitions (also in the manifest): *documents* are source documents with at least one row in a style;
*chunks* are rows (one per chunk and style); *tokens in/out* are prompt and generated tokens; *rejected* are rows
the quality gate refused (``rejected_by``: per style, per reason), *accepted tokens* the output tokens of rows
without an error or a rejection (what a mix may train on); *tokens/s* is
output tokens over the run's generation time (from the first engine ready to the last commit, so every pipeline
overhead counts); a style's tokens/s is its share of that rate.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Iterable

STYLE_FIELDS = ("documents", "chunks", "prompt_tokens", "output_tokens", "errors", "rejected", "accepted_tokens")
UNIT_FIELDS = ("documents", "kept", "chunks", "split", "truncated", "prompts_truncated", "document_tokens")


def per_style(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per-style counts of one unit's output rows."""
    stats: dict[str, Counter] = defaultdict(Counter)
    sources: dict[str, set] = defaultdict(set)
    for row in rows:
        style = stats[row["style"]]
        sources[row["style"]].add(row["source_id"])
        style["chunks"] += 1
        style["prompt_tokens"] += row["prompt_tokens"]
        style["output_tokens"] += row["output_tokens"]
        style["errors"] += row["error"] is not None
        style["rejected"] += row.get("rejected") is not None
        if row["error"] is None and row.get("rejected") is None:
            style["accepted_tokens"] += row["output_tokens"]
    return {
        name: {"documents": len(sources[name]), **{f: int(stats[name][f]) for f in STYLE_FIELDS[1:]}}
        for name in sorted(stats)
    }


def rejected_by(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Rejected rows of one unit per style and reason."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for row in rows:
        if row.get("rejected") is not None:
            counts[row["style"]][row["rejected"]] += 1
    return {style: dict(sorted(counts[style].items())) for style in sorted(counts)}


def add_styles(into: dict[str, dict[str, int]], more: dict[str, dict[str, int]]) -> None:
    for name, counts in more.items():
        target = into.setdefault(name, {f: 0 for f in STYLE_FIELDS})
        for key in STYLE_FIELDS:
            target[key] += counts.get(key, 0)


def totals(units: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Overall counts over committed units: documents, skips by reason, chunks, rows, tokens, per style."""
    total: Counter = Counter()
    skipped: Counter = Counter()
    style_skipped: Counter = Counter()
    styles: dict[str, dict[str, int]] = {}
    rejected: dict[str, Counter] = defaultdict(Counter)
    count = 0
    for info in units:
        count += 1
        for style, reasons in info.get("rejected_by", {}).items():
            rejected[style].update(reasons)
        stats = info.get("stats", {})
        total.update({k: stats.get(k, 0) for k in UNIT_FIELDS})
        skipped.update(stats.get("skipped", {}))
        style_skipped.update(stats.get("style_skipped", {}))
        total["rows"] += info.get("rows", 0)
        total["errors"] += info.get("errors", 0)
        add_styles(styles, info.get("per_style", {}))
    result = {k: int(total[k]) for k in (*UNIT_FIELDS, "rows", "errors")}
    for key in ("prompt_tokens", "output_tokens", "rejected", "accepted_tokens"):
        result[key] = sum(s.get(key, 0) for s in styles.values())
    result["rejected_by"] = {style: dict(sorted(rejected[style].items())) for style in sorted(rejected)}
    result.update(units=count, skipped=dict(sorted(skipped.items())), style_skipped=dict(sorted(style_skipped.items())))
    result["per_style"] = styles
    return result


def run_record(units: list[dict[str, Any]], generation_seconds: float, wall_seconds: float, **extra) -> dict[str, Any]:
    """The manifest entry of one run: what it committed, and its rates."""
    summary = totals(units)
    rate = (lambda tokens: round(tokens / generation_seconds, 2)) if generation_seconds > 0 else (lambda _: 0.0)
    for counts in summary["per_style"].values():
        counts["tokens_per_second"] = rate(counts["output_tokens"])
    summary.update(
        generation_seconds=round(generation_seconds, 2),
        wall_seconds=round(wall_seconds, 2),
        tokens_per_second=rate(summary["output_tokens"]),
        **extra,
    )
    return summary


def _counts(summary: dict[str, Any], indent: str = "") -> list[str]:
    lines = []
    if summary["skipped"]:
        lines.append(indent + "skipped documents: " + ", ".join(f"{k}: {v:,}" for k, v in summary["skipped"].items()))
    lines.append(
        f"{indent}long documents: {summary['split']:,} split, {summary['truncated']:,} truncated; "
        f"prompts truncated to fit: {summary['prompts_truncated']:,}"
    )
    if summary["style_skipped"]:
        lines.append(indent + "style skips: " + ", ".join(f"{k}: {v:,}" for k, v in summary["style_skipped"].items()))
    if summary.get("rejected_by"):
        lines.append(indent + "rejected by the quality gate: " + "; ".join(
            f"{style}: " + ", ".join(f"{reason} {n:,}" for reason, n in reasons.items())
            for style, reasons in summary["rejected_by"].items()))
    return lines


def format_summary(run: dict[str, Any], overall: dict[str, Any], units_total: int) -> str:
    """The summary printed at the end of a run: this run per style, then the whole output folder."""
    lines = [
        f"this run: {run['units']} units, {run['documents']:,} documents read, {run['kept']:,} kept, "
        f"{run['chunks']:,} chunks, {run['rows']:,} rows, {run['errors']:,} errors",
        *_counts(run),
    ]
    header = (
        f"{'style':<20} {'documents':>9} {'chunks':>7} {'tokens in':>10} {'tokens out':>10} {'tokens/s':>9} "
        f"{'errors':>6} {'rejected':>8} {'accepted tokens':>15}"
    )
    lines += ["", header]
    for name, counts in sorted(run["per_style"].items()):
        lines.append(
            f"{name:<20} {counts['documents']:>9,} {counts['chunks']:>7,} {counts['prompt_tokens']:>10,} "
            f"{counts['output_tokens']:>10,} {counts.get('tokens_per_second', 0):>9.1f} {counts['errors']:>6,} "
            f"{counts.get('rejected', 0):>8,} {counts.get('accepted_tokens', 0):>15,}"
        )
    lines.append(
        f"{'total':<20} {run['kept']:>9,} {run['rows']:>7,} {run['prompt_tokens']:>10,} "
        f"{run['output_tokens']:>10,} {run['tokens_per_second']:>9.1f} {run['errors']:>6,} "
        f"{run['rejected']:>8,} {run['accepted_tokens']:>15,}"
    )
    engine = run.get("engine") or {}
    lines += [
        "",
        f"time: {run['generation_seconds']:.1f} s generating, {run['wall_seconds']:.1f} s wall "
        f"(start-up of Ray and the engine included)",
        f"engine: dtype {engine.get('dtype', '?')}; CPU flags: {engine.get('cpu', '?')}",
        "",
        f"output folder, all runs: {overall['units']}/{units_total} units committed, "
        f"{overall['documents']:,} documents read, {overall['kept']:,} kept, {overall['chunks']:,} chunks, "
        f"{overall['rows']:,} rows, {overall['errors']:,} errors, {overall['rejected']:,} rejected, "
        f"{overall['output_tokens']:,} output tokens ({overall['accepted_tokens']:,} accepted)",
        *_counts(overall, "  "),
    ]
    return "\n".join(lines)
