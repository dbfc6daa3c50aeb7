"""Malformed rephrase configs and style libraries: each gives its exact message and exit code 2, writes nothing,
and never starts vLLM."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from spt.config import ConfigError, load_config
from spt.config.rephrase import load_style_library, resolve_styles, template_problem
from spt.errors import InputError
from tests.conftest import tree

REPO = Path(__file__).resolve().parents[1]
ALLOWED = "(allowed: {text}, {num_words})"

STYLE = """\
kind: styles
styles:
  wiki:
    description: encyclopedia
    template: {template}
    max_output_tokens: 256
"""


def write_library(folder: Path, template: str = '"Rewrite: {text}"', extra: str = "") -> Path:
    path = folder / "styles.yaml"
    path.write_text(STYLE.format(template=template) + extra)
    return path


def write_config(folder: Path, library: Path | str, extra: str = "") -> Path:
    path = folder / "rephrase.yaml"
    path.write_text(
        f"kind: rephrase\ninput:\n  paths: [{folder}/in.parquet]\nstyles:\n  library: {library}\n  per_document: 1\n"
        f"output:\n  dir: {folder}/out\n{extra}"
    )
    return path


@pytest.mark.parametrize(
    "template, problem",
    [
        ("Rewrite {txt}", f"unknown placeholder {{txt}} {ALLOWED}"),
        ("Rewrite the text.", "must contain the placeholder {text}"),
        ("Rewrite {text", "malformed template: expected '}' before end of string (write literal braces as {{ and }})"),
        ("Rewrite {text} }", "malformed template: Single '}' encountered in format string "
                             "(write literal braces as {{ and }})"),
        ("Rewrite {text:>20}", "placeholder {text} takes no conversion or format spec"),
        ("Rewrite {text!r}", "placeholder {text} takes no conversion or format spec"),
        ("Rewrite {} {text}", f"unknown placeholder {{}} {ALLOWED}"),
        ("Rewrite {text.upper}", f"unknown placeholder {{text.upper}} {ALLOWED}"),
    ],
)
def test_malformed_style_template_is_an_exact_error(tmp_path, template, problem):
    library = write_library(tmp_path, json.dumps(template))
    with pytest.raises(ConfigError) as info:
        load_style_library(library)
    assert info.value.problems == [f"{library}: styles: styles.wiki.template: {problem}"]
    assert template_problem(template) == problem


def test_valid_templates_pass():
    assert template_problem("Text:\n{text}\nAbout {num_words} words, in {{braces}}.") is None


def test_style_library_shipped_with_spt_loads_and_has_every_family():
    library = load_style_library(REPO / "configs/rephrase/styles.yaml")
    assert {"wiki", "qa", "distill", "extract_knowledge", "knowledge_list", "continuation", "conversational",
            "textbook"} <= set(library.styles)
    assert all(s.max_output_tokens > 0 for s in library.styles.values())


@pytest.mark.parametrize(
    "extra, expected",
    [
        ("  Wiki-Style:\n    description: x\n    template: '{text}'\n",
         "styles: styles.Wiki-Style: style names are lowercase letters, digits and _ (at most 40)"),
        ("  qa:\n    description: x\n    template: '{text}'\n    max_output_tokens: 0\n",
         "styles.styles.qa.max_output_tokens=0: must be >= 1"),
        ("  qa:\n    description: x\n    template: '{text}'\n    min_input_tokens: 300\n    max_input_tokens: 200\n",
         "styles: styles.qa: min_input_tokens=300 is above max_input_tokens=200"),
        ("  qa:\n    template: '{text}'\n    temperature: 2\n",
         "styles.styles.qa.temperature: unknown key (allowed: description, system, template, max_output_tokens, "
         "max_input_tokens, min_input_tokens, min_length_ratio, max_length_ratio)"),
    ],
)
def test_malformed_style_entries(tmp_path, extra, expected):
    library = write_library(tmp_path, extra=extra)
    with pytest.raises(ConfigError) as info:
        load_style_library(library)
    assert expected in [p.removeprefix(f"{library}: ") for p in info.value.problems]


def test_style_library_of_the_wrong_kind_or_missing(tmp_path):
    other = write_config(tmp_path, "x.yaml")
    with pytest.raises(ConfigError) as info:
        load_style_library(other)
    assert info.value.problems == [f"{other}: kind='rephrase': this command expects a 'styles' config"]
    with pytest.raises(ConfigError) as info:
        load_style_library(tmp_path / "none.yaml")
    assert info.value.problems == [f"{tmp_path / 'none.yaml'}: file not found"]


@pytest.mark.parametrize(
    "override, expected",
    [
        ("styles.weights={wikki: 1}", "rephrase.styles.weights.wikki: unknown style (known: wiki)"),
        ("styles.per_document=2", "rephrase.styles.per_document=2: only 1 styles have a positive weight"),
        ("chunking.max_tokens=1900",
         "rephrase.styles: style 'wiki' needs 1900 input + 256 output tokens, more than engine.max_model_len=2048 "
         "(lower chunking.max_tokens or the style's max_output_tokens)"),
    ],
)
def test_styles_that_do_not_fit_the_run(tmp_path, override, expected):
    config = load_config(write_config(tmp_path, write_library(tmp_path)), [override])
    with pytest.raises(ConfigError) as info:
        resolve_styles(config)
    assert info.value.problems == [expected]


@pytest.mark.parametrize(
    "override, expected",
    [
        ("engine.modle=x", "rephrase.engine.modle: unknown key (allowed: model, dtype, max_model_len, batch_size, "
         "concurrent_batches, concurrency, tensor_parallel_size, device, enforce_eager, cpu_kv_cache_gib, "
         "gpu_memory_utilization, use_chat_template)"),
        ("sampling.temperature=-1", "rephrase.sampling.temperature=-1: must be between 0 and 5"),
        ("sampling.top_p=0", "rephrase.sampling.top_p=0: must be between 0 and 1"),
        ("engine.dtype=int8", "rephrase.engine.dtype='int8': must be one of 'auto', 'bfloat16', 'float16' or "
         "'float32'"),
        ("chunking.max_tokens=4096", "rephrase: chunking.max_tokens=4096 leaves no room for the prompt and output "
         "in engine.max_model_len=2048"),
        ("styles.weights={wiki: -1}", "rephrase.styles.weights.wiki=-1: must be >= 0.0"),
        ("styles.weights={wiki: 0}", "rephrase: styles.weights: at least one style needs a positive weight"),
        ("output.dir=gs://bucket/x", "rephrase.output.dir='gs://bucket/x': unsupported scheme gs:// (use a local "
         "path or s3://BUCKET/PREFIX)"),
        ("input.paths=[hdfs://nn/x]", "rephrase.input.paths[0]='hdfs://nn/x': unsupported scheme hdfs:// (use a "
         "local path or s3://BUCKET/PREFIX)"),
        ("filter.max_chars=10", "rephrase: filter.max_chars=10 is below filter.min_chars=200"),
        ("styles.inline={bad: {description: d, template: 'no text'}}",
         "rephrase: styles.inline.bad.template: must contain the placeholder {text}"),
        ("input.sample_fraction=0", "rephrase.input.sample_fraction=0: must be between 0 and 1"),
        ("input.paths=[]", "rephrase.input.paths=[]: must not be empty"),
    ],
)
def test_malformed_rephrase_config(tmp_path, override, expected):
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, write_library(tmp_path)), [override])
    assert info.value.problems == [expected]


def test_missing_model_and_inputs_are_found_before_anything_is_written(tmp_path):
    from pipelines.rephrase.runner import run_rephrase

    config = load_config(write_config(tmp_path, write_library(tmp_path)), [f"engine.model={tmp_path}/no-model"])
    with pytest.raises(InputError) as info:
        run_rephrase(config)
    assert info.value.problems == [
        f"engine.model='{tmp_path}/no-model': folder not found (run scripts/setup.sh model for the local SmolLM2)"
    ]
    config = load_config(write_config(tmp_path, write_library(tmp_path)))
    with pytest.raises(InputError) as info:
        run_rephrase(config)
    assert info.value.problems == [f"input.paths[0]='{tmp_path}/in.parquet': no such file or folder"]
    assert tree(tmp_path / "out") == []


def test_cli_exit_code_2_with_one_line_per_problem_from_the_generate_environment(tmp_path, spt_bin):
    """The real command: from the train environment it re-runs under the generate interpreter, which fails."""
    config = write_config(tmp_path, write_library(tmp_path, '"Rewrite {txt}"'))
    proc = subprocess.run([spt_bin, "rephrase", str(config)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "running in the generate environment" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'styles.yaml'}: styles: styles.wiki.template: unknown placeholder {{txt}} {ALLOWED}"
    )
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    proc = subprocess.run([spt_bin, "rephrase", str(config), "sampling.top_p=2", "engine.max_model_len=8"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-2:] == [
        "error: rephrase.engine.max_model_len=8: must be >= 64",
        "error: rephrase.sampling.top_p=2: must be between 0 and 1",
    ]
    assert tree(tmp_path / "out") == []


def test_dry_run_prints_resolved_styles_and_writes_nothing(tmp_path, run_cli):
    config = write_config(tmp_path, REPO / "configs/rephrase/styles.yaml", "seed: 4\n")
    code, stdout, _ = run_cli("rephrase", config, "styles.weights={qa: 3, wiki: 1}", "--dry-run")
    assert code == 0
    resolved = json.loads(stdout)
    assert resolved["weights"] == {"qa": 3.0, "wiki": 1.0}
    assert sorted(resolved["styles"]) == ["qa", "wiki"] and resolved["config"]["seed"] == 4
    assert tree(tmp_path / "out") == []


def test_quickstart_config_validates(run_cli):
    code, stdout, _ = run_cli("rephrase", REPO / "configs/rephrase/quickstart.yaml", "--dry-run")
    assert code == 0
    resolved = json.loads(stdout)
    assert resolved["config"]["engine"]["model"] == ".spt/models/SmolLM2-135M-Instruct"
    assert len(resolved["styles"]) >= 8
