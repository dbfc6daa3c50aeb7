"""The tidy curve table of a run: one row per evaluation, with domain, general and per-source losses, the domain
*training* loss (the same number of sequences, drawn from the domain set the run repeats), the domain epochs seen,
and the learning rate and schedule phase at that point."""

from __future__ import annotations

import csv
import io
import os
import time
from typing import Callable

from composer.core import Callback, State
from composer.loggers import Logger

from spt import storage

METRIC = "LanguageCrossEntropy"
#: The role of the evaluator over domain training sequences (see :func:`training.data.domain_train_evaluator`).
DOMAIN_TRAIN_ROLE = "domain_train"
#: The roles of a finetune's two halves of the domain held-out set (see :mod:`training.heldout_split`); each gets
#: a ``<role>_loss`` column.
SPLIT_ROLES = ("domain_validation", "domain_test")


def role_loss(losses: dict[str, float], roles: dict[str, str], role: str, weights: dict[str, int]) -> float | None:
    """Mean loss of the sources with ``role``, weighted by their evaluated samples; None when there are none."""
    names = [n for n, r in roles.items() if r == role and n in losses]
    total = sum(weights.get(n, 1) for n in names)
    return sum(losses[n] * weights.get(n, 1) for n in names) / total if names else None


class CurveTable(Callback):
    """After every evaluation, writes ``curves.csv``: tokens, domain_loss, general_loss, domain_train_loss,
    domain_epochs, phase, lr, loss_<source>...

    Rows are keyed by the batch they were measured at, so a resumed run that re-evaluates a step replaces the
    row instead of duplicating it. Only rank 0 writes, atomically, through :mod:`spt.storage` (local or S3).
    A finetune's :data:`SPLIT_ROLES` get a ``<role>_loss`` column each.

    Args:
        path: The CSV file (a local path or an ``s3://`` URL).
        roles: Role of each evaluator label (``domain``, ``general``, ``synthetic`` or :data:`DOMAIN_TRAIN_ROLE`).
        eval_samples: Sequences evaluated per label (weights of the per-role means).
        tokens_per_batch: Tokens per optimizer step (all workers).
        domain_epochs_per_token: Passes over the unique domain training tokens per trained token (the mix's
            domain share over its unique domain tokens); None when the mix has no domain source.
        phase_at: The schedule's phase at a fraction of the run done; None leaves ``phase`` empty.
        max_batches: Batches of the whole run (for the fraction done).
    """

    def __init__(self, path: str, roles: dict[str, str], eval_samples: dict[str, int], tokens_per_batch: int,
                 domain_epochs_per_token: float | None = None, phase_at: Callable[[float], str] | None = None,
                 max_batches: int | None = None):
        self.path = str(path)
        self.roles, self.eval_samples, self.tokens_per_batch = roles, eval_samples, tokens_per_batch
        self.domain_epochs_per_token, self.phase_at, self.max_batches = domain_epochs_per_token, phase_at, max_batches
        self.rows: dict[int, dict] = {}
        self.started = time.time()
        try:
            self.rows = {int(r["batch"]): r for r in csv.DictReader(io.StringIO(storage.read_text(self.path)))}
        except FileNotFoundError:
            pass

    def eval_after_all(self, state: State, logger: Logger) -> None:
        losses = {}
        for label, metrics in state.eval_metrics.items():
            if METRIC in metrics:
                losses[label] = float(metrics[METRIC].compute())
        batch = int(state.timestamp.batch)
        tokens = batch * self.tokens_per_batch
        row = {
            "batch": batch,
            "tokens": tokens,
            "domain_loss": role_loss(losses, self.roles, "domain", self.eval_samples),
            "general_loss": role_loss(losses, self.roles, "general", self.eval_samples),
            "domain_train_loss": role_loss(losses, self.roles, DOMAIN_TRAIN_ROLE, self.eval_samples),
            "domain_epochs": (round(tokens * self.domain_epochs_per_token, 4)
                              if self.domain_epochs_per_token is not None else None),
            # The rate and phase of the last step before this evaluation (the scheduler set that step's rate
            # from the progress before it).
            "phase": (self.phase_at(max(0, batch - 1) / self.max_batches)
                      if self.phase_at and self.max_batches else None),
            "lr": float(state.optimizers[0].param_groups[0]["lr"]) if state.optimizers else None,
            "train_loss": float(state.loss) if state.loss is not None and hasattr(state.loss, "item") else None,
            "wall_seconds": round(time.time() - self.started, 2),
        }
        row.update({f"{role}_loss": role_loss(losses, self.roles, role, self.eval_samples)
                    for role in SPLIT_ROLES if role in self.roles.values()})
        row.update({f"loss_{name}": value for name, value in sorted(losses.items())})
        self.rows[batch] = row
        # The same numbers to every logger destination (MLflow's, when tracking is on), with tokens as the step:
        # loss against tokens trained, as in the table.
        logger.log_metrics({k: v for k, v in row.items() if k not in ("batch", "tokens", "phase", "wall_seconds")
                            and isinstance(v, (int, float))}, step=tokens)
        if int(os.environ.get("RANK", "0")) == 0:
            self.write()

    def write(self) -> None:
        columns: list[str] = []
        for row in self.rows.values():
            columns += [c for c in row if c not in columns]
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        for batch in sorted(self.rows):
            writer.writerow(self.rows[batch])
        storage.write_text(self.path, text.getvalue())
