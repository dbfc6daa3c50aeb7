"""Bad command-line input, one row each: exit code 2, a one-line message naming the input and the rule, nothing
written (every file under the test's folder is unchanged, foreign files included), and no traceback.

To add a case, add a row to CASES: ``Case(id, argv, code, message, setup)``. ``argv`` and ``message`` may use
``{tmp}`` (the test's folder), ``{repo}`` and ``{port}`` (a local port nothing listens on); ``setup`` names a
function in SETUPS that writes the row's inputs into ``tmp`` first. Commands of the generate environment
(rephrase) run through spt's own dispatch, in a subprocess, as users run them.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spt.models import default_model_dir
from tests.conftest import REPO
from tests.test_mix_corpus import make_tokenizer

UNSUPPORTED = "unsupported scheme {scheme}:// (use a local path or s3://BUCKET/PREFIX)"
FOREIGN = "folder is not empty and has no .spt-owner.json (not written by spt)"


@dataclass(frozen=True)
class Case:
    """One bad invocation: ``argv`` after ``spt``, the exit code, a fragment of the one error line, the setup."""

    id: str
    argv: tuple[str, ...]
    code: int
    message: str
    setup: str = "nothing"


# --- inputs a row can ask for (each writes into tmp) -----------------------------------------------------------

def _nothing(tmp: Path) -> None:
    pass


def _foreign(folder: Path) -> None:
    """A folder with files spt did not write (two of them look like rephrase shards)."""
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"x": [1]}), folder / "part-00000.parquet")
    pq.write_table(pa.table({"x": [2]}), folder / "part-00001.parquet")


def _texts(tmp: Path) -> None:
    """A good corpus, a parquet without a text column, a file that is not parquet, a plain file, a foreign folder,
    a folder another stage owns, a tokenizer, a notebook that is not JSON; then configs that use them."""
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["hello world " * 40, "good day " * 50]}), tmp / "good.parquet")
    pq.write_table(pa.table({"id": ["a"], "body": ["no text column"]}), tmp / "notext.parquet")
    (tmp / "fake.parquet").write_bytes(b"not parquet at all")
    (tmp / "afile").write_text("a plain file")
    _foreign(tmp / "foreign")
    (tmp / "owned").mkdir()
    (tmp / "owned" / ".spt-owner.json").write_text(json.dumps(
        {"format": "spt-owner/1", "stage": "tokenizer", "fingerprint": "f", "parts": {}}))
    make_tokenizer(tmp / "tok")
    (tmp / "broken.ipynb").write_text("{not json")
    (tmp / "tokenizer.yaml").write_text(f"kind: tokenizer\ninputs: [{tmp}/good.parquet]\noutput_dir: {tmp}/tok-out\n")
    (tmp / "corpora.yaml").write_text(f"kind: corpora\noutput_dir: {tmp}/corpora\n")
    (tmp / "mix.yaml").write_text(
        f"kind: mix\nname: m\noutput_dir: {tmp}/mix\ntokenizer: {tmp}/tok\ntotal_tokens: 64\nseq_len: 4\n"
        f"global_batch_size: 2\nsources:\n  - {{name: a, role: general, paths: [{tmp}/good.parquet]}}\n"
    )
    (tmp / "rephrase.yaml").write_text(
        f"kind: rephrase\ninput:\n  paths: [{tmp}/good.parquet]\nstyles:\n  library: {REPO}/configs/rephrase/styles.yaml\n"
        f"engine:\n  model: {default_model_dir()}\noutput:\n  dir: {tmp}/rephrase\n"
    )


def _hf(tmp: Path) -> None:
    """The texts, a DatasetDict saved with save_to_disk (splits train, validation) and an unfinished run."""
    from datasets import Dataset, DatasetDict

    _texts(tmp)
    rows = [{"id": "a", "text": "hello world " * 40}]
    DatasetDict({"train": Dataset.from_list(rows), "validation": Dataset.from_list(rows)}).save_to_disk(
        str(tmp / "saved"))
    (tmp / "run").mkdir()
    (tmp / "run" / "config.json").write_text(json.dumps({"kind": "train", "mix": str(tmp / "mix.json")}))


SETUPS = {"nothing": _nothing, "texts": _texts, "hf": _hf}
HUB_OFFLINE = "not a local dataset, and offline mode is on (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE) and it is not in the HF cache"

NB = "{repo}/notebooks/choose_repetition_fraction.ipynb"

CASES = [
    # tokenizer: data files and columns, output locations
    Case("tokenizer: parquet without a text column", ("tokenizer", "{tmp}/tokenizer.yaml", "inputs=[{tmp}/notext.parquet]"),
         2, "inputs[0]='{tmp}/notext.parquet': no column 'text' (columns: id, body)", "texts"),
    Case("tokenizer: not a parquet file", ("tokenizer", "{tmp}/tokenizer.yaml", "inputs=[{tmp}/fake.parquet]"),
         2, "inputs[0]='{tmp}/fake.parquet': not a readable parquet file (", "texts"),
    Case("tokenizer: output is a file", ("tokenizer", "{tmp}/tokenizer.yaml", "output_dir={tmp}/afile"),
         2, "tokenizer.output_dir='{tmp}/afile': exists and is not a folder", "texts"),
    Case("tokenizer: output below a file", ("tokenizer", "{tmp}/tokenizer.yaml", "output_dir={tmp}/afile/tok"),
         2, "tokenizer.output_dir='{tmp}/afile/tok': {tmp}/afile is a file, not a folder", "texts"),
    Case("tokenizer: output holds foreign files", ("tokenizer", "{tmp}/tokenizer.yaml", "output_dir={tmp}/foreign"),
         2, "tokenizer.output_dir='{tmp}/foreign': " + FOREIGN, "texts"),
    Case("tokenizer: unsupported scheme", ("tokenizer", "{tmp}/tokenizer.yaml", "output_dir=gs://bucket/tok"),
         2, "tokenizer.output_dir='gs://bucket/tok': " + UNSUPPORTED.format(scheme="gs"), "texts"),
    # corpora: output locations
    Case("corpora: output holds foreign files", ("corpora", "{tmp}/corpora.yaml", "output_dir={tmp}/foreign"),
         2, "corpora.output_dir='{tmp}/foreign': " + FOREIGN, "texts"),
    Case("corpora: output of another stage", ("corpora", "{tmp}/corpora.yaml", "output_dir={tmp}/owned"),
         2, "corpora.output_dir='{tmp}/owned': holds the output of `spt tokenizer`, not of `spt corpora`", "texts"),
    Case("corpora: http is not storage", ("corpora", "{tmp}/corpora.yaml", "output_dir=http://example.com/c"),
         2, "corpora.output_dir='http://example.com/c': " + UNSUPPORTED.format(scheme="http"), "texts"),
    Case("corpora: s3 without a bucket", ("corpora", "{tmp}/corpora.yaml", "output_dir=s3:///c"),
         2, "corpora.output_dir='s3:///c': expected s3://BUCKET/PREFIX", "texts"),
    # mix: output and cache locations, input schemes
    Case("mix plan: output holds foreign files", ("mix", "plan", "{tmp}/mix.yaml", "output_dir={tmp}/foreign"),
         2, "mix.output_dir='{tmp}/foreign': " + FOREIGN, "texts"),
    Case("mix build: output holds foreign files", ("mix", "build", "{tmp}/mix.yaml", "output_dir={tmp}/foreign"),
         2, "mix.output_dir='{tmp}/foreign': " + FOREIGN, "texts"),
    Case("mix build: cache holds foreign files", ("mix", "build", "{tmp}/mix.yaml", "cache_dir={tmp}/foreign"),
         2, "mix.cache_dir='{tmp}/foreign': " + FOREIGN, "texts"),
    Case("mix: hdfs input", ("mix", "plan", "{tmp}/mix.yaml", "sources[0].paths=[hdfs://nn/data]"),
         2, "mix.sources[0].paths[0]='hdfs://nn/data': " + UNSUPPORTED.format(scheme="hdfs"), "texts"),
    # rephrase (generate environment)
    Case("rephrase: output holds foreign shards", ("rephrase", "{tmp}/rephrase.yaml", "output.dir={tmp}/foreign"),
         2, "output.dir='{tmp}/foreign': " + FOREIGN, "texts"),
    Case("rephrase: output of another stage", ("rephrase", "{tmp}/rephrase.yaml", "output.dir={tmp}/owned"),
         2, "output.dir='{tmp}/owned': holds the output of `spt tokenizer`, not of `spt rephrase`", "texts"),
    Case("rephrase: input without a text column", ("rephrase", "{tmp}/rephrase.yaml", "input.paths=[{tmp}/notext.parquet]"),
         2, "{tmp}/notext.parquet: no column 'text' (columns: id, body); set input.text_column/id_column", "texts"),
    Case("rephrase: unsupported scheme", ("rephrase", "{tmp}/rephrase.yaml", "output.dir=gs://b/r"),
         2, "rephrase.output.dir='gs://b/r': " + UNSUPPORTED.format(scheme="gs"), "texts"),
    # Hugging Face datasets as input (conftest sets offline mode): columns, splits, paths, the cache
    Case("corpora: hf dataset without the text column",
         ("corpora", "{tmp}/corpora.yaml", "domain.hf.path={tmp}/saved", "domain.hf.text_column=body"),
         2, "corpora.domain.hf.text_column='body': no such column in '{tmp}/saved:train' (columns: id, text)", "hf"),
    Case("corpora: hf json file not found",
         ("corpora", "{tmp}/corpora.yaml", "general.hf.path=json", "general.hf.data_files=[{tmp}/nope.jsonl]"),
         2, "corpora.general.hf.path='json': not found (Unable to find '{tmp}/nope.jsonl')", "hf"),
    Case("mix plan: hf split unknown",
         ("mix", "plan", "{tmp}/mix.yaml", "sources[0].paths=[]", "sources[0].hf.path={tmp}/saved",
          "sources[0].hf.split=test"),
         2, "mix.sources[0].hf.split='test': no such split in '{tmp}/saved' (splits: train, validation)", "hf"),
    Case("mix build: hub dataset offline and not cached",
         ("mix", "build", "{tmp}/mix.yaml", "sources[0].paths=[]", "sources[0].hf.path=someone/not-cached"),
         2, "mix.sources[0].hf.path='someone/not-cached': " + HUB_OFFLINE, "hf"),
    Case("rephrase: hf path not found", ("rephrase", "{tmp}/rephrase.yaml", "input.paths=[]", "input.hf.path={tmp}/nope"),
         2, "rephrase.input.hf.path='{tmp}/nope': not found (Couldn't find any data file at {tmp}/nope.)", "hf"),
    # export: the run
    Case("export: unfinished run", ("export", "{tmp}/run", "--out", "{tmp}/hf"),
         2, "run='{tmp}/run': unfinished run (no summary.json); finish it with `spt train` first", "hf"),
    Case("export: no such run", ("export", "{tmp}/nope", "--out", "{tmp}/hf"), 2, "run='{tmp}/nope': no such run folder"),
    # notebook: path, parameters, output folder
    Case("notebook: no such file", ("notebook", "{tmp}/nope.ipynb", "--out", "{tmp}/report"),
         2, "{tmp}/nope.ipynb: no such notebook"),
    Case("notebook: not a notebook", ("notebook", "{tmp}/broken.ipynb", "--out", "{tmp}/report"),
         2, "{tmp}/broken.ipynb: not a readable notebook (", "texts"),
    Case("notebook: unknown parameter", ("notebook", NB, "--out", "{tmp}/report", "-p", "budget=1e6"),
         2, "-p budget: the notebook has no such parameter (its parameters: results_dir, "),
    Case("notebook: parameter without a name", ("notebook", NB, "--out", "{tmp}/report", "-p", "=3"),
         2, "-p '=3': expected NAME=VALUE with a Python name"),
    Case("notebook: parameter value not YAML", ("notebook", NB, "--out", "{tmp}/report", "-p", "budgets=[1e6"),
         2, "-p 'budgets=[1e6': the value is not valid YAML ("),
    Case("notebook: output is a file", ("notebook", NB, "--out", "{tmp}/afile"),
         2, "--out='{tmp}/afile': exists and is not a folder", "texts"),
    Case("notebook: output holds foreign files", ("notebook", NB, "--out", "{tmp}/foreign"),
         2, "--out='{tmp}/foreign': " + FOREIGN, "texts"),
    Case("notebook: unsupported scheme", ("notebook", NB, "--out", "gs://b/report", "--dry-run"),
         2, "--out='gs://b/report': " + UNSUPPORTED.format(scheme="gs")),
    # model check
    Case("model check: no output tokens", ("model", "check", "--max-tokens", "0", "--dry-run"),
         2, "--max-tokens=0: must be >= 1"),
    # submit: command, working folder, address
    Case("submit: no command", ("submit", "--address", "http://127.0.0.1:{port}"),
         2, "submit: give the command after --, starting with spt"),
    Case("submit: not an spt command", ("submit", "--address", "http://127.0.0.1:{port}", "--", "python", "x.py"),
         2, "submit: give the command after --, starting with spt"),
    Case("submit: unknown spt command", ("submit", "--address", "http://127.0.0.1:{port}", "--", "spt", "frobnicate"),
         2, "submit: not a valid spt command: spt frobnicate"),
    Case("submit: missing working folder", ("submit", "--address", "http://127.0.0.1:{port}", "--working-dir",
                                            "{tmp}/nowhere", "--", "spt", "corpora", "c.yaml"),
         2, "--working-dir='{tmp}/nowhere': no such folder"),
    Case("submit: not the Jobs API", ("submit", "--address", "ray://127.0.0.1:10001", "--", "spt", "corpora", "c.yaml"),
         2, "--address='ray://127.0.0.1:10001': ray:// is not the Jobs API; give http://HOST:8265"),
    Case("submit: port not a number", ("submit", "--address", "127.0.0.1:http", "--", "spt", "corpora", "c.yaml"),
         2, "--address='127.0.0.1:http': the port is not a number"),
    Case("submit: nothing listens there", ("submit", "--address", "http://127.0.0.1:{port}", "--", "spt", "corpora",
                                           "c.yaml"),
         2, "cannot reach the Ray cluster at http://127.0.0.1:{port} (127.0.0.1:{port}: Connection refused)"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with its size and modification time: equal snapshots = nothing written."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, tmp_path, capfd, monkeypatch):
    from cli.main import main

    SETUPS[case.setup](tmp_path)
    values = {"tmp": tmp_path, "repo": REPO, "port": _free_port()}
    argv = [arg.format(**values) for arg in case.argv]
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)  # a command that wrongly wrote to the working folder would show in the snapshot
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capfd.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == case.code, err[-2000:]
    assert len(errors) == 1 and case.message.format(**values) in errors[0], err[-2000:]
    assert "Traceback" not in err and out == ""
    assert snapshot(tmp_path) == before  # nothing written, foreign files untouched
