"""What a pilot sweep will show before it runs: per cell the domain epochs it reaches, the evaluations a fit can
use, and its predicted wall time from a measured throughput; and warnings when the design cannot inform the law.

The SPT law's overfitting term needs cells that repeat the domain set many times (the held-out domain loss turns
upward only after tens of epochs at small scale), it has 12 parameters that 4 fractions do not pin down, and the
token dependence is read off evaluations along each run, which are the losses of shorter runs only while the
learning rate is constant (not along a cosine schedule).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

from pipelines.mix.plan import make_plan
from pipelines.mix.tokens import tokenizer_info
from spt.config import FinetuneConfig, MixConfig, SweepConfig, TrainConfig, load_config
from spt.errors import InputError
from spt.presets import PRESETS, llama_config
from sweeps.cells import cell_threads, cells, load_bases
from sweeps.layout import SweepLayout
from sweeps.tables import read_results

#: Domain epochs that the largest δ should pass, so the overfitting term has something to fit.
MIN_MAX_EPOCHS = 16.0
#: Distinct domain fractions, 0 included, below which the law's shape in δ is weakly determined.
MIN_FRACTIONS = 5
#: Evaluations per cell past warmup below which a cell adds little to the fit.
MIN_FITTED_EVALUATIONS = 4
#: Training steps timed by the calibration, after untimed ones that warm the allocator up.
CALIBRATION_STEPS, CALIBRATION_WARMUP = 6, 2
#: Seconds a cell spends outside training steps and evaluations (a new Python process importing torch and
#: Composer, opening the shards, Composer's own bookkeeping, writing the checkpoint and the model). Measured on a
#: 2-core AVX-512 machine, 2026-11-30: quickstart cells took 36-38 s, of which the calibration accounted for 23 s;
#: later, with six cells, 43-49 s (mean 46) of which it accounted for 28 s (the plan said 4.3 min, the sweep took 4.8).
CELL_OVERHEAD_SECONDS = 18.0


@dataclass
class CellPlan:
    """One cell as planned."""

    run_id: str
    domain_fraction: float
    preset: str
    total_tokens: int
    seed: int
    domain_epochs: float | None = None
    unique_domain_tokens: int | None = None
    evaluations: int = 0
    fitted_evaluations: int = 0
    predicted_seconds: float | None = None
    #: an upper bound of its finetunes' wall time (each runs its full duration_tokens unless it stops early)
    finetune_seconds_at_most: float | None = None
    problem: str | None = None
    #: pretraining tokens of each model the cell finetunes (its snapshots and its final model), ascending
    finetune_tokens: list[int] = field(default_factory=list)


@dataclass
class PilotPlan:
    """The whole sweep as planned: its cells, how their times were predicted, and warnings."""

    cells: list[CellPlan]
    throughput_source: str
    max_concurrent: int
    warnings: list[str] = field(default_factory=list)

    @property
    def predicted_seconds(self) -> float | None:
        """Wall time of the sweep: the cells' times spread over ``max_concurrent`` slots (None if unknown)."""
        return self._spread([c.predicted_seconds for c in self.cells if c.problem is None])

    @property
    def finetune_seconds_at_most(self) -> float | None:
        """Wall time the cells' finetunes add at most, spread like the cells (None if unknown or none)."""
        return self._spread([c.finetune_seconds_at_most for c in self.cells if c.problem is None and c.finetune_tokens])

    def _spread(self, times: list[float | None]) -> float | None:
        """Seconds of work spread over ``max_concurrent`` slots (None when there is none or one is unknown)."""
        if not times or None in times:
            return None
        return sum(times) / min(self.max_concurrent, len(times))


def evaluation_batches(max_batches: int, interval: int) -> list[int]:
    """Batches after which a run evaluates: every ``interval`` batches, and at the end."""
    points = list(range(interval, max_batches + 1, interval))
    return points if points and points[-1] == max_batches else [*points, max_batches]


def cell_mix(config: SweepConfig, domain_index: int, cell) -> MixConfig:
    overrides = [f"sources[{domain_index}].fraction={cell.domain_fraction}", f"total_tokens={cell.total_tokens}"]
    if cell.synthetic_share is not None:
        overrides.append(f"sources[{domain_index}].synthetic_share={cell.synthetic_share}")
    return load_config(config.mix, overrides, kind="mix")


def plan_cell(config: SweepConfig, train: TrainConfig, cell, domain_index: int) -> CellPlan:
    """The cell's domain epochs (from the mix's token counts) and its evaluations (all, and past warmup)."""
    planned = CellPlan(cell.run_id, cell.domain_fraction, cell.preset, cell.total_tokens, cell.seed)
    try:
        mix_plan = make_plan(cell_mix(config, domain_index, cell))
    except InputError as exc:
        planned.problem = "; ".join(exc.problems)
        return planned
    domain = mix_plan.sources[domain_index]
    planned.domain_epochs = mix_plan.epochs(domain)
    planned.unique_domain_tokens = mix_plan.unique_samples(domain) * mix_plan.seq_len  # whole samples, as epochs
    tokens_per_batch = train.global_batch_size * mix_plan.seq_len
    max_batches = cell.total_tokens // tokens_per_batch
    if max_batches < 1:
        planned.problem = f"total_tokens={cell.total_tokens} is less than one batch of {tokens_per_batch} tokens"
        return planned
    interval = max(1, min(max_batches, train.eval_every_tokens // tokens_per_batch))
    points = evaluation_batches(max_batches, interval)
    if config.finetune:
        planned.finetune_tokens = [*cell.finetune_tokens, max_batches * tokens_per_batch]
    planned.evaluations = len(points)
    # As the curve table marks phases: by the progress before the last step to each evaluation.
    planned.fitted_evaluations = sum((b - 1) / max_batches >= train.schedule.warmup_fraction for b in points)
    return planned


def measured_seconds_per_token(output_dir: str) -> dict[str, float]:
    """Wall seconds per trained token of the finished cells in a sweep folder (local or S3), per preset (the
    median)."""
    try:
        results = read_results(SweepLayout(output_dir))
    except FileNotFoundError:
        return {}
    ok = results[(results["status"] == "ok") & (results["wall_seconds"] > 0) & (results["tokens"] > 0)]
    return {preset: statistics.median(rows["wall_seconds"] / rows["tokens"]) for preset, rows in ok.groupby("preset")}


def calibrate(train: TrainConfig, preset: str, seq_len: int, vocab_size: int, threads: int) -> tuple[float, float]:
    """Times a few training steps and evaluation passes of ``preset`` in this process, with ``threads`` threads.

    Returns:
        (training tokens per second, evaluation tokens per second)
    """
    import torch
    from transformers import LlamaForCausalLM

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = LlamaForCausalLM(llama_config(PRESETS[preset], vocab_size, seq_len, 0)).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=train.optimizer.lr)
        ids = torch.randint(0, vocab_size, (train.global_batch_size, seq_len))
        times = []
        for _ in range(CALIBRATION_WARMUP + CALIBRATION_STEPS):
            start = time.perf_counter()
            model(input_ids=ids, labels=ids).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - start)
        with torch.no_grad():
            model.eval()
            start = time.perf_counter()
            for _ in range(CALIBRATION_STEPS):
                model(input_ids=ids)
            forward = (time.perf_counter() - start) / CALIBRATION_STEPS
    finally:
        torch.set_num_threads(previous)
    tokens = ids.numel()
    return tokens / statistics.median(times[CALIBRATION_WARMUP:]), tokens / forward


def eval_tokens_per_evaluation(train: TrainConfig, mix: MixConfig) -> int:
    """Tokens one evaluation reads: ``eval_samples`` sequences of each held-out source and of the domain's
    training sample (an upper bound: small held-out sets have fewer)."""
    sources = sum(1 for s in mix.sources if s.fraction != 0 and (s.heldout_paths or s.heldout_fraction)) + 1
    return sources * train.eval_samples * mix.seq_len


def plan_sweep(config: SweepConfig, calibrate_when_unmeasured: bool = True) -> PilotPlan:
    """Plans every cell of the sweep and predicts its wall time.

    Times come from the sweep's own finished cells when its output folder has some (median wall seconds per
    token, per preset; they include evaluations and start-up), else from a short in-process calibration of each
    preset (training steps and forward passes at the cell's threads) plus a fixed start-up cost per cell.

    Args:
        config: The sweep.
        calibrate_when_unmeasured: Calibrate presets that no finished cell measured; False leaves their times
            unknown.
    """
    mix, train, domain_index = load_bases(config)
    planned = [plan_cell(config, train, cell, domain_index) for cell in cells(config, mix, train)]
    measured = measured_seconds_per_token(config.output_dir)
    finetune_config = load_config(config.finetune, ["base_run=unused"], kind="finetune") if config.finetune else None
    sources = []
    for preset in sorted({c.preset for c in planned}):
        if preset in measured:
            per_token = measured[preset]
            sources.append(f"{preset}: {1 / per_token:,.0f} tokens/s (wall, with evaluations and start-up) measured "
                           f"by finished cells in {SweepLayout(config.output_dir).results}")
            predict = lambda c, k=per_token: c.total_tokens * k  # noqa: E731
            finetune = None  # (the finished cells' wall seconds are their training's)
        elif calibrate_when_unmeasured:
            threads = cell_threads(config.resources.num_cpus)
            train_tps, eval_tps = calibrate(train, preset, mix.seq_len, vocab_size(mix), threads)
            eval_tokens = eval_tokens_per_evaluation(train, mix)
            sources.append(f"{preset}: {train_tps:,.0f} training and {eval_tps:,.0f} evaluation tokens/s from a "
                           f"{CALIBRATION_STEPS}-step calibration at {threads} threads, plus "
                           f"{CELL_OVERHEAD_SECONDS:g} s start-up per cell")
            predict = lambda c, t=train_tps, e=eval_tps, n=eval_tokens: (  # noqa: E731
                CELL_OVERHEAD_SECONDS + c.total_tokens / t + c.evaluations * n / e)
            finetune = finetune_seconds(finetune_config, mix, train_tps, eval_tps) if finetune_config else None
        else:
            sources.append(f"{preset}: not measured (no finished cells, calibration off)")
            continue
        for cell in planned:
            if cell.preset == preset and cell.problem is None:
                cell.predicted_seconds = predict(cell)
                if finetune is not None and cell.finetune_tokens:
                    cell.finetune_seconds_at_most = len(cell.finetune_tokens) * finetune
    plan = PilotPlan(planned, "; ".join(sources), config.max_concurrent)
    plan.warnings = design_warnings(planned, train)
    return plan


def finetune_seconds(finetune: FinetuneConfig, mix: MixConfig, train_tps: float, eval_tps: float) -> float:
    """An upper bound of one finetune's wall time: start-up, its whole ``duration_tokens`` and every evaluation
    (it stops earlier when the domain loss stalls)."""
    evaluations = -(-finetune.duration_tokens // finetune.eval_every_tokens) + 1  # and one before training
    eval_tokens = 3 * finetune.eval_samples * mix.seq_len  # validation, test and general replay, at most
    return CELL_OVERHEAD_SECONDS + finetune.duration_tokens / train_tps + evaluations * eval_tokens / eval_tps


def vocab_size(mix: MixConfig) -> int:
    return tokenizer_info(mix.tokenizer).vocab_size


def design_warnings(cells: list[CellPlan], train: TrainConfig) -> list[str]:
    """Why the pilot would not inform the SPT law, one line each (empty when nothing is wrong)."""
    warnings = []
    fractions = sorted({c.domain_fraction for c in cells})
    if len(fractions) < MIN_FRACTIONS:
        warnings.append(f"only {len(fractions)} domain fractions ({', '.join(f'{f:g}' for f in fractions)}): the "
                        f"SPT law has 12 parameters; sweep at least {MIN_FRACTIONS}, 0 included")
    if 0.0 not in fractions:
        warnings.append("no cell has domain_fraction 0: the law's no-domain baseline (and the compute multiplier) "
                        "would be extrapolated")
    epochs = [c.domain_epochs for c in cells if c.domain_epochs is not None]
    if epochs and max(epochs) < MIN_MAX_EPOCHS:
        warnings.append(f"no cell passes {MIN_MAX_EPOCHS:g} domain epochs (the most is {max(epochs):.3g}): the "
                        f"held-out domain loss will not turn upward, so the law's overfitting term has nothing to "
                        f"fit; raise the largest δ or the budget, or use a smaller domain set")
    if train.schedule.kind == "cosine":
        warnings.append("schedule.kind=cosine: evaluations along a cosine schedule are not the losses of shorter "
                        "runs, so the budgets read off them are not valid points; use schedule.kind=constant")
    elif train.schedule.kind == "wsd":
        warnings.append(f"schedule.kind=wsd: evaluations in the final decay "
                        f"({train.schedule.decay_fraction:g} of each run) are not the losses of shorter runs")
    few = [c.run_id for c in cells if c.problem is None and c.fitted_evaluations < MIN_FITTED_EVALUATIONS]
    if few:
        warnings.append(f"{len(few)} cell(s) have fewer than {MIN_FITTED_EVALUATIONS} evaluations past warmup "
                        f"(e.g. {few[0]}): evaluate more often or shorten warmup")
    warnings += [f"cell {c.run_id}: {c.problem}" for c in cells if c.problem]
    return warnings


def format_plan(plan: PilotPlan) -> str:
    """The plan as a table, the throughput it used, the predicted total and the warnings."""
    finetunes = any(c.finetune_tokens for c in plan.cells)
    rows = [f"{'cell':<36} {'δ':>6} {'tokens':>10} {'domain epochs':>13} {'evals':>5} {'fitted':>6} "
            f"{'predicted':>9}" + ("  finetuned from (tokens)" if finetunes else "")]
    for c in plan.cells:
        epochs = f"{c.domain_epochs:.3g}" if c.domain_epochs is not None else "-"
        seconds = f"{c.predicted_seconds:.0f} s" if c.predicted_seconds is not None else "-"
        rows.append(f"{c.run_id:<36} {c.domain_fraction:>6g} {c.total_tokens:>10,} {epochs:>13} "
                    f"{c.evaluations:>5} {c.fitted_evaluations:>6} {seconds:>9}"
                    + (f"  {', '.join(f'{t:,}' for t in c.finetune_tokens)}" if finetunes else ""))
    fractions = sorted({c.domain_fraction for c in plan.cells})
    rows.append(f"{len(fractions)} domain fractions; unique domain tokens: "
                f"{next((c.unique_domain_tokens for c in plan.cells if c.unique_domain_tokens), '-')}")
    rows.append(f"throughput: {plan.throughput_source}")
    total = plan.predicted_seconds
    more = plan.finetune_seconds_at_most
    tuned = (f", and its finetunes at most {more / 60:.1f} min more (each stops early when the domain loss stalls)"
             if more is not None else ", finetunes not included")
    rows.append(f"predicted wall time: {total / 60:.1f} min ({plan.max_concurrent} cell(s) at once)"
                + (tuned if finetunes else "") if total is not None else "predicted wall time: unknown")
    rows += [f"warning: {w}" for w in plan.warnings]
    return "\n".join(rows)
