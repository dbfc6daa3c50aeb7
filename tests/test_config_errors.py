"""Malformed configs: each gives its exact one-line message, exit code 2, and writes nothing."""

from __future__ import annotations

import subprocess
import textwrap

import pytest
from pydantic import BaseModel

from spt.config import KINDS, ConfigError, load_config
from tests.conftest import tree

CORPORA = """\
kind: corpora
output_dir: {out}
seed: 0
"""
TOKENIZER = """\
kind: tokenizer
inputs: [{out}/in.parquet]
output_dir: {out}/tok
"""

KIND_NAMES = ", ".join(sorted(KINDS))
ALLOWED_TOP = "kind, output_dir, seed, heldout_fraction, domain, general"
ALLOWED_LIMITS = "max_documents, max_bytes, min_chars, max_chars, hf"

CASES = [
    # (id, command, yaml text, overrides, expected stderr lines)
    ("unknown top key", "corpora", CORPORA + "colour: blue\n", [],
     [f"corpora.colour: unknown key (allowed: {ALLOWED_TOP})"]),
    ("unknown nested key", "corpora", CORPORA + "domain:\n  max_docs: 3\n", [],
     [f"corpora.domain.max_docs: unknown key (allowed: {ALLOWED_LIMITS})"]),
    ("fraction above bound", "corpora", CORPORA + "heldout_fraction: 0.7\n", [],
     ["corpora.heldout_fraction=0.7: must be between 0.0 and 0.5"]),
    ("negative seed", "corpora", CORPORA, ["seed=-1"], ["corpora.seed=-1: must be >= 0"]),
    ("seed not an integer", "corpora", CORPORA, ["seed=abc"], ["corpora.seed='abc': must be an integer"]),
    ("zero documents", "corpora", CORPORA, ["domain.max_documents=0"],
     ["corpora.domain.max_documents=0: must be >= 1"]),
    ("section not a mapping", "corpora", CORPORA + "domain: 5\n", [], ["corpora.domain=5: must be a mapping"]),
    ("missing required", "corpora", "kind: corpora\n", [], ["corpora.output_dir: required"]),
    ("missing kind", "corpora", "output_dir: x\n", [], [f"kind: required; one of {KIND_NAMES}"]),
    ("unknown kind", "corpora", "kind: bogus\n", [], [f"kind='bogus': must be one of {KIND_NAMES}"]),
    ("wrong kind for command", "corpora", TOKENIZER, [],
     ["kind='tokenizer': this command expects a 'corpora' config"]),
    ("empty file", "corpora", "", [], ["{path}: empty file, expected a mapping with a 'kind' key"]),
    ("top level is a list", "corpora", "- 1\n- 2\n", [], ["{path}: top level must be a mapping, got list"]),
    ("invalid yaml", "corpora", "kind: corpora\nseed: [1, 2\n", [],
     ["{path}: invalid YAML at line 3, column 1: expected ',' or ']', but got '<stream end>'"]),
    ("override without value", "corpora", CORPORA, ["seed"], ["override 'seed': expected KEY=VALUE, e.g. seed=3"]),
    ("override index out of range", "tokenizer", TOKENIZER, ["inputs[5]=x"],
     ["override 'inputs[5]=x': index 5 out of range (list has 1 items)"]),
    ("empty list", "tokenizer", TOKENIZER, ["inputs=[]"], ["tokenizer.inputs=[]: must not be empty"]),
    ("vocab too small", "tokenizer", TOKENIZER, ["vocab_size=100"],
     ["tokenizer.vocab_size=100: must be between 300 and 1000000"]),
    ("two problems, two lines", "tokenizer", TOKENIZER, ["vocab_size=big", "min_frequency=0"],
     ["tokenizer.vocab_size='big': must be an integer", "tokenizer.min_frequency=0: must be >= 1"]),
    ("input file missing (checked before writing)", "tokenizer", TOKENIZER, [],
     ["inputs[0]='{out}/in.parquet': no such file or folder"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_malformed_config(case, tmp_path, run_cli):
    _, command, text, overrides, expected = case
    out = tmp_path / "out"
    path = tmp_path / "config.yaml"
    path.write_text(text.format(out=out))
    code, stdout, stderr = run_cli(command, path, *overrides)
    want = [f"error: {line.format(path=path, out=out)}" for line in expected]
    assert stderr.splitlines() == want
    assert code == 2
    assert stdout == ""
    assert tree(out) == []


def test_missing_config_file(tmp_path, run_cli):
    code, _, stderr = run_cli("corpora", tmp_path / "nope.yaml")
    assert (code, stderr.strip()) == (2, f"error: {tmp_path / 'nope.yaml'}: file not found")


def test_console_script_exit_code_and_no_traceback(tmp_path, spt_bin):
    path = tmp_path / "c.yaml"
    path.write_text(CORPORA.format(out=tmp_path / "out") + "heldout_fraction: 2\n")
    proc = subprocess.run([spt_bin, "corpora", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: corpora.heldout_fraction=2: must be between 0.0 and 0.5"
    assert "Traceback" not in proc.stderr


def test_overrides_and_nested_paths(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(CORPORA.format(out=tmp_path))
    config = load_config(path, ["seed=7", "domain.max_documents=12", "general.min_chars=1e3"])
    assert (config.seed, config.domain.max_documents) == (7, 12)
    with pytest.raises(ConfigError) as info:
        load_config(path, ["general.min_chars=1.5"])
    assert info.value.problems == ["corpora.general.min_chars=1.5: must be a whole number"]


def _fields(model: type[BaseModel], prefix: str):
    for name, field in model.model_fields.items():
        yield f"{prefix}.{name}", field
        for sub in (field.annotation, *getattr(field.annotation, "__args__", ())):
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                yield from _fields(sub, f"{prefix}.{name}")


def test_every_field_states_its_meaning_and_unit():
    missing = [path for kind, model in KINDS.items() for path, f in _fields(model, kind) if not f.description]
    assert missing == []
    unitless = [
        path for kind, model in KINDS.items() for path, f in _fields(model, kind)
        if "(" not in f.description and "literal" not in f.description and "the " not in f.description
    ]
    assert unitless == []


def test_dry_run_prints_resolved_config_and_writes_nothing(tmp_path, run_cli):
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent(CORPORA.format(out=tmp_path / "out")))
    code, stdout, _ = run_cli("corpora", path, "seed=5", "--dry-run")
    assert code == 0
    assert '"seed": 5' in stdout and '"heldout_fraction": 0.05' in stdout
    assert not (tmp_path / "out").exists()
