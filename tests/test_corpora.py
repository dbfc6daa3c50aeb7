"""Sample corpora from text on this machine: schema, determinism, splits, reuse."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from pipelines.corpora import SPLITS, is_english_prose, split_of
from spt.config import CorporaConfig, CorpusLimits
from tests.conftest import tree


def small_config(out, seed=0) -> CorporaConfig:
    limits = dict(max_documents=40, max_bytes=400_000, max_chars=6000)
    return CorporaConfig(
        kind="corpora", output_dir=str(out), seed=seed, heldout_fraction=0.2,
        domain=CorpusLimits(min_chars=300, **limits), general=CorpusLimits(min_chars=300, **limits),
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from pipelines.corpora import build_corpora

    root = tmp_path_factory.mktemp("corpora")
    first = build_corpora(small_config(root / "a"))
    second = build_corpora(small_config(root / "b"))
    other_seed = build_corpora(small_config(root / "c", seed=1))
    return root, first, second, other_seed


def test_same_seed_is_byte_identical(built):
    root, first, second, _ = built
    assert tree(root / "a") == tree(root / "b")
    for name in first["files"]:
        assert (root / "a" / name).read_bytes() == (root / "b" / name).read_bytes()
    assert first["files"] == second["files"]


def test_other_seed_gives_other_corpus(built):
    _, first, _, other_seed = built
    assert first["files"] != other_seed["files"]


def test_schema_sizes_and_splits(built):
    root, first, _, _ = built
    for name in ("domain", "general"):
        ids = []
        for split in SPLITS:
            table = pq.read_table(root / "a" / name / f"{split}.parquet")
            assert table.column_names == ["id", "text", "source"]
            ids += table.column("id").to_pylist()
            texts = table.column("text").to_pylist()
            assert all(300 <= len(t) <= 6000 for t in texts)
            assert first["corpora"][name]["documents"][split] == len(texts)
            assert first["corpora"][name]["bytes"][split] == sum(len(t.encode()) for t in texts)
        assert len(ids) == len(set(ids)) == 40
        assert first["corpora"][name]["documents"]["heldout"] > 0
    domain = pq.read_table(root / "a" / "domain" / "train.parquet").to_pylist()
    assert all(row["source"].startswith("python-stdlib:") for row in domain)
    assert any("def " in row["text"] or "import " in row["text"] for row in domain)
    general = pq.read_table(root / "a" / "general" / "train.parquet").to_pylist()
    assert all(is_english_prose(row["text"]) for row in general)


def test_rerun_reuses_verified_output(built):
    from pipelines.corpora import build_corpora

    root, _, _, _ = built
    again = build_corpora(small_config(root / "a"))
    assert again["reused"] is True
    (root / "a" / "domain" / "train.parquet").write_bytes(b"corrupted")
    rebuilt = build_corpora(small_config(root / "a"))
    assert rebuilt["reused"] is False
    assert pq.read_table(root / "a" / "domain" / "train.parquet").num_rows > 0


def test_split_is_stable_per_document():
    ids = [f"doc-{i}" for i in range(2000)]
    heldout = [i for i in ids if split_of(3, i, 0.1) == "heldout"]
    assert 150 < len(heldout) < 250
    assert heldout == [i for i in ids[:1000] if split_of(3, i, 0.1) == "heldout"] + [
        i for i in ids[1000:] if split_of(3, i, 0.1) == "heldout"
    ]


def test_cli_prints_summary(tmp_path, run_cli):
    path = tmp_path / "c.yaml"
    path.write_text(f"kind: corpora\noutput_dir: {tmp_path / 'out'}\ndomain: {{max_documents: 5}}\n"
                    "general: {max_documents: 5}\n")
    code, out, _ = run_cli("corpora", path)
    assert code == 0
    assert "domain   train" in out and f"corpora written: {tmp_path / 'out'}" in out
    code, out, _ = run_cli("corpora", path)
    assert "already built, reused" in out


def test_changed_config_is_refused_and_force_rebuilds(built, run_cli):
    from pipelines.corpora import build_corpora
    from spt.errors import InputError

    root, _, _, _ = built
    out = root / "a"
    before = {p.name: p.read_bytes() for p in out.rglob("*.parquet")}
    with pytest.raises(InputError) as info:
        build_corpora(small_config(out, seed=5))
    assert info.value.problems[0].startswith(f"corpora.output_dir={str(out)!r}: holds `spt corpora` output made "
                                             "before its config changed (fingerprint ")
    assert {p.name: p.read_bytes() for p in out.rglob("*.parquet")} == before
    rebuilt = build_corpora(small_config(out, seed=5), force=True)
    assert rebuilt["reused"] is False and rebuilt["config"]["seed"] == 5
    assert build_corpora(small_config(out, seed=5))["reused"] is True
    build_corpora(small_config(out), force=True)  # back to seed 0 for the other tests of the module
