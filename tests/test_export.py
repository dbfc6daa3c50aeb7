"""`spt export`: a tiny trained run becomes a Hugging Face folder that transformers loads (with the held-out loss spt
reported) and vLLM serves in the generate environment; locally and on S3 (moto)."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from spt import environments
from spt.config import load_config
from tests.conftest import moto_s3, tree, two_source_mix_yaml

BATCH, SEQ, BATCHES, EVAL_SAMPLES = 8, 64, 12, 16


@pytest.fixture(scope="module")
def trained(tiny_corpora, tmp_path_factory) -> tuple[Path, dict, dict]:
    """A 12-batch run of a tiny Llama with head size 32 (vLLM's CPU attention takes 32 and up; the tiny preset's
    is 16); returns (run_dir, summary, streams spec)."""
    from pipelines.mix.build import build_mix
    from pipelines.mix.streams import read_spec
    from training.trainer import run_training

    root = tmp_path_factory.mktemp("export")
    (root / "mix.yaml").write_text(two_source_mix_yaml(tiny_corpora, root / "mix", BATCHES * BATCH * SEQ, SEQ, BATCH,
                                                       "export"))
    spec_path = build_mix(load_config(root / "mix.yaml"))["spec"]
    (root / "train.yaml").write_text(json.dumps({
        "kind": "train", "mix": spec_path, "run_dir": str(root / "run"),
        "model": {"preset": "tiny", "n_heads": 2, "n_kv_heads": 1}, "global_batch_size": BATCH,
        "eval_every_tokens": BATCHES * BATCH * SEQ, "eval_samples": EVAL_SAMPLES, "optimizer": {"lr": 0.01}}))
    summary = run_training(load_config(root / "train.yaml"))
    return root / "run", summary, read_spec(spec_path)


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory) -> Path:
    from training.export import export_run

    out = tmp_path_factory.mktemp("exported") / "hf"
    export_run(str(trained[0]), str(out))
    return out


def heldout_batches(spec: dict, source: str):
    """The held-out samples the run evaluated for a source: the first EVAL_SAMPLES, in order, as (B, SEQ) ids."""
    import torch
    from torch.utils.data import DataLoader

    from pipelines.mix.streams import eval_dataset
    from training.data import collate_tokens

    dataset = eval_dataset(spec, source, batch_size=BATCH, num_canonical_nodes=1)
    seen = 0
    for batch in DataLoader(dataset, batch_size=BATCH, collate_fn=collate_tokens):
        yield batch["input_ids"][: EVAL_SAMPLES - seen].to(torch.long)
        seen += BATCH
        if seen >= EVAL_SAMPLES:
            return


def test_export_loads_in_transformers_with_the_loss_spt_reported(trained, exported, tiny_corpora, run_cli):
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir, summary, spec = trained
    model = AutoModelForCausalLM.from_pretrained(exported).eval()
    tokenizer = AutoTokenizer.from_pretrained(exported)
    assert model.config.eos_token_id == tokenizer.eos_token_id == spec["eos_token_id"]
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    # The tokenizer is the one the mix tokenized with: the same ids for a held-out document.
    import pyarrow.parquet as pq

    text = pq.read_table(tiny_corpora / "corpora" / "domain" / "heldout.parquet").column("text")[0].as_py()
    mix_tokenizer = Tokenizer.from_file(str(Path(spec["tokenizer"]) / "tokenizer.json"))
    assert tokenizer(text, add_special_tokens=False).input_ids == mix_tokenizer.encode(text).ids
    # Each source's held-out loss over the samples the run evaluated, by transformers' own loss.
    with torch.no_grad():
        heldout = {e["name"] for e in spec["eval"] if e.get("samples")}
        assert heldout == {"domain", "general"}
        for source in sorted(heldout):
            reported = summary["losses"][source]
            losses = [(model(input_ids=ids, labels=ids).loss.item(), ids.numel() - len(ids))
                      for ids in heldout_batches(spec, source)]
            mean = sum(loss * count for loss, count in losses) / sum(count for _, count in losses)
            assert mean == pytest.approx(reported, abs=1e-4), source
    card = (exported / "README.md").read_text()
    assert f"{summary['domain_loss']:.4f}" in card and "δ = 0.3000" in card
    # A rerun of the same export writes nothing; another run in the same folder is refused.
    before = {p: p.stat().st_mtime_ns for p in exported.iterdir()}
    code, out, err = run_cli("export", run_dir, "--out", exported)
    assert code == 0 and "already exported, reused" in out, err
    assert {p: p.stat().st_mtime_ns for p in exported.iterdir()} == before


def test_a_run_model_folder_loads_as_it_is(trained):
    """`spt train` writes run_dir/model with the mix's tokenizer and a generation config: no export needed to load it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir, _, spec = trained
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "model")
    assert tokenizer.eos_token_id == spec["eos_token_id"] and tokenizer.model_max_length == SEQ
    model = AutoModelForCausalLM.from_pretrained(run_dir / "model")
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id


def test_an_unfinished_run_is_refused(trained, tmp_path, run_cli):
    run = tmp_path / "unfinished"
    run.mkdir()
    (run / "config.json").write_text((trained[0] / "config.json").read_text())
    code, out, err = run_cli("export", run, "--out", tmp_path / "hf")
    assert (code, out) == (2, "")
    assert err.strip() == f"error: run={str(run)!r}: unfinished run (no summary.json); finish it with `spt train` first"
    assert tree(tmp_path / "hf") == []


VLLM_SCRIPT = textwrap.dedent("""
    import json, sys
    from vllm import LLM, SamplingParams

    if __name__ == "__main__":
        llm = LLM(model=sys.argv[1], dtype="float32", enforce_eager=True, max_model_len=32, seed=0,
                  max_num_seqs=1)
        params = SamplingParams(max_tokens=8, temperature=0.0, logprobs=0, ignore_eos=True)
        result = llm.generate([sys.argv[2]], params)[0]
        completion = result.outputs[0]
        print("RESULT " + json.dumps({
            "prompt": list(result.prompt_token_ids), "tokens": list(completion.token_ids),
            "logprobs": [step[token].logprob for step, token in zip(completion.logprobs, completion.token_ids)],
        }))
""")


@pytest.mark.vllm
def test_vllm_serves_the_export_with_the_same_next_token_logprobs(exported, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    script = tmp_path / "serve.py"
    script.write_text(VLLM_SCRIPT)
    prompt = "def main(argv):\n    "
    # The engine in the script's own process: no engine-core process to spawn (~40 s less on 2 cores).
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "OMP_NUM_THREADS": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    proc = subprocess.run([str(environments.python_for("generate")), str(script), str(exported), prompt],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reply = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert len(reply["tokens"]) == 8
    # vLLM (transformers 5 in its environment) tokenized the prompt as transformers 4 does here.
    tokenizer = AutoTokenizer.from_pretrained(exported)
    assert reply["prompt"] == tokenizer(prompt).input_ids
    # Teacher-forced on vLLM's tokens, transformers gives each the same log-probability and ranks it first.
    model = AutoModelForCausalLM.from_pretrained(exported).eval()
    ids = torch.tensor([reply["prompt"] + reply["tokens"]])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    start = len(reply["prompt"]) - 1
    for step, (token, vllm_logprob) in enumerate(zip(reply["tokens"], reply["logprobs"])):
        row = logprobs[start + step]
        assert row[token].item() == pytest.approx(vllm_logprob, abs=1e-3)
        assert row.max().item() - row[token].item() < 1e-3  # greedy: vLLM's token is the top one (up to ties)


@pytest.fixture()
def bucket():
    """A bucket on a moto S3 server on 127.0.0.1 (in this process), with the environment a user would set."""
    with moto_s3("runs"):
        yield "s3://runs"


def test_export_of_a_run_on_s3_to_s3(trained, exported, bucket, tmp_path, run_cli):
    from spt import storage

    run_dir = trained[0]
    storage.upload_folder(run_dir, f"{bucket}/run")
    code, out, err = run_cli("export", f"{bucket}/run", "--out", f"{bucket}/hf")
    assert code == 0, err
    local = json.loads((exported / "spt-export.json").read_text())["files"]
    remote = json.loads(storage.read_text(f"{bucket}/hf/spt-export.json"))["files"]
    assert set(remote) == set(local)
    # The same weights, tokenizer and configs; only the card names where the run was.
    assert {k: v for k, v in remote.items() if k != "README.md"} == {k: v for k, v in local.items() if k != "README.md"}
    copy = storage.download_folder(f"{bucket}/hf", tmp_path / "copy")
    assert {n: storage.sha256(str(copy / n)) for n in remote} == remote
