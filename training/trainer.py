"""A resolved train config becomes a Composer Trainer; each function is short enough to read at once.

A run owns its folder (see :mod:`training.layout`): :func:`start_run` claims it with a marker that holds the
fingerprint of what shapes the result (the config without where and how it runs, and the mix's content), so a
finished run is reused only for the same fingerprint, an unfinished one resumes only from its own checkpoints,
and a folder made for another config or another mix is refused (or, with ``force``, restarted from scratch).
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field

from pipelines.mix.streams import read_spec
from pipelines.mix.verify import check_mix
from spt import storage
from spt.config import TrainConfig
from spt.errors import InputError
from spt.presets import PRESETS, LlamaSize, count_parameters, llama_config
from spt.storage import ownership, sha256_json
from training.layout import RunLayout
from training.snapshots import snapshot_batches, snapshot_problem
from training.tracking import TrackedRun, flat_params, log_artifacts, mix_params, open_run, run_artifacts

STAGE = "train"
#: Fields that say where or how a run runs, not what it computes: left out of its fingerprint. (Workers split the
#: same global batch; the mix is fingerprinted by its content, not its path.)
NOT_FINGERPRINTED = {"autoresume", "num_workers", "ray", "dataloader_workers", "run_dir", "mix",
                     "checkpoint_every_tokens", "tracking"}
#: Fields added after runs were made: left out of the fingerprint while unset, so those runs keep theirs.
FINGERPRINTED_WHEN_SET = ("snapshot_tokens",)


@dataclass(frozen=True)
class RunPlan:
    """What a train config means in steps: every interval in batches, derived from tokens."""

    seq_len: int
    tokens_per_batch: int
    max_batches: int
    eval_interval_batches: int
    checkpoint_interval_batches: int
    per_worker_batch: int
    microbatch: int
    size: LlamaSize
    params: int
    #: batch -> tokens trained then, of each snapshot (see :mod:`training.snapshots`)
    snapshots: dict[int, int] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return self.max_batches * self.tokens_per_batch


def read_mix_spec(location: str) -> dict:
    """The streams spec of a built mix (local or ``s3://``).

    Raises:
        InputError: it is missing or not a streams spec (the message names the location).
    """
    return read_spec(location)


def mix_fingerprint(spec: dict) -> str:
    """The content fingerprint of a built mix: the one `spt mix build` keeps in the mix folder's marker (its
    config and the content of every input), else the streams spec's own content id."""
    marker = ownership.read_marker(storage.parent(spec["path"]))
    if marker and marker.get("stage") == "mix" and marker.get("fingerprint"):
        return str(marker["fingerprint"])
    return storage.content_id(spec["path"])


def run_fingerprint(config: TrainConfig, spec: dict) -> tuple[str, dict[str, str]]:
    """(fingerprint, its parts ``config`` and ``mix``) of what a run computes."""
    parts = {"config": sha256_json(fingerprinted(config.model_dump(mode="json", exclude=NOT_FINGERPRINTED),
                                                 FINGERPRINTED_WHEN_SET)),
             "mix": mix_fingerprint(spec)}
    return sha256_json(parts), parts


def fingerprinted(data: dict, when_set: tuple[str, ...]) -> dict:
    """``data`` without the fields of ``when_set`` that are None."""
    return {k: v for k, v in data.items() if k not in when_set or v is not None}


def model_size(config: TrainConfig) -> LlamaSize:
    base = PRESETS[config.model.preset].to_dict() if config.model.preset else {}
    explicit = config.model.model_dump(exclude={"preset"}, exclude_none=True)
    size = LlamaSize(**{**base, **explicit})
    if size.d_model % size.n_heads or size.n_heads % size.n_kv_heads:
        raise InputError(
            f"train.model: d_model={size.d_model} must divide by n_heads={size.n_heads}, "
            f"and n_heads by n_kv_heads={size.n_kv_heads}"
        )
    return size


def plan_run(config: TrainConfig, spec: dict) -> RunPlan:
    """Turns token quantities into batch counts; refuses a run shorter than one batch."""
    seq_len = int(spec["seq_len"])
    tokens_per_batch = config.global_batch_size * seq_len
    duration = config.duration_tokens or int(spec["total_tokens"])
    max_batches = duration // tokens_per_batch
    if max_batches < 1:
        raise InputError(
            f"train.duration_tokens={duration}: smaller than one batch of {tokens_per_batch} tokens "
            f"(global_batch_size={config.global_batch_size} x seq_len={seq_len})"
        )
    per_worker = config.global_batch_size // config.num_workers
    size = model_size(config)
    problems = [p for t in config.snapshot_tokens or [] if (p := snapshot_problem(
        t, tokens_per_batch, max_batches, config.schedule.warmup_fraction))]
    if problems:
        raise InputError(f"train.snapshot_tokens={config.snapshot_tokens}: {'; '.join(problems)}")
    return RunPlan(
        seq_len=seq_len,
        tokens_per_batch=tokens_per_batch,
        max_batches=max_batches,
        eval_interval_batches=max(1, min(max_batches, config.eval_every_tokens // tokens_per_batch)),
        checkpoint_interval_batches=max(1, (config.checkpoint_every_tokens or duration) // tokens_per_batch),
        per_worker_batch=per_worker,
        microbatch=config.microbatch_size or per_worker,
        size=size,
        params=count_parameters(size, int(spec["vocab_size"])),
        snapshots=snapshot_batches(config.snapshot_tokens or [], tokens_per_batch),
    )


@dataclass(frozen=True)
class RunStart:
    """A run whose folder is claimed: its mix, plan, layout and fingerprint; ``done`` is the summary of a finished
    run with the same fingerprint (nothing to train then); ``tracking`` the MLflow run it logs into (None: off)."""

    spec: dict
    plan: RunPlan
    layout: RunLayout
    fingerprint: str
    done: dict | None = None
    tracking: TrackedRun | None = None


def claim_run(layout: RunLayout, stage: str, fingerprint: str, parts: dict, *, where: str, force: bool,
              autoresume: bool, config: dict) -> dict | None:
    """Claims a run folder for ``stage`` and ``fingerprint``; returns the summary when the run is finished.

    A folder of another fingerprint is refused (``force``: its files are deleted first, so nothing resumes from
    them); without ``autoresume`` the folder's unfinished state is deleted too. Checked before anything is written.

    Raises:
        InputError: the folder is not writable, not spt's, another stage's, or (without ``force``) this stage's
            output for another fingerprint; the message names what changed.
    """
    claim = ownership.check_claim(layout.root, stage, fingerprint, where=where, parts=parts, force=force)
    if claim.state == "same":
        done = storage.read_json(layout.summary)
        if done and done.get("fingerprint") == fingerprint:
            return {**done, "reused": True}
    layout.check_replaceable()  # exports replace model/ and snapshots whole: refuse foreign files before training
    if claim.state == "replaced" or not autoresume:
        layout.clear()
    ownership.claim(layout.root, stage, fingerprint, where=where, parts=parts, force=force)
    storage.write_json(layout.config, config)
    return None


def start_run(config: TrainConfig, force: bool = False) -> RunStart:
    """Reads and checks the mix, plans the run and claims ``run_dir`` (see :func:`claim_run`).

    Raises:
        InputError: the mix differs from what `spt mix build` wrote (:func:`pipelines.mix.verify.check_mix`), or
            the run folder is refused; nothing is written then.
    """
    spec = read_mix_spec(config.mix)
    check_mix(spec)
    plan = plan_run(config, spec)
    layout = RunLayout(storage.check(config.run_dir, "train.run_dir"))
    fingerprint, parts = run_fingerprint(config, spec)
    done = claim_run(layout, STAGE, fingerprint, parts, where="train.run_dir", force=force,
                     autoresume=config.autoresume, config=config.model_dump(mode="json"))
    tracking = None if done is not None else track_run(config, spec, plan, layout, fingerprint)
    return RunStart(spec, plan, layout, fingerprint, done, tracking)


def track_run(config: TrainConfig, spec: dict, plan: RunPlan, layout: RunLayout, fingerprint: str):
    """Opens the run's MLflow run (None when tracking is off) with the resolved config, the mix plan (δ, epochs
    and tokens per source) and the run plan as params."""
    params = {**flat_params(config.model_dump(mode="json"), "config"), **mix_params(spec),
              "plan.batches": plan.max_batches, "plan.tokens": plan.tokens, "plan.params": plan.params,
              "plan.tokens_per_batch": plan.tokens_per_batch}
    return open_run(config.tracking, layout, name=layout.name, params=params, where="train.run_dir",
                    tags={"spt.stage": STAGE, "spt.run_dir": layout.root, "spt.fingerprint": fingerprint})


def build_model(plan: RunPlan, spec: dict, seed: int):
    """A randomly initialized Llama in Composer's HuggingFaceModel, with token cross-entropy metrics."""
    import torch
    from composer.metrics.nlp import LanguageCrossEntropy
    from composer.models import HuggingFaceModel
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    hf_config = llama_config(plan.size, int(spec["vocab_size"]), plan.seq_len, int(spec["eos_token_id"]))
    model = LlamaForCausalLM(hf_config)
    return HuggingFaceModel(model, shift_labels=True, eval_metrics=[LanguageCrossEntropy()], use_logits=True)


def build_trainer(config: TrainConfig, start: RunStart, files, world_size: int = 1, callbacks=()):
    """The Composer Trainer for a pretraining run of ``start.plan`` on the mix ``start.spec``."""
    from training.composer_run import compose_trainer  # expensive: imports composer
    from training.curves import DOMAIN_TRAIN_ROLE  # expensive: imports composer
    # expensive: imports torch
    # expensive: imports torch
    from training.data import domain_epochs_per_token, domain_train_evaluator, evaluators, train_dataloader

    spec, plan = start.spec, start.plan
    evals, roles, eval_samples = evaluators(spec, plan.per_worker_batch, config.eval_samples, world_size)
    train_sample = domain_train_evaluator(spec, plan.per_worker_batch, eval_samples, world_size)
    if train_sample is not None:
        evaluator, label, used = train_sample
        evals.append(evaluator)
        roles[label], eval_samples[label] = DOMAIN_TRAIN_ROLE, used
    return compose_trainer(
        layout=start.layout,
        files=files,
        model=build_model(plan, spec, config.seed),
        train_loader=train_dataloader(spec, plan.per_worker_batch, config.seed, config.dataloader_workers),
        evals=evals,
        roles=roles,
        eval_samples=eval_samples,
        plan=plan,
        optimizer=config.optimizer,
        schedule=config.schedule,
        device=config.device,
        precision=config.precision,
        seed=config.seed,
        autoresume=config.autoresume,
        deterministic=config.deterministic,
        callbacks=callbacks,
        domain_epochs_per_token=domain_epochs_per_token(spec),
        tracking=start.tracking,
    )


def train(config: TrainConfig, start: RunStart, world_size: int = 1, rank: int = 0) -> dict:
    """Trains (or resumes) a claimed run; rank 0 exports the model and writes ``summary.json`` last.

    Returns:
        The summary: final domain/general losses (the last evaluation), tokens, parameters, wall time, the batch
        the run started from (a resumed run's checkpoint) and the batches this process trained.
    """
    from training.run_files import BatchCounter, RunFiles, Snapshots, export_model  # expensive: imports composer

    files, counter = RunFiles(start.layout), BatchCounter()
    snapshots = Snapshots(start.layout, start.plan.snapshots, start.spec)
    try:
        trainer = build_trainer(config, start, files, world_size, callbacks=[counter, snapshots])
        start_batch = int(trainer.state.timestamp.batch)
        began = time.time()
        if start_batch < start.plan.max_batches:  # a run killed after its last checkpoint has nothing to train
            trainer.fit()
        trainer.close()  # waits for checkpoint uploads: the summary must not come before them
        summary = _summary(config, start, time.time() - began, world_size, start_batch, counter.batches)
        if rank == 0:
            check_snapshots(start)
            export_model(trainer.state.model, start.layout.model, start.spec)
            storage.write_json(start.layout.summary, summary)
            log_artifacts(start.tracking, run_artifacts(start.layout))
    finally:
        files.close()
    return summary


def check_snapshots(start: RunStart) -> None:
    """Refuses to finish a run whose snapshot folders are not all there (deleted after the run passed them: a
    resumed run does not train those batches again).

    Raises:
        InputError: naming the missing snapshots and the way out.
    """
    missing = sorted(set(start.plan.snapshots.values()) - set(start.layout.snapshot_tokens()))
    if missing:
        raise InputError(f"train.run_dir={start.layout.root!r}: the snapshots after {missing} tokens are missing "
                         "(removed after the run passed them); rerun with autoresume=false to train again")


def run_training(config: TrainConfig, world_size: int = 1, rank: int = 0, force: bool = False) -> dict:
    """Trains (or resumes, or finds finished) the run in ``config.run_dir`` in this process; returns its summary."""
    start = start_run(config, force)
    if start.done is not None:
        return start.done
    return train(config, start, world_size, rank)


def read_curves(location: str) -> list[dict]:
    """The rows of a run's curves.csv (empty when there is none yet)."""
    try:
        return list(csv.DictReader(io.StringIO(storage.read_text(location))))
    except FileNotFoundError:
        return []


def _as_float(value) -> float | None:
    return float(value) if value not in (None, "") else None


def _summary(config: TrainConfig, start: RunStart, seconds: float, world_size: int, start_batch: int,
             trained_batches: int) -> dict:
    import torch

    rows = read_curves(start.layout.curves)
    last = rows[-1] if rows else {}
    plan = start.plan
    return {
        "fingerprint": start.fingerprint,
        "run_dir": start.layout.root,
        "params": plan.params,
        "model": json.loads(json.dumps(plan.size.to_dict())),
        "tokens": plan.tokens,
        "batches": plan.max_batches,
        "snapshot_tokens": sorted(plan.snapshots.values()),
        "start_batch": start_batch,
        "trained_batches": trained_batches,
        "global_batch_size": config.global_batch_size,
        "world_size": world_size,
        "domain_loss": _as_float(last.get("domain_loss")),
        "general_loss": _as_float(last.get("general_loss")),
        "losses": {k[5:]: _as_float(v) for k, v in last.items() if k.startswith("loss_")},
        "wall_seconds": round(seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "reused": False,
    }
