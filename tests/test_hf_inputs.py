"""Hugging Face datasets as input (`hf:`): a dataset saved with ``save_to_disk`` and local json read by `datasets`
feed `spt corpora`, `spt mix` and `spt rephrase` (written as parquet for the generate environment) and give the
same documents and token counts as the same text in parquet. Nothing is downloaded (conftest sets offline mode)."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spt import environments
from spt.config import CorporaConfig, load_config
from spt.errors import InputError
from spt.models import default_model_dir
from tests.conftest import REPO

WORDS = ("the of and to in is for that with data model token corpus domain general repeat mix law fit "
         "scaling loss epoch budget sample").split()


def documents(count: int, prefix: str, seed: int) -> list[dict]:
    """``count`` documents of 100-180 words (at least 400 characters: above every min_chars used here)."""
    rng = random.Random(seed)
    return [{"id": f"{prefix}-{i:02d}", "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(100, 180)))}
            for i in range(count)]


def save_dataset(folder: Path, train: list[dict], validation: list[dict]) -> None:
    from datasets import Dataset, DatasetDict

    DatasetDict({"train": Dataset.from_list(train), "validation": Dataset.from_list(validation)}).save_to_disk(
        str(folder))


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def word_tokenizer(folder: Path) -> Path:
    """A word-level tokenizer over WORDS (EOS id 0): token counts are word counts plus one per document."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<|endoftext|>": 0, "<|pad|>": 1, "[UNK]": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    folder.mkdir(parents=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>", "pad_token": "<|pad|>"}))
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """The same 80 training and 10 validation documents as a saved DatasetDict, as jsonl and as parquet."""
    root = tmp_path_factory.mktemp("hf-data")
    train, validation = documents(80, "doc", 0), documents(10, "val", 1)
    save_dataset(root / "saved", train, validation)
    pq.write_table(pa.Table.from_pylist(train), root / "train.parquet")
    pq.write_table(pa.Table.from_pylist(validation), root / "validation.parquet")
    return {"root": root, "train": train, "validation": validation, "saved": str(root / "saved"),
            "json": write_jsonl(root / "train.jsonl", train), "json_val": write_jsonl(root / "val.jsonl", validation),
            "tokenizer": word_tokenizer(root / "tok")}


def saved(data, split="train") -> dict:
    return {"path": data["saved"], "split": split, "id_column": "id"}


def as_json(path: str) -> dict:
    return {"path": "json", "data_files": [path], "id_column": "id"}


# --- spt corpora -------------------------------------------------------------------------------------------------

def corpora_config(out: Path, domain: dict, general: dict) -> CorporaConfig:
    return CorporaConfig.model_validate({"kind": "corpora", "output_dir": str(out), "heldout_fraction": 0.2,
                                         "domain": {"hf": domain}, "general": {"hf": general}})


def test_corpora_from_a_saved_dataset_and_from_json_are_the_same_files(data, tmp_path):
    from pipelines.corpora import build_corpora, split_of

    first = build_corpora(corpora_config(tmp_path / "a", saved(data), as_json(data["json"])))
    swapped = build_corpora(corpora_config(tmp_path / "b", as_json(data["json"]), saved(data)))
    assert first["files"] == swapped["files"]  # byte-identical: ids come from the documents, not the files
    for name in first["files"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    for corpus in ("domain", "general"):
        rows = {s: pq.read_table(tmp_path / "a" / corpus / f"{s}.parquet").to_pylist() for s in ("train", "heldout")}
        assert sorted(r["text"] for s in rows for r in rows[s]) == sorted(d["text"] for d in data["train"])
        assert all(split_of(0, r["id"], 0.2) == s for s in rows for r in rows[s])  # split by (seed, document)
        assert rows["heldout"] and first["corpora"][corpus]["documents"]["heldout"] == len(rows["heldout"])
    inputs = first["inputs"]
    assert inputs["domain"]["identity"]["kind"] == "saved" and inputs["domain"]["identity"]["fingerprint"]
    assert inputs["general"]["identity"]["data_files"]["train"][0].startswith("sha256:")
    assert build_corpora(corpora_config(tmp_path / "a", saved(data), as_json(data["json"])))["reused"] is True


def test_corpora_notice_a_changed_dataset(data, tmp_path):
    from pipelines.corpora import build_corpora

    path = tmp_path / "docs.jsonl"
    write_jsonl(path, data["train"])
    config = corpora_config(tmp_path / "out", saved(data), as_json(str(path)))
    build_corpora(config)
    write_jsonl(path, data["train"][:-1])  # the same file name, other content
    with pytest.raises(InputError) as refused:
        build_corpora(config)
    assert "holds `spt corpora` output made before its inputs changed" in refused.value.problems[0]
    rebuilt = build_corpora(config, force=True)
    assert sum(rebuilt["corpora"]["general"]["documents"].values()) == 79


# --- spt mix -----------------------------------------------------------------------------------------------------

def mix_yaml(data, tmp_path: Path, out: Path, name: str, sources: list[dict]) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps({"kind": "mix", "name": name, "output_dir": str(out),
                                "tokenizer": str(data["tokenizer"]), "total_tokens": 4096, "seq_len": 32,
                                "global_batch_size": 4, "sources": sources, "build": {"workers": 1}}))
    return path


def three_ways(data) -> list[dict]:
    """The same training and held-out documents from parquet, from the saved dataset and from json."""
    root = data["root"]
    return [
        {"name": "parquet", "role": "domain", "paths": [str(root / "train.parquet")],
         "heldout_paths": [str(root / "validation.parquet")], "fraction": 0.4},
        {"name": "saved", "role": "general", "hf": saved(data), "heldout_hf": saved(data, "validation"),
         "fraction": 0.3},
        {"name": "json", "role": "general", "hf": as_json(data["json"]), "heldout_hf": as_json(data["json_val"])},
    ]


def test_mix_build_from_saved_and_json_counts_the_tokens_of_the_parquet(data, tmp_path, run_cli):
    code, out, err = run_cli("mix", "build", mix_yaml(data, tmp_path, tmp_path / "mix", "hf", three_ways(data)))
    assert code == 0, err
    manifest = json.loads((tmp_path / "mix" / "mixes" / "hf" / "manifest.json").read_text())
    built = {s["name"]: json.loads((Path(s["source_dir"]) / "source.json").read_text())
             for s in manifest["sources"]}
    words = {"train": sum(len(d["text"].split()) + 1 for d in data["train"]),
             "heldout": sum(len(d["text"].split()) + 1 for d in data["validation"])}
    for name in ("parquet", "saved", "json"):
        assert built[name]["counts"]["tokens"] == words, name
        assert built[name]["counts"]["documents"] == {"train": 80, "heldout": 10}, name
        assert built[name]["splits"] == built["parquet"]["splits"], name  # the same MDS samples per split
    saved_hf, json_hf = built["saved"]["hf"]["hf"], built["json"]["hf"]["hf"]
    assert saved_hf["identity"]["fingerprint"] and json_hf["identity"]["data_files"]["train"][0].startswith("sha256:")
    # The same rows are the same parquet bytes, whichever way `datasets` read them.
    parts = [sorted(Path(h["folder"]).glob("*.parquet")) for h in (saved_hf, json_hf)]
    assert [p.read_bytes() for p in parts[0]] == [p.read_bytes() for p in parts[1]]
    assert pq.read_table(parts[0][0]).to_pylist() == data["train"]


def test_streaming_reads_the_same_rows(data, tmp_path):
    from pipelines.mix.build import write_plan

    sources = [{"name": "prepared", "role": "domain", "hf": as_json(data["json"]), "fraction": 0.5},
               {"name": "streamed", "role": "general", "hf": {**as_json(data["json"]), "streaming": True}}]
    plan, _ = write_plan(load_config(mix_yaml(data, tmp_path, tmp_path / "mix", "stream", sources)))
    prepared, streamed = plan.sources
    assert prepared.counts.tokens == streamed.counts.tokens and prepared.count_key == streamed.count_key
    assert streamed.hf["hf"]["identity"]["fingerprint"] is None  # a streamed set has none; its files identify it


def test_mix_notices_a_changed_dataset(data, tmp_path, run_cli):
    folder = tmp_path / "saved"
    shutil.copytree(data["saved"], folder)
    sources = [{"name": "domain", "role": "domain", "hf": {"path": str(folder), "id_column": "id"},
                "heldout_fraction": 0.2, "fraction": 1.0}]
    config = mix_yaml(data, tmp_path, tmp_path / "mix", "changing", sources)
    assert run_cli("mix", "plan", config)[0] == 0
    shutil.rmtree(folder)
    save_dataset(folder, data["train"][:40], data["validation"])
    code, out, err = run_cli("mix", "plan", config)
    assert code == 2 and "made before its inputs changed" in err and out == ""
    code, out, err = run_cli("mix", "plan", config, "--force")
    assert code == 0, err
    plan = json.loads((tmp_path / "mix" / "mixes" / "changing" / "plan.json").read_text())
    assert plan["sources"][0]["documents"] + plan["sources"][0]["heldout_documents"] == 40


# --- spt rephrase: the train side writes parquet, the generate side reads it -------------------------------------

def rephrase_yaml(data, tmp_path: Path) -> Path:
    path = tmp_path / "rephrase.yaml"
    path.write_text(json.dumps({
        "kind": "rephrase",
        "input": {"hf": saved(data), "heldout_hf": saved(data, "validation"), "cache_dir": str(tmp_path / "cache")},
        "chunking": {"max_tokens": 128}, "styles": {"library": str(REPO / "configs/rephrase/styles.yaml")},
        "engine": {"model": str(default_model_dir()), "max_model_len": 512}, "sampling": {"max_tokens": 48},
        "output": {"dir": str(tmp_path / "out"), "documents_per_shard": 32}}))
    return path


def test_rephrase_hands_the_generate_stage_parquet(data, tmp_path, run_cli, monkeypatch):
    from pipelines.rephrase.runner import prepare
    from pipelines.rephrase.sources import read_unit

    config = rephrase_yaml(data, tmp_path)
    handed = []
    # Only the re-run under the generate interpreter is replaced (by running it with --dry-run below).
    monkeypatch.setattr(environments, "run_in", lambda environment, args: handed.append((environment, args)) or 0)
    code, _, err = run_cli("rephrase", config)
    assert code == 0 and "(80 rows) as parquet written" in err, err
    [(environment, args)] = handed
    assert environment == "generate" and args[:4] == ["-m", "cli.main", "rephrase", str(config)]
    overrides = args[4:]
    # The generate environment (no `datasets`) takes the handed config.
    proc = subprocess.run([str(environments.python_for("generate")), *args, "--dry-run"], capture_output=True,
                          text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    shown = json.loads(proc.stdout)["config"]["input"]
    assert shown["hf"] is None and shown["text_column"] == "text" and shown["id_column"] == "id"
    assert [Path(p).parent for p in shown["paths"] + shown["heldout_paths"]] == [tmp_path / "cache"] * 2
    # ... and plans its work units over every document, held-out ones marked so.
    plan = prepare(load_config(config, overrides))
    read = {(doc.source_id, unit.split) for unit in plan.units for doc in read_unit(unit, plan.config.input)}
    assert read == {(d["id"], "train") for d in data["train"]} | {(d["id"], "heldout") for d in data["validation"]}
    # A second run reuses the parquet.
    code, _, err = run_cli("rephrase", config)
    assert code == 0 and "(80 rows) as parquet reused" in err


# --- config rules --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,overrides,message", [
    ("corpora", ["domain.hf.path=https://x/y"],
     "corpora.domain.hf.path='https://x/y': give a hub id (org/name), a builder name or a local path, not a URL"),
    ("corpora", ["domain.hf.path=json", "domain.hf.data_files=3"],
     "corpora.domain.hf.data_files=3: must be a non-empty list of paths, or a mapping from split name to such lists"),
    ("mix", ["sources[0].hf.path=org/name"], "mix: sources[0] 'a': give paths or hf, not both"),
    ("mix", ["sources[0].paths=[]"], "mix: sources[0] 'a': give paths or hf"),
    ("mix", ["sources[0].heldout_hf.path=org/name", "sources[0].heldout_fraction=0.1"],
     "mix: sources[0] 'a': give heldout_hf or heldout_fraction, not both"),
    ("rephrase", ["input.paths=[]", "input.hf.path=org/name", "input.heldout_paths=[h.parquet]"],
     "rephrase.input: with hf, give the held-out documents as heldout_hf (not heldout_paths)"),
    ("rephrase", ["input.heldout_hf.path=org/name"],
     "rephrase.input: heldout_hf goes with hf (with paths, give heldout_paths)"),
])
def test_hf_config_rules(kind, overrides, message, tmp_path):
    configs = {
        "corpora": {"kind": "corpora", "output_dir": "out"},
        "mix": {"kind": "mix", "output_dir": "m", "tokenizer": "tok", "total_tokens": 64, "seq_len": 4,
                "global_batch_size": 2, "sources": [{"name": "a", "role": "general", "paths": ["x.parquet"]}]},
        "rephrase": {"kind": "rephrase", "input": {"paths": ["x.parquet"]}, "output": {"dir": "r"}},
    }
    path = tmp_path / f"{kind}.yaml"
    path.write_text(json.dumps(configs[kind]))
    with pytest.raises(InputError) as refused:
        load_config(path, overrides)
    assert refused.value.problems == [message]
