"""Snapshots: the weights of a constant-rate run after T tokens, which are the weights of a T-token run.

The paper reads the fine-tune gain at several budgets from one run per δ: a run at a constant learning rate
exports its model at each budget (``<run_dir>/snapshots/T<tokens>/``, see :mod:`training.layout`), and each
snapshot is finetuned as if it were a shorter run. The rules below say when a snapshot is such a run; the train
config (``snapshot_tokens``) and the sweep (``finetune_at``) both check them, each naming its own field.
"""

from __future__ import annotations


def snapshot_problem(tokens: int, tokens_per_batch: int, max_batches: int, warmup_fraction: float) -> str | None:
    """Why a snapshot after ``tokens`` (rounded down to whole batches) is not a shorter run, or None.

    Args:
        tokens: The snapshot's tokens as asked for.
        tokens_per_batch: Tokens of one optimizer step.
        max_batches: The run's batches.
        warmup_fraction: The warmup's share of the run (the rate is not yet constant inside it).
    """
    batches = tokens // tokens_per_batch
    if batches < 1:
        return f"{tokens} is smaller than one batch of {tokens_per_batch} tokens"
    if batches > max_batches:
        return f"{tokens} is beyond the run's {max_batches * tokens_per_batch} tokens"
    if batches < warmup_fraction * max_batches:
        return (f"{tokens} falls inside warmup (the first {warmup_fraction:g} of the run's "
                f"{max_batches * tokens_per_batch} tokens), where the rate is not yet constant")
    return None


def snapshot_batches(tokens: list[int], tokens_per_batch: int) -> dict[int, int]:
    """The batch after which each snapshot is taken, with the tokens trained then (its folder's name)."""
    return {t // tokens_per_batch: (t // tokens_per_batch) * tokens_per_batch for t in tokens}
