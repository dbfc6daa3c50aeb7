"""Rephrased sources in a mix: honest held-out splits by source document, rows of held-out documents never trained
on, quality-gate rejections skipped, incomplete rephrase outputs refused, and the domain's rephrasings accounted
with the domain (``domain_synthetic`` with ``synthetic_share``).

The rephrase output is written through the real output folder (:class:`OutputDir`, the manifest the mix reads);
its rows are made here so that every word names its source document: document k is the word ``x<k>`` repeated,
which the word-level test tokenizer maps to id 203 + k, so a packed sample read back from the MDS shards tells
which documents it holds. A real local Ray builds the mix.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.mix.documents import Document, SplitRule
from pipelines.rephrase.commit import SCHEMA, OutputDir
from tests.test_mix_corpus import document, make_tokenizer, write_mix

STYLES = ("wiki", "qa", "distill")
TRAIN_DOCS = range(20)  # doc-0 .. doc-19: the domain's training documents
HELDOUT_DOCS = range(20, 25)  # held out of the domain (its heldout.parquet)
MARKED_DOC = 30  # rephrased from the rephrase run's heldout_paths: rows say split=heldout
FIRST_EXTRA_ID = 203  # the test tokenizer's ids: 3 specials, 4 x 50 source words, then x0, x1, ...


def rephrase_rows(doc: int, split: str = "train", rejected: dict | None = None) -> list[dict]:
    rejected = rejected or {}
    return [
        # styles differ in length, so a split by text hash would scatter one document's rows
        {"id": f"rph-{doc}-{style}", "source_id": f"doc-{doc}", "chunk": 0, "style": style,
         "text": " ".join([f"x{doc}"] * (18 + STYLES.index(style))), "prompt_tokens": 40, "input_tokens": 30,
         "output_tokens": 20,
         "model": "test", "error": None, "rejected": rejected.get(style), "split": split, "finish_reason": "stop"}
        for style in STYLES
    ]


def write_rephrase_output(folder: Path, units: list[list[dict]], total: int | None = None) -> Path:
    out = OutputDir(str(folder), {"config_hash": "h", "units_total": total or len(units)})
    for index, rows in enumerate(units):
        out.commit(index, pa.Table.from_pylist(rows, schema=SCHEMA), {"rows": len(rows)})
    out.close()
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("synthetic-mix")
    (root / "domain").mkdir()
    pq.write_table(pa.table({"id": [f"doc-{k}" for k in TRAIN_DOCS],
                             "text": [document("d", k, 30) for k in TRAIN_DOCS]}), root / "domain" / "train.parquet")
    pq.write_table(pa.table({"id": [f"doc-{k}" for k in HELDOUT_DOCS],
                             "text": [document("d", k, 30) for k in HELDOUT_DOCS]}),
                   root / "domain" / "heldout.parquet")
    (root / "general").mkdir()
    pq.write_table(pa.table({"text": [document("g", k, 63) for k in range(60)]}), root / "general" / "train.parquet")
    units = [
        [row for k in range(0, 12) for row in rephrase_rows(k, rejected={"qa": "language"} if k == 1 else None)],
        [row for k in range(12, 20) for row in rephrase_rows(k)],
        # held-out domain documents rephrased by mistake (input.paths held them), and one marked held out
        [row for k in HELDOUT_DOCS for row in rephrase_rows(k)] + rephrase_rows(MARKED_DOC, split="heldout"),
    ]
    write_rephrase_output(root / "rephrase", units)
    return {"root": root, "tokenizer": make_tokenizer(root / "tokenizer", extra_words=40)}


def mix_config(corpus: dict, out: Path, **domain) -> dict:
    root = corpus["root"]
    return {
        "kind": "mix", "name": "synthetic", "output_dir": str(out), "tokenizer": str(corpus["tokenizer"]),
        "total_tokens": 1600, "seq_len": 16, "global_batch_size": 4, "seed": 0,
        "sources": [
            {"name": "domain", "role": "domain", "paths": [str(root / "domain" / "train.parquet")],
             "heldout_paths": [str(root / "domain" / "heldout.parquet")], "fraction": 0.4,
             "synthetic_share": 0.5, **domain},
            {"name": "domain_rephrased", "role": "domain_synthetic", "paths": [str(root / "rephrase")],
             "heldout_fraction": 0.3},
            {"name": "general", "role": "general", "paths": [str(root / "general" / "train.parquet")]},
        ],
        "build": {"workers": 1, "batch_documents": 8},
    }


@pytest.fixture(scope="module")
def built(corpus, tmp_path_factory):
    import ray

    from cli.main import main

    root = tmp_path_factory.mktemp("synthetic-built")
    path = write_mix(root / "mix.yaml", mix_config(corpus, root / "out"))
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main(["mix", "build", str(path)]) == 0
    finally:
        ray.shutdown()
    return root / "out"


def documents_in(folder: Path) -> set[int]:
    """The rephrased documents whose tokens the MDS samples of ``folder`` hold."""
    from streaming import StreamingDataset

    from pipelines.mix.streams import created

    if not folder.exists():
        return set()
    dataset = created(lambda: StreamingDataset(local=str(folder), shuffle=False, batch_size=1))
    found = {int(i) - FIRST_EXTRA_ID for sample in dataset for i in sample["tokens"] if i >= FIRST_EXTRA_ID}
    del dataset
    return found


def test_no_source_document_contributes_to_both_sides_and_held_out_documents_never_train(built):
    manifest = json.loads((built / "mixes" / "synthetic" / "manifest.json").read_text())
    source_dir = Path(next(s["source_dir"] for s in manifest["sources"] if s["name"] == "domain_rephrased"))
    train, heldout = documents_in(source_dir / "train"), documents_in(source_dir / "heldout")
    assert train and heldout and not train & heldout  # all styles of one document on one side
    assert set(HELDOUT_DOCS) <= heldout and MARKED_DOC in heldout  # never rephrased into training data
    assert train | heldout == {*TRAIN_DOCS, *HELDOUT_DOCS, MARKED_DOC}
    # the hash of the document id put some of the domain's training documents on the held-out side as well
    assert heldout - {*HELDOUT_DOCS, MARKED_DOC}


def test_rejected_rows_are_skipped_and_counted_by_reason(built):
    plan = json.loads((built / "mixes" / "synthetic" / "plan.json").read_text())
    row = next(s for s in plan["sources"] if s["name"] == "domain_rephrased")
    assert row["skipped"] == {"rejected: language": 1}
    assert row["documents"] + row["heldout_documents"] == 3 * (len(TRAIN_DOCS) + len(HELDOUT_DOCS) + 1) - 1
    assert row["rephrases"] == "domain" and row["heldout_ids_of_rephrased"] == len(HELDOUT_DOCS)


def test_domain_and_rephrasings_share_delta_and_the_plan_shows_both_epochs(built, corpus, tmp_path, run_cli):
    plan = json.loads((built / "mixes" / "synthetic" / "plan.json").read_text())
    rows = {s["name"]: s for s in plan["sources"]}
    assert (rows["domain"]["fraction"], rows["domain_rephrased"]["fraction"], rows["general"]["fraction"]) == (
        0.2, 0.2, 0.6)
    (group,) = plan["domain_groups"]
    assert group["delta"] == pytest.approx(0.4) and group["synthetic_share"] == 0.5
    assert group["domain"]["unique_tokens"] == rows["domain"]["unique_tokens"]
    assert group["rephrased"]["unique_tokens"] == rows["domain_rephrased"]["unique_tokens"]
    assert group["domain"]["epochs"] == pytest.approx(rows["domain"]["epochs"])
    assert group["rephrased"]["epochs"] == pytest.approx(rows["domain_rephrased"]["epochs"])
    # a sweep varies the synthetic share at a fixed δ: only the split of δ moves
    config = mix_config(corpus, tmp_path / "out", synthetic_share=0.25)
    code, out, err = run_cli("mix", "plan", write_mix(tmp_path / "mix.yaml", config))
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.startswith("  domain: δ"))
    assert line.startswith("  domain: δ 0.4000 with synthetic_share 0.25: domain 0.3000 of T, ")
    assert "; rephrased (domain_rephrased) 0.1000 of T, " in line


def test_split_rule_by_document_id():
    rule = SplitRule("train", 0.5, seed=0)
    sides = {rule.of(Document(f"text {i}", source_id="doc-1")) for i in range(20)}
    assert len(sides) == 1  # every row of one document: one side, whatever its text
    assert rule.split_of("a", "doc-1", marked="heldout") == "heldout"
    assert SplitRule("train", None, 0, frozenset({"doc-2"})).split_of("a", "doc-2") == "heldout"
    assert SplitRule("train", None, 0, frozenset({"doc-2"})).split_of("a", "doc-3") == "train"


def test_incomplete_rephrase_output_is_refused_unless_allowed(corpus, tmp_path, run_cli):
    partial = write_rephrase_output(tmp_path / "partial", [rephrase_rows(k) for k in range(4)], total=6)
    config = mix_config(corpus, tmp_path / "out")
    config["sources"][1]["paths"] = [str(partial)]
    code, out, err = run_cli("mix", "plan", write_mix(tmp_path / "mix.yaml", config))
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"error: mix.sources[1].paths[0]={str(partial)!r}: rephrase output is incomplete (4 of 6 units committed); "
        "finish it with `spt rephrase`, or set allow_incomplete: true on the source to use its committed shards only"
    ]
    config["sources"][1]["allow_incomplete"] = True
    code, out, err = run_cli("mix", "plan", write_mix(tmp_path / "mix.yaml", config))
    assert code == 0, err
    assert ("  domain_rephrased: incomplete rephrase output: 2 work units not committed yet "
            "(allow_incomplete: committed shards only)") in out.splitlines()


@pytest.mark.parametrize("change,expected", [
    (lambda c: c["sources"][1].update(fraction=0.1),
     "mix: sources[1] 'domain_rephrased': a domain_synthetic source takes no fraction; it gets δ x synthetic_share "
     "of its domain"),
    (lambda c: c["sources"][0].pop("synthetic_share"),
     "mix: sources[1] 'domain_rephrased': its share comes from the domain source: set sources[0].synthetic_share "
     "(the share of its fraction δ the rephrasings take)"),
    (lambda c: c["sources"][2].update(synthetic_share=0.5),
     "mix: sources[2] 'general': synthetic_share is for domain sources (role domain), this one is general"),
    (lambda c: c["sources"][1].update(rephrases="web"),
     "mix: sources[1] 'domain_rephrased': rephrases='web': no such source (domain, domain_rephrased, general)"),
    (lambda c: c["sources"][1].update(role="synthetic", fraction=0.1),
     "mix: sources[0] 'domain': synthetic_share=0.5 but no domain_synthetic source rephrases it"),
])
def test_bad_rephrasing_links_are_refused(corpus, tmp_path, run_cli, change, expected):
    config = mix_config(corpus, tmp_path / "out")
    change(config)
    code, out, err = run_cli("mix", "plan", write_mix(tmp_path / "mix.yaml", config))
    assert code == 2 and out == "" and err.splitlines()[0] == f"error: {expected}", err
    assert not (tmp_path / "out").exists()


def test_rephrasing_a_source_without_ids_is_refused(corpus, tmp_path, run_cli):
    no_ids = tmp_path / "heldout.parquet"
    pq.write_table(pa.table({"text": [document("d", 50, 30)]}), no_ids)
    config = mix_config(corpus, tmp_path / "out")
    config["sources"][0]["heldout_paths"] = [str(no_ids)]
    code, _, err = run_cli("mix", "plan", write_mix(tmp_path / "mix.yaml", config))
    assert code == 2
    assert err.splitlines() == [
        f"error: mix.sources[1] 'domain_rephrased': rephrases a source whose file {str(no_ids)!r} has no 'id' "
        "column to match rephrased rows (source_id) against its held-out documents"
    ]
