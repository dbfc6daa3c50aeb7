"""`spt mix plan`: every number of the plan on a corpus of known token counts, the count cache, dry runs."""

from __future__ import annotations

import json

from pipelines.mix.plan import allocate_samples
from tests.conftest import tree
from tests.test_mix_corpus import corpus, mix_dict, write_mix  # noqa: F401  (module fixture)

# T = 2,000 tokens, seq_len 16 -> 125 samples. Quotas in samples: domain 0.3 -> 37.5, general 0.6 -> 75,
# synthetic 0.1 -> 12.5; floors sum to 124, the one sample left goes to the first largest remainder (domain).
EXPECTED = {
    "domain": {
        "fraction": 0.3, "asked_tokens": 600, "samples": 38, "realized_tokens": 608,
        "unique_samples": 30, "unique_tokens": 480, "epochs": 1.266667,
        "documents": 12, "document_tokens": 492, "dropped_tokens": 12,
        "heldout_documents": 4, "heldout_samples": 8, "heldout_tokens": 128, "skipped": {},
    },
    "general": {
        "fraction": 0.6, "asked_tokens": 1200, "samples": 75, "realized_tokens": 1200,
        "unique_samples": 200, "unique_tokens": 3200, "epochs": 0.375,
        "documents": 50, "document_tokens": 3200, "dropped_tokens": 0,
        "heldout_documents": 2, "heldout_samples": 6, "heldout_tokens": 96,
        "skipped": {"empty document": 1, "invalid JSON": 1, "invalid UTF-8": 1, "missing text": 1},
    },
    "synthetic": {
        "fraction": 0.1, "asked_tokens": 200, "samples": 12, "realized_tokens": 192,
        "unique_samples": 30, "unique_tokens": 480, "epochs": 0.4,
        "documents": 20, "document_tokens": 480, "dropped_tokens": 0,
        "heldout_documents": 0, "heldout_samples": 0, "heldout_tokens": 0,
        "skipped": {"empty document": 1, "rephrase error": 4},
    },
}


def test_plan_numbers_are_exact(corpus, tmp_path, run_cli):
    config = write_mix(tmp_path / "mix.yaml", mix_dict(corpus, tmp_path / "out"))
    code, out, err = run_cli("mix", "plan", config)
    assert code == 0, err
    plan = json.loads((tmp_path / "out" / "mixes" / "test" / "plan.json").read_text())
    assert (plan["total_tokens"], plan["seq_len"], plan["total_samples"], plan["realized_tokens"]) == (2000, 16, 125, 2000)
    assert plan["tokenizer"]["dtype"] == "uint16" and plan["tokenizer"]["eos_token_id"] == 0
    rows = {row["name"]: row for row in plan["sources"]}
    for name, expected in EXPECTED.items():
        assert {key: rows[name][key] for key in expected} == expected, name
        assert abs(rows[name]["realized_tokens"] - rows[name]["asked_tokens"]) < 16
    assert rows["general"]["fraction_configured"] == "remainder"
    assert rows["domain"]["counts_from"] == "tokenized"
    # the printed table carries the same numbers
    lines = out.splitlines()
    assert lines[0].startswith("mix 'test': 2,000 tokens asked = 125 samples x seq_len 16 (2,000 tokens realized)")
    assert any(line.split() == ["domain", "domain", "0.3000", "600", "38", "608", "480", "1.267", "8"] for line in lines)
    assert any(line.split() == ["general", "general", "0.6000", "1,200", "75", "1,200", "3,200", "0.375", "6"] for line in lines)
    assert any(line.split() == ["synthetic", "synthetic", "0.1000", "200", "12", "192", "480", "0.400", "0"] for line in lines)
    assert "  general: skipped rows: empty document: 1, invalid JSON: 1, invalid UTF-8: 1, missing text: 1" in lines
    assert lines[-1] == f"plan written: {tmp_path / 'out' / 'mixes' / 'test' / 'plan.json'}"


def test_counts_are_cached_by_content(corpus, tmp_path, run_cli):
    config = mix_dict(corpus, tmp_path / "out")
    path = write_mix(tmp_path / "mix.yaml", config)
    assert run_cli("mix", "plan", path)[0] == 0
    cached = sorted(p.name for p in (tmp_path / "out" / "cache").iterdir())
    assert len(cached) == 3
    # another δ and T (another mix name): the same counts, read from the cache
    code, _, err = run_cli("mix", "plan", path, "name=other", "sources[0].fraction=0.5", "sources[0].max_epochs=5",
                           "total_tokens=4000")
    assert code == 0, err
    plan = json.loads((tmp_path / "out" / "mixes" / "other" / "plan.json").read_text())
    assert {row["counts_from"] for row in plan["sources"]} == {"cache"}
    domain = plan["sources"][0]
    assert (domain["samples"], domain["epochs"]) == (125, round(125 / 30, 6))
    assert sorted(p.name for p in (tmp_path / "out" / "cache").iterdir()) == cached


def test_a_changed_input_is_counted_again(corpus, tmp_path, run_cli):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(corpus["root"] / "rephrase", root)
    config = mix_dict(corpus, tmp_path / "out")
    config["sources"][2]["paths"] = [str(root)]
    path = write_mix(tmp_path / "mix.yaml", config)
    assert run_cli("mix", "plan", path)[0] == 0
    (root / "extra.jsonl").write_text(json.dumps({"text": "s1 s2 s3"}) + "\n")  # 4 more tokens
    plan_file = tmp_path / "out" / "mixes" / "test" / "plan.json"
    before = plan_file.read_bytes()
    code, out, err = run_cli("mix", "plan", path)  # the mix named 'test' was planned from other input content
    assert code == 2 and out == "" and plan_file.read_bytes() == before
    assert err.startswith(f"error: mix 'test' ({tmp_path / 'out' / 'mixes' / 'test'}): holds `spt mix` output made "
                          "before its inputs changed (fingerprint ")
    assert err.rstrip().endswith("rerun with --force to replace it, or choose another folder")
    assert run_cli("mix", "plan", path, "--force")[0] == 0
    synthetic = json.loads((tmp_path / "out" / "mixes" / "test" / "plan.json").read_text())["sources"][2]
    assert (synthetic["counts_from"], synthetic["document_tokens"], synthetic["documents"]) == ("tokenized", 484, 21)


def test_heldout_fraction_splits_documents_and_tokens(corpus, tmp_path, run_cli):
    config = mix_dict(corpus, tmp_path / "out")
    config["sources"].append({
        "name": "holdout", "role": "general", "paths": [str(corpus["root"] / "holdout")],
        "heldout_fraction": 0.25, "fraction": 0.0,
    })
    path = write_mix(tmp_path / "mix.yaml", config)
    assert run_cli("mix", "plan", path)[0] == 0
    row = json.loads((tmp_path / "out" / "mixes" / "test" / "plan.json").read_text())["sources"][3]
    assert row["documents"] + row["heldout_documents"] == 40
    assert 0 < row["heldout_documents"] < 20
    assert row["document_tokens"] == 16 * row["documents"] and row["heldout_tokens"] == 16 * row["heldout_documents"]
    # a new seed moves documents between the splits
    assert run_cli("mix", "plan", path, "seed=1", "--force")[0] == 0
    moved = json.loads((tmp_path / "out" / "mixes" / "test" / "plan.json").read_text())["sources"][3]
    assert moved["documents"] + moved["heldout_documents"] == 40 and moved["count_key"] != row["count_key"]


def test_fraction_zero_source_without_data_is_left_out(corpus, tmp_path, run_cli):
    config = mix_dict(corpus, tmp_path / "out")
    config["sources"][2].update(paths=[str(tmp_path / "rephrase-not-yet")], fraction=0.0)
    config["sources"][1]["fraction"] = 0.7
    code, out, err = run_cli("mix", "plan", write_mix(tmp_path / "mix.yaml", config))
    assert code == 0, err
    missing = f"mix.sources[2].paths[0]={str(tmp_path / 'rephrase-not-yet')!r}: no such file or folder"
    assert f"{'synthetic':<16} {'synthetic':<16} {'-':>8}  left out (no data yet: {missing})" in out.splitlines()
    rows = json.loads((tmp_path / "out" / "mixes" / "test" / "plan.json").read_text())["sources"]
    assert rows[2]["samples"] == 0 and rows[2]["left_out"].startswith("no data yet")


def test_dry_run_prints_the_resolved_config_and_writes_nothing(corpus, tmp_path, run_cli):
    for action in ("plan", "build"):
        path = write_mix(tmp_path / "mix.yaml", mix_dict(corpus, tmp_path / "out"))
        code, out, err = run_cli("mix", action, path, "seed=7", "--dry-run")
        assert code == 0, err
        config, plan = out.split("\n}\n", 1)  # the resolved config, then the token plan
        resolved = json.loads(config + "\n}")
        assert plan.startswith("mix 'test': ")
        assert resolved["seed"] == 7 and resolved["sources"][1]["fraction"] == "remainder"
        assert resolved["build"]["workers"] == 2 and resolved["cache_dir"] is None
        assert tree(tmp_path / "out") == []


def test_uint32_tokens_past_65535_ids(tmp_path):
    from pipelines.mix.tokens import tokenizer_info
    from tests.test_mix_corpus import make_tokenizer

    small = tokenizer_info(str(make_tokenizer(tmp_path / "small")))
    large = tokenizer_info(str(make_tokenizer(tmp_path / "large", extra_words=70_000)))
    assert (small.dtype, large.dtype) == ("uint16", "uint32")
    assert large.vocab_size == 3 + 4 * 50 + 70_000
    # ids past 65,535 survive tokenizing, packing, writing and reading back
    import numpy as np
    from streaming import StreamingDataset

    from pipelines.mix.pack import SplitWriter
    from pipelines.mix.streams import created
    from pipelines.mix.tokens import TokenizeStage

    stage = TokenizeStage(large.folder, large.dtype, large.eos_token_id)
    out = stage({"text": ["x69999 d1 x70000 " * 5, "x0 " * 20], "split": ["train", "train"]})
    tokens = out.column("tokens")[0].values.to_numpy()
    assert tokens.dtype == np.uint32 and int(tokens[0]) == 3 + 200 + 69_999 and len(tokens) == 15 + 1 + 20 + 1
    writer = SplitWriter(tmp_path / "mds", 16, large.dtype, None, 1 << 12)
    writer.add(tokens, 2)
    assert writer.close()["samples"] == 2
    dataset = created(lambda: StreamingDataset(local=str(tmp_path / "mds"), shuffle=False, batch_size=1))
    read = [s["tokens"] for s in dataset]
    assert read[0].dtype == np.uint32 and np.array_equal(np.concatenate(read), tokens[:32])


def test_samples_are_allocated_by_largest_remainder():
    from fractions import Fraction

    thirds = [Fraction(1, 3)] * 3
    assert allocate_samples(thirds, 1000, 10) == [34, 33, 33]
    assert allocate_samples([Fraction(1, 2), Fraction(1, 2)], 35, 10) == [2, 1]  # 3 samples; quotas 1.75 each
    for total in range(100, 400, 37):
        samples = allocate_samples([Fraction(3, 10), Fraction(6, 10), Fraction(1, 10)], total, 16)
        assert sum(samples) == total // 16
        assert all(abs(s * 16 - f * total) < 16 for s, f in zip(samples, (0.3, 0.6, 0.1)))


def test_quickstart_mix_config_is_valid():
    from spt.config import load_config
    from tests.conftest import REPO

    config = load_config(REPO / "configs" / "mix" / "quickstart.yaml", kind="mix")
    assert (config.seq_len, config.total_tokens) == (128, 400_000)
    assert [(s.name, s.role) for s in config.sources] == [("domain", "domain"), ("general", "general"),
                                                           ("synthetic", "synthetic")]
    assert [float(f) for f in config.resolved_fractions()] == [0.25, 0.745, 0.005]
    assert config.sources[2].rephrases == "general"
    assert config.total_tokens >= config.global_batch_size * config.seq_len
