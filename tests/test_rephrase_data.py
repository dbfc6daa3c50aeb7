"""Rephrasing without the engine: reading every input kind, each bad-row kind, chunking, style draws, prompt
budgets and the exactly-once output folder. Real files, the real SmolLM2 tokenizer; no vLLM, no Ray."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.rephrase.chunking import chunk_document
from pipelines.rephrase.commit import OutputDir, part_name
from pipelines.rephrase.expand import ExpandUnit
from pipelines.rephrase.prompts import PromptBuilder, draw_styles
from pipelines.rephrase.runner import expected_keys, prepare
from pipelines.rephrase.sources import plan_units, read_unit
from spt.config import load_config
from spt.config.rephrase import RephraseChunking, RephraseInput, StyleSpec
from spt.errors import InputError
from spt.models import default_model_dir

REPO = Path(__file__).resolve().parents[1]

# Short English documents written for these tests (each passes the default quality rules).
GOOD = [
    "Rivers shape the land they cross. Over thousands of years, moving water carries sand and stones downstream, "
    "cutting valleys into rock and building wide plains where it slows down. Farmers have settled beside rivers "
    "since the earliest towns, because the soil left behind by floods is rich and easy to work. Many old cities "
    "grew at the point where a river could first be crossed on foot or by a short bridge.",
    "A compiler translates source code written by people into instructions a machine can run. It first reads the "
    "text and breaks it into tokens, then builds a tree that shows how the parts of the program fit together. "
    "Later passes check that types agree, remove work that is never needed, and finally choose machine "
    "instructions and registers for every operation in the program.",
    "Bread rises because yeast eats sugar and releases carbon dioxide. The gas forms small bubbles that are "
    "trapped by a stretchy network of gluten proteins, which forms when flour and water are mixed and kneaded. "
    "Heat in the oven makes the bubbles expand, then sets the structure so the loaf keeps its shape after it "
    "cools. Bakers control the flavor by changing the time and temperature of each rise.",
    "The moon has no light of its own; it reflects sunlight. As it travels around the earth every month, we see "
    "different parts of its sunlit half, which is why its shape seems to change from a thin crescent to a full "
    "disk and back again. The same side of the moon always faces the earth, because its rotation has slowed "
    "until one turn takes exactly as long as one orbit.",
    "Vaccines train the immune system without causing the disease. They contain a harmless piece or a weakened "
    "form of a germ, so the body can learn to recognize it. If the real germ arrives later, memory cells react "
    "quickly and make antibodies before the infection can spread. Because many people are protected at once, "
    "the germ finds fewer hosts and even those who cannot be vaccinated are safer.",
    "Double-entry bookkeeping records every transaction twice, once as a debit and once as a credit. When money "
    "is spent on supplies, the cash account goes down and the supplies account goes up by the same amount. "
    "Because the two sides must always balance, many mistakes show up immediately, and the owner can see at "
    "any moment what the business owns, what it owes and how much profit it has made.",
]
LONG_PARAGRAPHS = [
    f"Section {n}. " + "Glaciers form where more snow falls in winter than melts in summer. " * 0
    + f"In the {name} region, observers noted that the ice advanced slowly each year, pressing old snow into "
    "dense blue ice. The weight of the ice makes it flow downhill like a very thick liquid, scraping the rock "
    f"below and carrying boulders far from where they started. Record {n} describes how meltwater streams "
    "sorted the gravel into long ridges that still mark the edge of the old ice sheet today."
    for n, name in enumerate(["northern", "eastern", "western", "southern", "central", "coastal", "alpine",
                              "arctic", "upland", "lowland"], start=1)
]
LONG = "\n\n".join(LONG_PARAGRAPHS)


def write_inputs(folder: Path) -> dict:
    """A parquet file and a jsonl file holding good documents and one of each bad-row kind.

    Returns:
        What the expansion must report: rows per reason, and the good ids.
    """
    folder.mkdir(parents=True, exist_ok=True)
    parquet_rows = [
        {"id": "p-0", "text": GOOD[0]},
        {"id": "p-empty", "text": ""},
        {"id": "p-space", "text": "   \n\t  "},
        {"id": "p-1", "text": GOOD[1]},
        {"id": "p-null", "text": None},
        {"id": "p-long", "text": LONG},
        {"id": "p-short", "text": "Too short to rephrase, far below the minimum number of words for a seed."},
        {"id": "p-2", "text": GOOD[2]},
    ]
    pq.write_table(pa.Table.from_pylist(parquet_rows), folder / "a.parquet")
    lines = [
        json.dumps({"id": "j-3", "text": GOOD[3]}).encode(),
        b'{"id": "j-bad-utf8", "text": "caf\xe9 au lait, ' + b"word " * 60 + b'"}',
        b'{"id": "j-broken", "text": ',
        json.dumps({"id": "j-surrogate", "text": "lone \ud800 surrogate " + "word " * 60}).encode(),
        json.dumps({"id": "j-4", "text": GOOD[4]}).encode(),
        json.dumps({"id": "j-4", "text": GOOD[5]}).encode(),  # duplicate id in the same unit
        b"",
        json.dumps(["not", "an", "object"]).encode(),
        json.dumps({"id": "j-5", "text": GOOD[5]}).encode(),
        json.dumps({"id": "p-0", "text": GOOD[3]}).encode(),  # duplicate of an id in an earlier unit
    ]
    (folder / "b.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    skipped = {
        "empty or whitespace": 3, "missing text": 1, "filter: min_chars": 1, "invalid UTF-8": 2, "invalid JSON": 2,
        "duplicate id": 1,
    }
    return {
        "skipped": skipped,  # as each unit sees it
        "skipped_committed": {**skipped, "duplicate id": 2},  # plus the id repeated across units
        "kept": ["j-3", "j-4", "j-5", "p-0", "p-1", "p-2", "p-long"],
    }


def write_config(folder: Path, inputs: Path, out: Path, extra: str = "") -> Path:
    path = folder / "rephrase.yaml"
    path.write_text(
        f"""kind: rephrase
seed: 0
input:
  paths: [{inputs}]
chunking:
  max_tokens: 128
  max_chunks_per_document: 3
styles:
  library: {REPO}/configs/rephrase/styles.yaml
  per_document: 2
  weights: {{wiki: 2, qa: 1, distill: 1, knowledge_list: 1, textbook: 1}}
engine:
  model: {default_model_dir()}
  max_model_len: 512
  batch_size: 16
sampling:
  max_tokens: 48
  temperature: 0.7
output:
  dir: {out}
  documents_per_shard: 3
  keep_original: true
{extra}"""
    )
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("rephrase-data")
    expected = write_inputs(root / "in")
    config = load_config(write_config(root, root / "in", root / "out"), kind="rephrase")
    plan = prepare(config)
    stage = ExpandUnit(plan.config, plan.styles, plan.weights, plan.model)
    outputs = [stage(unit.to_dict()) for unit in plan.units]
    return root, expected, plan, outputs


def unit_stats(outputs) -> tuple[Counter, Counter]:
    totals, skipped = Counter(), Counter()
    for rows in outputs:
        stats = json.loads(rows[-1]["unit_stats"])
        skipped.update(stats["skipped"])
        totals.update({k: v for k, v in stats.items() if isinstance(v, int)})
    return totals, skipped


def test_units_are_fixed_ranges_of_sorted_files(dataset):
    _, _, plan, _ = dataset
    assert [(Path(u.path).name, u.start, u.rows) for u in plan.units] == [
        ("a.parquet", 0, 3), ("a.parquet", 3, 3), ("a.parquet", 6, 2),
        ("b.jsonl", 0, 3), ("b.jsonl", plan.units[4].start, 3), ("b.jsonl", plan.units[5].start, 3),
        ("b.jsonl", plan.units[6].start, 1),
    ]
    assert [u.index for u in plan.units] == list(range(7))


def test_every_bad_row_kind_is_counted_and_skipped(dataset):
    _, expected, _, outputs = dataset
    totals, skipped = unit_stats(outputs)
    assert dict(skipped) == expected["skipped"]
    assert totals["documents"] == 18
    assert totals["kept"] == len(expected["kept"]) + 1  # the cross-unit duplicate is dropped at commit
    sources = {row["source_id"] for rows in outputs for row in rows[:-1]}
    assert sources == set(expected["kept"])


def test_long_document_is_split_and_truncated_and_counted(dataset):
    _, _, plan, outputs = dataset
    totals, _ = unit_stats(outputs)
    assert (totals["split"], totals["truncated"]) == (1, 1)
    long_rows = [row for rows in outputs for row in rows[:-1] if row["source_id"] == "p-long"]
    assert sorted({row["chunk"] for row in long_rows}) == [0, 1, 2]
    builder = PromptBuilder(plan.model, False, 512)
    for row in long_rows:
        assert len(builder.encode(row["original"])[0]) <= 129


def test_every_prompt_fits_the_context_with_its_output(dataset):
    _, _, plan, outputs = dataset
    rows = [row for rows in outputs for row in rows[:-1]]
    assert rows and all(r["prompt_tokens"] + r["max_tokens"] <= 512 for r in rows)
    assert all(r["prompt_tokens"] == len(r["prompt_token_ids"]) for r in rows)
    assert {r["max_tokens"] for r in rows} == {48}
    assert all(r["prompt_token_ids"][:3] == [1, 9690, 198] for r in rows)  # <|im_start|>system\n


def test_keys_are_unique_and_styles_follow_the_weights(dataset):
    _, _, plan, outputs = dataset
    keys = [(r["source_id"], r["chunk"], r["style"]) for rows in outputs[:-1] for r in rows[:-1]]
    assert len(keys) == len(set(keys))
    assert set(keys) == expected_keys(plan)  # the last unit only repeats p-0, which the commit drops
    per_doc = Counter((source, chunk) for source, chunk, _ in keys)
    assert set(per_doc.values()) == {2}
    assert {style for _, _, style in keys} <= {"wiki", "qa", "distill", "knowledge_list", "textbook"}


def test_style_draw_is_deterministic_and_weighted():
    weights = {"a": 3.0, "b": 1.0, "c": 0.0}
    draws = Counter(draw_styles(0, f"doc-{i}", weights, 1)[0] for i in range(4000))
    assert set(draws) == {"a", "b"}
    assert 0.70 < draws["a"] / 4000 < 0.80
    assert draw_styles(0, "x", weights, 2) == draw_styles(0, "x", dict(reversed(weights.items())), 2) == ["a", "b"]
    assert draw_styles(1, "doc-1", {"a": 1, "b": 1, "d": 1}, 1) != [] and len(draw_styles(0, "y", weights, 5)) == 2


def test_chunking_balances_pieces_and_counts_truncation():
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(default_model_dir() / "tokenizer.json"))
    encoding = tokenizer.encode(LONG, add_special_tokens=False)
    starts = [s for s, _ in encoding.offsets]
    total = len(starts)
    split = chunk_document(LONG, starts, RephraseChunking(max_tokens=128, max_chunks_per_document=50))
    assert (split.split, split.truncated, split.num_tokens) == (True, False, total)
    assert len(split.texts) == -(-total // int(128 * 0.85))  # pieces planned at 85% of the limit
    assert "".join(LONG.split()) == "".join("".join(split.texts).split())  # nothing lost or repeated
    assert all(text.endswith(".") for text in split.texts)  # cut at sentence or paragraph ends
    truncated = chunk_document(LONG, starts, RephraseChunking(max_tokens=128, long_documents="truncate"))
    assert (len(truncated.texts), truncated.truncated, truncated.split) == (1, True, False)
    short = chunk_document(GOOD[0], starts[:10], RephraseChunking(max_tokens=128))
    assert short.texts == [GOOD[0]] and not short.split


def test_prompt_is_cut_to_fit_a_small_context():
    builder = PromptBuilder(str(default_model_dir()), True, 256)
    style = StyleSpec(description="d", template="Rewrite:\n{text}", max_output_tokens=128)
    ids, truncated = builder.prompt_ids(style, LONG, max_input_tokens=200, max_output_tokens=128)
    assert truncated and len(ids) <= 256 - 128
    ids, truncated = builder.prompt_ids(style, GOOD[0], max_input_tokens=200, max_output_tokens=128)
    assert not truncated


def test_hf_saved_dataset_and_dataset_dict_are_read(tmp_path):
    """The layout `datasets.save_to_disk` writes: Arrow stream files listed in state.json (and a DatasetDict)."""
    table = pa.table({"id": ["h-0", "h-1", "h-2"], "text": [GOOD[0], GOOD[1], "  "]})
    split_dir = tmp_path / "dd" / "train"
    split_dir.mkdir(parents=True)
    with pa.ipc.new_stream(split_dir / "data-00000-of-00001.arrow", table.schema) as writer:
        for batch in table.to_batches(max_chunksize=2):
            writer.write_batch(batch)
    (split_dir / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    (split_dir / "dataset_info.json").write_text("{}")
    (tmp_path / "dd" / "dataset_dict.json").write_text(json.dumps({"splits": ["train"]}))
    for path in (tmp_path / "dd", split_dir):
        spec = RephraseInput(paths=[str(path)])
        units = plan_units(spec, 2)
        assert [(u.format, u.start, u.stop) for u in units] == [("hf", 0, 2), ("hf", 2, 3)]
        docs = [d for u in units for d in read_unit(u, spec)]
        assert [d.source_id for d in docs] == ["h-0", "h-1", "h-2"]
        assert docs[0].text.decode() == GOOD[0]
    with pytest.raises(InputError) as info:
        plan_units(RephraseInput(paths=[str(tmp_path / "dd")], hf_split="test"), 2)
    assert info.value.problems == [
        f"input.paths[0]='{tmp_path / 'dd'}': DatasetDict has no split 'test' (splits: train) (set input.hf_split)"
    ]


def test_invalid_utf8_in_a_parquet_binary_column_and_ids_from_rows(tmp_path):
    table = pa.table({"body": pa.array([GOOD[0].encode(), b"caf\xe9 " * 50, None], pa.binary())})
    pq.write_table(table, tmp_path / "x.parquet")
    spec = RephraseInput(paths=[str(tmp_path)], id_column=None, text_column="body", max_documents=2)
    units = plan_units(spec, 10)
    assert [(u.start, u.stop) for u in units] == [(0, 2)]
    docs = list(read_unit(units[0], spec))
    assert [d.source_id for d in docs] == ["x.parquet:0", "x.parquet:1"]
    from pipelines.rephrase.quality import decode_text

    assert [decode_text(d.text)[1] for d in docs] == [None, "invalid UTF-8"]


def test_jsonl_units_split_at_line_starts_and_honour_max_documents(tmp_path):
    lines = [json.dumps({"id": f"d{i}", "text": f"text {i}"}) for i in range(7)]
    (tmp_path / "x.jsonl").write_text("\n".join(lines))  # no newline at the end
    spec = RephraseInput(paths=[str(tmp_path / "x.jsonl")])
    units = plan_units(spec, 3)
    assert [u.rows for u in units] == [3, 3, 1]
    assert [d.source_id for u in units for d in read_unit(u, spec)] == [f"d{i}" for i in range(7)]
    limited = plan_units(RephraseInput(paths=[str(tmp_path / "x.jsonl")], max_documents=4), 3)
    assert [d.source_id for u in limited for d in read_unit(u, spec)] == [f"d{i}" for i in range(4)]


def test_input_problems_are_named_before_anything_is_written(tmp_path):
    pq.write_table(pa.table({"id": ["a"], "body": ["x"]}), tmp_path / "a.parquet")
    (tmp_path / "empty").mkdir()
    spec = RephraseInput(paths=[str(tmp_path / "a.parquet"), str(tmp_path / "nope"), str(tmp_path / "empty")])
    with pytest.raises(InputError) as info:
        plan_units(spec, 4)
    assert info.value.problems == [
        f"input.paths[1]='{tmp_path / 'nope'}': no such file or folder",
        f"input.paths[2]='{tmp_path / 'empty'}': folder has no .parquet, .jsonl or .arrow files",
    ]
    with pytest.raises(InputError) as info:
        plan_units(RephraseInput(paths=[str(tmp_path / "a.parquet")]), 4)
    assert info.value.problems == [
        f"{tmp_path / 'a.parquet'}: no column 'text' (columns: id, body); set input.text_column/id_column"
    ]


def test_output_dir_removes_uncommitted_files_and_skips_committed_units(tmp_path):
    header = {"config_hash": "h1", "units_total": 3}
    out = OutputDir(tmp_path, header)
    table = pa.table({"id": ["r1"], "source_id": ["s"]})
    out.commit(0, table, {"rows": 1})
    out.commit(1, None, {"rows": 0})
    out.close()
    # What a kill between the shard rename and the manifest write, or during a write, leaves behind:
    (tmp_path / part_name(2)).write_bytes(b"PAR1 half")
    (tmp_path / f".{part_name(2)}.abc.tmp").write_bytes(b"partial")
    (tmp_path / ".manifest.json.xyz.tmp").write_text("{")
    (tmp_path / "notes.txt").write_text("a user's file stays")
    again = OutputDir(tmp_path, header)
    assert again.done() == {0, 1}
    assert sorted(again.removed) == sorted([part_name(2), f".{part_name(2)}.abc.tmp", ".manifest.json.xyz.tmp"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", ".spt-owner.json", "manifest.json", "notes.txt",
                                                          part_name(0)]
    assert again.manifest["units"]["0"]["file"] == part_name(0) and again.manifest["units"]["1"]["file"] is None
    assert oct(os.stat(tmp_path / part_name(0)).st_mode & 0o777) != "0o600"
    with pytest.raises(InputError) as info:
        OutputDir(tmp_path, header)
    assert info.value.problems == [f"output.dir={str(tmp_path)!r}: another spt rephrase run is writing there"]
    again.close()
    with pytest.raises(InputError) as info:
        OutputDir(tmp_path, {"config_hash": "h2"})
    assert info.value.problems == [
        f"output.dir={str(tmp_path)!r}: holds `spt rephrase` output made before its fingerprint changed "
        "(fingerprint h1, now h2); rerun with --force to replace it, or choose another folder"
    ]
    # --force replaces this stage's own files (shards, manifest), never a file it did not write
    forced = OutputDir(tmp_path, {"config_hash": "h2"}, force=True)
    forced.close()
    assert forced.done() == set() and sorted(forced.removed) == sorted([part_name(0), "manifest.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", ".spt-owner.json", "notes.txt"]


def test_a_speed_setting_does_not_change_the_config_identity(tmp_path):
    inputs = tmp_path / "in"
    write_inputs(inputs)
    path = write_config(tmp_path, inputs, tmp_path / "out")
    base = prepare(load_config(path)).header["config_hash"]
    assert prepare(load_config(path, ["engine.batch_size=3", "engine.concurrency=2"])).header["config_hash"] == base
    assert prepare(load_config(path, ["sampling.temperature=0.2"])).header["config_hash"] != base


def test_s3_inputs_through_a_local_moto_server(tmp_path, monkeypatch):
    """s3:// paths: listing, parquet row ranges and jsonl byte ranges, against moto on 127.0.0.1."""
    import socket
    import subprocess
    import sys
    import time

    # moto[server] is in the dev extra of both environments: a missing server is a setup bug, not a skip.
    server = Path(sys.executable).parent / "moto_server"
    assert server.exists(), "moto[server] is missing: run scripts/setup.sh"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import boto3

        for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                           "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(key, value)
        url = f"http://127.0.0.1:{port}"
        client = boto3.client("s3", endpoint_url=url)
        for _ in range(100):
            try:
                client.create_bucket(Bucket="spt-seed")
                break
            except Exception:
                time.sleep(0.1)
        pq.write_table(pa.table({"id": ["a", "b", "c"], "text": GOOD[:3]}), tmp_path / "x.parquet")
        client.upload_file(str(tmp_path / "x.parquet"), "spt-seed", "docs/x.parquet")
        body = b'{"id": "j", "text": "hello"}\n{"id": "k", "text": "caf\xe9"}\n'
        client.put_object(Bucket="spt-seed", Key="docs/y.jsonl", Body=body)
        monkeypatch.setenv("S3_ENDPOINT_URL", url)
        spec = RephraseInput(paths=["s3://spt-seed/docs"])
        units = plan_units(spec, 2)
        assert [(u.scheme, u.label, u.start, u.stop) for u in units] == [
            ("s3", "x.parquet", 0, 2), ("s3", "x.parquet", 2, 3), ("s3", "y.jsonl", 0, len(body)),
        ]
        docs = [d for u in units for d in read_unit(u, spec)]
        assert [(d.source_id, d.problem) for d in docs] == [
            ("a", None), ("b", None), ("c", None), ("j", None), ("y.jsonl:1", "invalid UTF-8"),
        ]
        with pytest.raises(InputError) as info:
            plan_units(RephraseInput(paths=["s3://spt-seed/none"]), 2)
        assert info.value.problems == ["input.paths[0]='s3://spt-seed/none': no such file or folder"]
    finally:
        proc.kill()
        proc.wait()
