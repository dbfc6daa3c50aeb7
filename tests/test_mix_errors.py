"""Impossible or malformed mixes: each is refused with its exact message, exit code 2, and nothing written.

Every case runs through both `spt mix plan` and `spt mix build` (which must refuse before starting Ray).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import tree
from tests.test_mix_corpus import corpus, mix_dict, write_mix  # noqa: F401  (module fixture)

ALLOWED_SOURCE_KEYS = ("name, role, paths, hf, fraction, synthetic_share, rephrases, allow_incomplete, max_epochs, "
                       "heldout_paths, heldout_hf, heldout_fraction")


def _set(path: str, value):
    """A change to the test mix: ``sources.0.fraction`` style path -> value (None deletes the key)."""

    def change(config: dict, tmp: Path, root: Path) -> None:
        node = config
        parts = path.split(".")
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is None:
            del node[parts[-1]]
        else:
            node[parts[-1]] = value(tmp, root) if callable(value) else value

    return change


def _files(tmp: Path, name: str, content: bytes) -> str:
    path = tmp / "inputs" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return str(path)


def _empty_folder(tmp: Path, root: Path) -> str:
    (tmp / "inputs" / "empty").mkdir(parents=True)
    return str(tmp / "inputs" / "empty")


def _no_tokenizer_json(tmp: Path, root: Path) -> str:
    (tmp / "tok").mkdir()
    return str(tmp / "tok")


def _many(*changes):
    def change(config, tmp, root):
        for item in changes:
            item(config, tmp, root)

    return change


CASES = [
    ("fraction above 1", _set("sources.2.fraction", 1.3), ["mix.sources[2].fraction=1.3: must be between 0 and 1"]),
    ("fraction not a number", _set("sources.0.fraction", "half"),
     ["mix.sources[0].fraction='half': must be a number between 0 and 1, or 'remainder'"]),
    ("fractions do not sum to 1", _set("sources.1.fraction", 0.57), ["mix: fractions sum to 0.97, expected 1"]),
    ("no room for the remainder", _many(_set("sources.0.fraction", 0.5), _set("sources.2.fraction", 0.6)),
     ["mix: fractions sum to 1.1 before the remainder source sources[1], expected at most 1"]),
    ("two remainder sources", _set("sources.2.fraction", None),
     ["mix: only one source may take the remainder; sources[1], sources[2] give no fraction"]),
    ("duplicate source name", _set("sources.2.name", "domain"),
     ["mix: source name 'domain' is used by sources[0] and sources[2]"]),
    ("unknown role", _set("sources.0.role", "web"),
     ["mix.sources[0].role='web': must be one of 'general', 'synthetic', 'domain' or 'domain_synthetic'"]),
    ("misspelt key", _set("sources.0.fractoin", 0.3),
     [f"mix.sources[0].fractoin: unknown key (allowed: {ALLOWED_SOURCE_KEYS})"]),
    ("two kinds of held-out", _set("sources.0.heldout_fraction", 0.1),
     ["mix: sources[0] 'domain': give heldout_paths or heldout_fraction, not both"]),
    ("held-out share too large", _set("sources.2.heldout_fraction", 0.7),
     ["mix.sources[2].heldout_fraction=0.7: must be between 0.0 and 0.5"]),
    ("T below one batch", _set("total_tokens", 50),
     ["mix: total_tokens=50 is less than one batch of 64 tokens (global_batch_size=4 x seq_len=16)"]),
    ("no sources", _set("sources", []), ["mix.sources=[]: must not be empty"]),
    ("unknown tokenizer", _set("tokenizer", lambda tmp, root: str(tmp / "nope")),
     ["mix.tokenizer='{tmp}/nope': no such tokenizer folder"]),
    ("tokenizer folder without tokenizer.json", _set("tokenizer", _no_tokenizer_json),
     ["mix.tokenizer='{tmp}/tok': no tokenizer.json there (train one with `spt tokenizer`)"]),
    ("missing files", _many(_set("sources.0.paths", lambda tmp, root: [str(tmp / "gone.parquet")]),
                            _set("sources.1.heldout_paths", lambda tmp, root: [str(tmp / "gone.jsonl")])),
     ["mix.sources[0].paths[0]='{tmp}/gone.parquet': no such file or folder",
      "mix.sources[1].heldout_paths[0]='{tmp}/gone.jsonl': no such file or folder"]),
    ("not an input format", _set("sources.0.paths", lambda tmp, root: [_files(tmp, "data.csv", b"text\nd1\n")]),
     ["mix.sources[0].paths[0]='{tmp}/inputs/data.csv': not a .parquet or .jsonl file"]),
    ("empty folder", _set("sources.2.paths", lambda tmp, root: [_empty_folder(tmp, root)]),
     ["mix.sources[2].paths[0]='{tmp}/inputs/empty': folder has no .parquet or .jsonl files"]),
    ("unreadable parquet", _set("sources.0.paths", lambda tmp, root: [_files(tmp, "bad.parquet", b"not parquet")]),
     ["mix.sources[0].paths[0]='{tmp}/inputs/bad.parquet': not a readable parquet file (Parquet magic bytes not "
      "found in footer. Either the file is corrupted or this is not a parquet file.)"]),
    ("a fraction but no usable data",
     _set("sources.2.paths", lambda tmp, root: [_files(tmp, "bad.jsonl", b'{"text": ""}\n{"text": "s1", "error": "x"}\n{oops\n')]),
     ["mix.sources[2] 'synthetic': fraction 0.1 but no usable training documents "
      "(3 rows skipped: 1 empty document, 1 invalid JSON, 1 rephrase error)"]),
    ("less than one sample of data",
     _set("sources.2.paths", lambda tmp, root: [_files(tmp, "short.jsonl", b'{"text": "s1 s2 s3"}\n')]),
     ["mix.sources[2] 'synthetic': fraction 0.1 but its 4 training tokens make no sample of seq_len=16"]),
    ("epochs above max_epochs", _many(_set("sources.0.fraction", 0.6), _set("sources.2.fraction", 0.05)),
     ["mix.sources[0] 'domain': 2.5 epochs exceed max_epochs=2 (75 samples asked of 30 unique)"]),
]


@pytest.mark.parametrize("action", ["plan", "build", "build --dry-run"])
@pytest.mark.parametrize("name,change,expected", CASES, ids=[c[0] for c in CASES])
def test_malformed_mix_is_refused(corpus, tmp_path, run_cli, action, name, change, expected):
    config = mix_dict(corpus, tmp_path / "out")
    change(config, tmp_path, corpus["root"])
    path = write_mix(tmp_path / "mix.yaml", config)
    before = tree(tmp_path)
    code, out, err = run_cli("mix", *action.split(), path)
    assert code == 2, out
    assert err.splitlines() == [f"error: {line.format(tmp=tmp_path)}" for line in expected]
    assert out == ""
    assert tree(tmp_path) == before  # nothing written: no plan, no cache, no source


def test_every_problem_of_a_config_is_listed(corpus, tmp_path, run_cli):
    config = mix_dict(corpus, tmp_path / "out")
    config["seq_len"] = 1
    config["sources"][0]["role"] = "web"
    del config["total_tokens"]
    code, _, err = run_cli("mix", "plan", write_mix(tmp_path / "mix.yaml", config))
    assert code == 2
    assert err.splitlines() == [
        "error: mix.total_tokens: required",
        "error: mix.seq_len=1: must be between 2 and 1048576",
        "error: mix.sources[0].role='web': must be one of 'general', 'synthetic', 'domain' or 'domain_synthetic'",
    ]


def test_the_same_mix_without_the_fault_plans(corpus, tmp_path, run_cli):
    # the cases above differ from a valid mix only by their change
    code, _, err = run_cli("mix", "plan", write_mix(tmp_path / "mix.yaml", mix_dict(corpus, tmp_path / "out")))
    assert code == 0, err
    assert json.loads((tmp_path / "out" / "mixes" / "test" / "plan.json").read_text())["total_samples"] == 125


def test_a_dry_run_build_prints_the_token_plan_and_writes_nothing(corpus, tmp_path, run_cli):
    path = write_mix(tmp_path / "mix.yaml", mix_dict(corpus, tmp_path / "out"))
    before = tree(tmp_path)
    code, out, err = run_cli("mix", "build", path, "--dry-run")
    assert code == 0, err
    plan = out.split("\n}\n", 1)[1]  # after the resolved config
    assert plan.startswith("mix 'test': ") and " tokens asked = " in plan
    rows = [line.split()[0] for line in plan.splitlines()[3:] if line.strip()]
    assert {"domain", "general"} <= set(rows)  # one row per source: fraction, tokens, samples, epochs
    assert tree(tmp_path) == before
