"""`spt finetune`: continue a pretraining run on the domain data (optionally replaying general data), stopping
early when the loss on a *validation* split of the domain held-out set stops improving, and reporting the loss
on a separate *test* split (see :mod:`training.heldout_split`) of the model early stopping chose.

The run owns its folder like a pretraining run (:func:`training.trainer.claim_run`); its fingerprint covers the
config, the base run's fingerprint and the mix's content.
"""

from __future__ import annotations

import copy
import time

from composer.core import Callback, State
from composer.loggers import Logger

from pipelines.mix.streams import train_dataset
from pipelines.mix.verify import check_mix
from spt import storage
from spt.config import FinetuneConfig, TrainConfig
from spt.errors import InputError
from spt.presets import count_parameters
from spt.storage import sha256_json
from training.curves import METRIC, SPLIT_ROLES
from training.heldout_split import HeldoutSplit, domain_split, mean_loss
from training.interpolate import load_model
from training.layout import RunLayout
from training.tracking import flat_params, log_artifacts, mix_params, open_run, run_artifacts
from training.trainer import RunPlan, claim_run, fingerprinted, mix_fingerprint, model_size, read_curves, read_mix_spec

STAGE = "finetune"
NOT_FINGERPRINTED = {"run_dir", "base_run", "mix", "tracking"}
#: Fields added after finetunes were made: left out of the fingerprint while unset, so those keep theirs.
FINGERPRINTED_WHEN_SET = ("base_tokens",)


def replay_spec(spec: dict, replay_fraction: float, samples: int) -> dict:
    """A copy of the mix spec whose train streams are the domain sources (share 1 − r of ``samples``) and the
    general sources (share r), each role split over its sources by their unique samples."""
    out = copy.deepcopy(spec)
    by_role = {"domain": [s for s in out["streams"] if s["role"] == "domain"],
               "general": [s for s in out["streams"] if s["role"] == "general"]}
    if not by_role["domain"]:
        raise InputError("finetune: the mix has no domain source to finetune on")
    if replay_fraction > 0 and not by_role["general"]:
        raise InputError(f"finetune.replay_fraction={replay_fraction}: the mix has no general source to replay")
    wanted = {"domain": samples - round(samples * replay_fraction), "general": round(samples * replay_fraction)}
    out["streams"] = []
    for role, streams in by_role.items():
        unique = sum(s["unique_samples"] for s in streams)
        left = wanted[role]
        for index, stream in enumerate(streams):
            share = left if index == len(streams) - 1 else round(wanted[role] * stream["unique_samples"] / unique)
            left -= share
            if share > 0:
                out["streams"].append({**stream, "choose": share})
    return out


def base_run(config: FinetuneConfig) -> tuple[TrainConfig, dict]:
    layout = RunLayout(config.base_run)
    base_config, summary = storage.read_json(layout.config), storage.read_json(layout.summary)
    if base_config is None or summary is None:
        raise InputError(f"finetune.base_run={config.base_run!r}: not a finished `spt train` run (no summary.json)")
    return TrainConfig.model_validate(base_config), summary


def base_model(config: FinetuneConfig) -> str:
    """The folder the finetune starts from: the base run's snapshot after ``base_tokens``, or its run_dir (its
    final model).

    Raises:
        InputError: the base run has no such snapshot (the message lists the ones it has).
    """
    if config.base_tokens is None:
        return config.base_run
    layout = RunLayout(config.base_run)
    if config.base_tokens not in layout.snapshot_tokens():
        present = ", ".join(str(t) for t in layout.snapshot_tokens()) or "none"
        raise InputError(f"finetune.base_tokens={config.base_tokens}: the base run has no snapshot after "
                         f"{config.base_tokens} tokens ({layout.snapshot(config.base_tokens)}); its snapshots: "
                         f"{present} (a run writes them for its snapshot_tokens)")
    return layout.snapshot(config.base_tokens)


def base_losses(base_summary: dict, base_curves: list[dict], base_tokens: int | None) -> dict:
    """The base model's tokens and losses: the final ones, or (a snapshot) its run's evaluation at those tokens
    (None when the run did not evaluate there)."""
    if base_tokens is None:
        return {"tokens": base_summary.get("tokens"), "domain_loss": base_summary.get("domain_loss"),
                "general_loss": base_summary.get("general_loss")}
    row = next((r for r in base_curves if int(r["tokens"]) == base_tokens), {})
    as_float = lambda key: float(row[key]) if row.get(key) not in (None, "") else None  # noqa: E731
    return {"tokens": base_tokens, "domain_loss": as_float("domain_loss"), "general_loss": as_float("general_loss")}


class BestValidation(Callback):
    """Early stopping on the validation split: after every evaluation, a validation loss lower than the best by
    more than ``min_delta`` makes this model the best (exported at once by ``save``); ``patience`` evaluations
    without one stop training. Its state is checkpointed, so a resumed finetune keeps its best."""

    def __init__(self, label: str, patience: int, min_delta: float, save):
        self.label, self.patience, self.min_delta, self.save = label, patience, min_delta, save
        self.best: float | None = None
        self.best_batch: int | None = None
        self.without_gain = 0

    def eval_after_all(self, state: State, logger: Logger) -> None:
        loss = float(state.eval_metrics[self.label][METRIC].compute())
        if self.best is None or loss < self.best - self.min_delta:
            self.best, self.best_batch, self.without_gain = loss, int(state.timestamp.batch), 0
            self.save(state.model)
            return
        self.without_gain += 1
        if self.without_gain >= self.patience:
            state.stop_training()

    def state_dict(self) -> dict:
        return {"best": self.best, "best_batch": self.best_batch, "without_gain": self.without_gain}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_batch, self.without_gain = state["best"], state["best_batch"], state["without_gain"]


def split_evaluators(source: str, split: HeldoutSplit, batch: int, eval_samples: int):
    """Evaluators over the first ``eval_samples`` samples of each split: labels, roles and sample counts."""
    from composer.core import Evaluator
    from torch.utils.data import DataLoader

    from training.data import collate_tokens  # expensive: imports torch

    evals, roles, counts = [], {}, {}
    for role, samples in zip(SPLIT_ROLES, (split.validation, split.test)):
        label = f"{source}_{role.removeprefix('domain_')}"
        rows = [{"tokens": row} for row in samples[:eval_samples]]
        evals.append(Evaluator(label=label, dataloader=DataLoader(rows, batch_size=batch, collate_fn=collate_tokens),
                               metric_names=[METRIC]))
        roles[label], counts[label] = role, len(rows)
    return evals, roles, counts


def finetune_plan(config: FinetuneConfig, base: TrainConfig, spec: dict) -> RunPlan:
    seq_len = int(spec["seq_len"])
    tokens_per_batch = config.global_batch_size * seq_len
    max_batches = config.duration_tokens // tokens_per_batch
    if max_batches < 1:
        raise InputError(f"finetune.duration_tokens={config.duration_tokens}: smaller than one batch of "
                         f"{tokens_per_batch} tokens")
    size = model_size(base)
    interval = max(1, min(max_batches, config.eval_every_tokens // tokens_per_batch))
    return RunPlan(seq_len, tokens_per_batch, max_batches, interval, interval, config.global_batch_size,
                   config.global_batch_size, size, count_parameters(size, int(spec["vocab_size"])))


def run_finetune(config: FinetuneConfig, force: bool = False) -> dict:
    """Finetunes (or resumes, or finds finished) the run in ``config.run_dir``; returns its summary.

    The summary's ``test_domain_loss`` is the test split's loss of the model with the best validation loss
    (the one exported to ``model/``); ``best_validation_loss`` is what early stopping watched.

    Raises:
        InputError: the base run is unfinished, the mix differs from what `spt mix build` wrote, the domain
            held-out set cannot be split, or the run folder is refused (see :func:`training.trainer.claim_run`);
            nothing is written then.
    """
    base, base_summary = base_run(config)
    start = base_model(config)
    spec = read_mix_spec(config.mix or base.mix)
    check_mix(spec)
    plan = finetune_plan(config, base, spec)
    source, split = domain_split(spec, config.test_fraction)
    layout = RunLayout(storage.check(config.run_dir, "finetune.run_dir"))
    parts = {"config": sha256_json(fingerprinted(config.model_dump(mode="json", exclude=NOT_FINGERPRINTED),
                                                 FINGERPRINTED_WHEN_SET)),
             "base_run": str(base_summary.get("fingerprint")), "mix": mix_fingerprint(spec)}
    fingerprint = sha256_json(parts)
    done = claim_run(layout, STAGE, fingerprint, parts, where="finetune.run_dir", force=force, autoresume=True,
                     config=config.model_dump(mode="json"))
    if done is not None:
        return done
    tracking = track_finetune(config, spec, layout, fingerprint)
    began = time.time()
    trained, best, pretrained = _fit(config, spec, plan, layout, source, split, start, tracking)
    started_from = base_losses(base_summary, read_curves(RunLayout(config.base_run).curves), config.base_tokens)
    summary = finetune_summary(layout, started_from, fingerprint, split, best, trained, plan, pretrained)
    summary["wall_seconds"] = round(time.time() - began, 1)
    storage.write_json(layout.summary, summary)

    log_artifacts(tracking, run_artifacts(layout))
    return summary


def track_finetune(config: FinetuneConfig, spec: dict, layout: RunLayout, fingerprint: str):
    """The finetune's MLflow run (None when tracking is off): a child of its base run's when both are tracked in
    one store (a sweep's cells), with the resolved config and the mix plan as params."""
    params = {**flat_params(config.model_dump(mode="json"), "config"), **mix_params(spec)}
    return open_run(config.tracking, layout, name=layout.name, params=params, where="finetune.run_dir",
                    tags={"spt.stage": STAGE, "spt.run_dir": layout.root, "spt.fingerprint": fingerprint,
                          "spt.base_run": config.base_run}, parent=RunLayout(config.base_run))


def _fit(config: FinetuneConfig, spec: dict, plan: RunPlan, layout: RunLayout, source: str, split: HeldoutSplit,
         start: str, tracking=None):
    """Trains with early stopping; returns (batches trained, the best batch, the base model's split losses)."""
    from composer.metrics.nlp import LanguageCrossEntropy
    from composer.models import HuggingFaceModel
    from torch.utils.data import DataLoader

    from training.composer_run import compose_trainer  # expensive: imports composer
    from training.data import collate_tokens, evaluators  # expensive: imports torch
    from training.run_files import RunFiles, export_model  # expensive: imports composer

    batch = config.global_batch_size
    replay = replay_spec(spec, config.replay_fraction, plan.max_batches * batch)
    data = train_dataset(replay, shuffle_seed=config.seed, batch_size=batch, num_canonical_nodes=1)
    loader = DataLoader(data, batch_size=batch, collate_fn=collate_tokens, drop_last=True)
    # The domain held-out set is evaluated as its two splits; the other sources' held-out sets as they are.
    others = {**spec, "eval": [e for e in spec["eval"] if e["role"] != "domain"]}
    evals, roles, eval_samples = evaluators(others, batch, config.eval_samples)
    split_evals, split_roles, split_samples = split_evaluators(source, split, batch, config.eval_samples)
    evals, roles, eval_samples = evals + split_evals, {**roles, **split_roles}, {**eval_samples, **split_samples}
    pretrained_model = load_model(start)
    pretrained = {role: mean_loss(pretrained_model, samples[:config.eval_samples])
                  for role, samples in zip(SPLIT_ROLES, (split.validation, split.test))}
    model = HuggingFaceModel(pretrained_model.train(), shift_labels=True, use_logits=True,
                             eval_metrics=[LanguageCrossEntropy()])
    stopper = BestValidation(next(k for k, v in split_roles.items() if v == SPLIT_ROLES[0]), config.patience,
                             config.min_delta, save=lambda m: export_model(m, layout.model, spec))
    files = RunFiles(layout)
    try:
        trainer = compose_trainer(layout=layout, files=files, model=model, train_loader=loader, evals=evals,
                                  roles=roles, eval_samples=eval_samples, plan=plan, optimizer=config.optimizer,
                                  schedule=config.schedule, device=config.device, precision="auto",
                                  seed=config.seed, autoresume=True, callbacks=[stopper], tracking=tracking)
        if int(trainer.state.timestamp.batch) < plan.max_batches:  # killed after its last checkpoint: done
            trainer.fit()
        trained = int(trainer.state.timestamp.batch)
        trainer.close()
    finally:
        files.close()
    return trained, stopper.best_batch, pretrained


def finetune_summary(layout: RunLayout, started_from: dict, fingerprint: str, split: HeldoutSplit,
                     best_batch: int, trained_batches: int, plan: RunPlan, pretrained: dict) -> dict:
    """The numbers of a finetune, each on the split it names; the row of the best validation loss is the one
    whose model was exported. ``started_from``: the tokens and losses of the model it started from
    (:func:`base_losses`)."""
    rows = read_curves(layout.curves)
    best = next(r for r in rows if int(r["batch"]) == best_batch)
    as_float = lambda key: float(best[key]) if best.get(key) not in (None, "") else None  # noqa: E731
    return {
        "fingerprint": fingerprint,
        "base_tokens": started_from["tokens"],
        "pretrained_domain_loss": started_from["domain_loss"],
        "pretrained_general_loss": started_from["general_loss"],
        "pretrained_validation_loss": pretrained[SPLIT_ROLES[0]],
        "pretrained_test_loss": pretrained[SPLIT_ROLES[1]],
        "best_validation_loss": as_float("domain_validation_loss"),
        "test_domain_loss": as_float("domain_test_loss"),
        "general_loss_at_best": as_float("general_loss"),
        "best_tokens": int(best["tokens"]),
        "trained_tokens": trained_batches * plan.tokens_per_batch,
        "stopped_early": trained_batches < plan.max_batches,
        "evaluations": len(rows),
        "split": split.describe(),
        "reused": False,
    }

