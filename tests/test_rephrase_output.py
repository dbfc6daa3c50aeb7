"""The rephrase output folder without the engine: a changed config, input content or model is refused (or
replaced with --force), never reused; the folder works the same on S3; the mix reads only committed shards."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pipelines.mix.documents import resolve_inputs
from pipelines.rephrase.commit import OutputDir, part_name
from pipelines.rephrase.runner import prepare
from spt import storage
from spt.config import load_config
from spt.errors import InputError
from spt.storage import ownership
from tests.test_rephrase_data import write_config, write_inputs
from tests.test_storage import bucket, moto_endpoint  # noqa: F401  (fixtures)

ROWS = pa.table({"id": ["r1", "r2"], "source_id": ["p-0", "p-1"], "text": ["one", "two"]})


def open_output(config_path, *overrides, force=False) -> OutputDir:
    plan = prepare(load_config(config_path, list(overrides)))
    return OutputDir(plan.config.output.dir, plan.header, force=force)


def test_changed_config_or_input_content_is_refused_and_force_replaces(tmp_path):
    inputs, out = tmp_path / "in", tmp_path / "out"
    write_inputs(inputs)
    path = write_config(tmp_path, inputs, out)
    first = open_output(path)
    first.commit(0, ROWS, {"rows": 2})
    first.close()
    # a speed setting is not part of the fingerprint: the same output, resumed
    again = open_output(path, "engine.batch_size=3")
    assert again.done() == {0}
    again.close()
    shard = (out / part_name(0)).read_bytes()
    with pytest.raises(InputError) as info:
        open_output(path, "sampling.temperature=0.2")
    assert info.value.problems[0].startswith(
        f"output.dir={str(out)!r}: holds `spt rephrase` output made before its config changed (fingerprint ")
    # the same file names with other content: the inputs changed, even with the same sizes
    jsonl = next(inputs.glob("*.jsonl"))
    data = jsonl.read_bytes()
    assert b"The moon" in data
    jsonl.write_bytes(data.replace(b"The moon", b"The Moon"))
    with pytest.raises(InputError) as info:
        open_output(path)
    assert "made before its inputs changed" in info.value.problems[0]
    assert (out / part_name(0)).read_bytes() == shard  # refused: nothing touched
    forced = open_output(path, force=True)
    forced.close()
    assert forced.done() == set() and part_name(0) in forced.removed and not (out / part_name(0)).exists()
    assert ownership.read_marker(str(out))["parts"]["inputs"] == prepare(load_config(path)).header[
        "fingerprint_parts"]["inputs"]


def test_output_folder_on_s3_commits_resumes_and_feeds_the_mix_only_committed_shards(bucket, tmp_path):  # noqa: F811
    out = f"{bucket}/rephrase"
    header = {"config_hash": "h1", "units_total": 3}
    first = OutputDir(out, header)
    assert first.layout.lock is None  # S3 has no locks
    first.commit(0, ROWS, {"rows": 2})
    first.commit(1, None, {"rows": 0})
    # a kill between the shard's upload and the manifest's: a shard the manifest does not list
    storage.write_parquet(storage.join(out, part_name(2)), ROWS)
    files, problems = resolve_inputs([out], "mix.sources[0].paths", allow_incomplete=True)
    assert problems == [] and [f.location for f in files] == [storage.join(out, part_name(0))]
    again = OutputDir(out, header)
    assert again.done() == {0, 1} and again.removed == [part_name(2)]
    assert again.committed_source_ids() == {"p-0", "p-1"}
    assert [e.relative for e in storage.list_files(out, hidden=True)] == [
        ".spt-owner.json", "manifest.json", part_name(0)]
    with pytest.raises(InputError) as info:
        OutputDir(out, {"config_hash": "h2"})
    assert "holds `spt rephrase` output made before its fingerprint changed" in info.value.problems[0]


def test_mix_reads_the_shards_a_local_manifest_lists(tmp_path):
    out = tmp_path / "rephrase"
    folder = OutputDir(str(out), {"config_hash": "h1"})
    folder.commit(0, ROWS, {"rows": 2})
    folder.close()
    (out / part_name(1)).write_bytes((out / part_name(0)).read_bytes())  # uncommitted: not an input yet
    files, problems = resolve_inputs([str(out)], "mix.sources[0].paths")
    assert problems == [] and [f.location for f in files] == [str(out / part_name(0))]
