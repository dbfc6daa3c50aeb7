"""The storage layer on a local folder and on a local S3 server (moto), the ownership rules, and the stages
end to end on S3: corpora -> tokenizer -> mix build with nothing written locally."""

from __future__ import annotations

import logging
import socket

import pyarrow as pa
import pytest

from spt import storage
from spt.errors import InputError
from spt.storage import ownership
from spt.storage.staging import staged_folder
from tests.conftest import tree


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def moto_endpoint():
    """A moto S3 server on 127.0.0.1 for the module (in this process, stopped at the end)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture()
def bucket(moto_endpoint, monkeypatch, request):
    """A fresh bucket on the module's server, with the environment a user would set (endpoint, fake keys)."""
    import boto3

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "S3_ENDPOINT_URL": moto_endpoint}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    name = request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")[:50].strip("-")
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    """A folder location on each back end."""
    if request.param == "local":
        return str(tmp_path / "root")
    return request.getfixturevalue("bucket") + "/root"


def test_write_read_list_delete(root):
    data = storage.join(root, "a", "b.json")
    assert not storage.exists(data) and storage.read_json(data) is None
    storage.write_json(data, {"x": 1})
    storage.write_bytes(storage.join(root, "c.bin"), b"\x00\x01")
    storage.write_text(storage.join(root, ".hidden"), "h")
    assert storage.read_json(data) == {"x": 1} and storage.is_file(data) and storage.is_folder(storage.join(root, "a"))
    assert [e.relative for e in storage.list_files(root)] == ["a/b.json", "c.bin"]
    assert [e.relative for e in storage.list_files(root, hidden=True)] == [".hidden", "a/b.json", "c.bin"]
    assert [e.size for e in storage.list_files(root, suffixes=(".bin",))] == [2]
    storage.delete(data)
    storage.delete(data)  # missing is fine
    assert not storage.exists(data) and storage.list_files(storage.join(root, "nowhere")) == []
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(data)


def test_parquet_hashes_and_content_ids(root):
    table = pa.table({"text": ["a", "b"]})
    location = storage.join(root, "t.parquet")
    digest = storage.write_parquet(location, table)
    assert storage.read_parquet(location).equals(table) and storage.sha256(location) == digest
    first = storage.content_id(location)
    assert first.startswith("sha256:" if not storage.is_remote(root) else "etag:")
    storage.write_parquet(location, pa.table({"text": ["a", "c"]}))
    assert storage.content_id(location) != first  # changed bytes, changed id
    storage.write_parquet(location, table)
    assert storage.content_id(location) == first  # same bytes, same id


def test_folders_upload_download_and_staging(root, tmp_path):
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "x.txt").write_text("x")
    (source / "manifest.json").write_text("{}")
    storage.upload_folder(source, storage.join(root, "up"), last="manifest.json")
    back = storage.download_folder(storage.join(root, "up"), tmp_path / "down")
    assert tree(back) == ["manifest.json", "sub", "sub/x.txt"]
    with staged_folder(storage.join(root, "staged"), last="done.json") as folder:
        (folder / "done.json").write_text("{}")
        assert not storage.exists(storage.join(root, "staged", "done.json"))  # nothing visible until it ends
    assert storage.read_json(storage.join(root, "staged", "done.json")) == {}
    with pytest.raises(RuntimeError):
        with staged_folder(storage.join(root, "failed")) as folder:
            (folder / "half").write_text("h")
            raise RuntimeError("killed")
    assert not storage.exists(storage.join(root, "failed", "half"))


@pytest.mark.parametrize("location,problem", [
    ("gs://bucket/x", "unsupported scheme gs:// (use a local path or s3://BUCKET/PREFIX)"),
    ("hdfs://namenode/x", "unsupported scheme hdfs:// (use a local path or s3://BUCKET/PREFIX)"),
    ("http://example.com/x", "unsupported scheme http:// (use a local path or s3://BUCKET/PREFIX)"),
    ("file:///tmp/x", "unsupported scheme file:// (use a local path or s3://BUCKET/PREFIX)"),
    ("s3:/bucket/x", "expected s3://BUCKET/PREFIX"),
])
def test_unsupported_schemes_are_refused_and_never_become_folders(location, problem, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for call in (storage.exists, storage.read_json, storage.list_files, lambda l: storage.write_json(l, {})):
        with pytest.raises(InputError) as info:
            call(location)
        assert info.value.problems == [f"location={location!r}: {problem}"]
    with pytest.raises(InputError) as info:
        storage.check_writable(location, "output_dir")
    assert info.value.problems == [f"output_dir={location!r}: {problem}"]
    assert tree(tmp_path) == []  # no local folder named 'gs:' or 's3:'


def test_missing_bucket_is_named(bucket):
    assert storage.writable_problem(bucket + "-gone/x") == f"no such bucket {bucket[5:] + '-gone'!r}"
    assert storage.writable_problem(bucket + "/x") is None


def test_claim_rules(root):
    folder = storage.join(root, "out")
    first = ownership.claim(folder, "corpora", "f1", where="output_dir", parts={"config": "c1"})
    assert first.state == "new" and ownership.read_marker(folder)["fingerprint"] == "f1"
    assert ownership.claim(folder, "corpora", "f1", where="output_dir").state == "same"
    with pytest.raises(InputError) as info:
        ownership.claim(folder, "corpora", "f2", where="output_dir", parts={"config": "c2"})
    assert info.value.problems == [
        f"output_dir={folder!r}: holds `spt corpora` output made before its config changed (fingerprint f1, now "
        "f2); rerun with --force to replace it, or choose another folder"
    ]
    assert ownership.claim(folder, "corpora", "f2", where="output_dir", force=True).state == "replaced"
    with pytest.raises(InputError) as info:
        ownership.claim(folder, "mix", "f2", where="output_dir", force=True)
    assert info.value.problems == [
        f"output_dir={folder!r}: holds the output of `spt corpora`, not of `spt mix`; choose another folder"
    ]
    foreign = storage.join(root, "foreign")
    storage.write_text(storage.join(foreign, "data.csv"), "a,b\n")
    with pytest.raises(InputError) as info:
        ownership.claim(foreign, "corpora", "f1", where="output_dir", force=True)
    assert "folder is not empty and has no .spt-owner.json" in info.value.problems[0]
    assert [e.relative for e in storage.list_files(foreign, hidden=True)] == ["data.csv"]


def _s3_keys(location: str) -> list[str]:
    return [e.relative for e in storage.list_files(location, hidden=True)]


def test_corpora_tokenizer_and_mix_build_on_s3_write_nothing_locally(bucket, tmp_path, monkeypatch, run_cli):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (tmp_path / "corpora.yaml").write_text(
        f"kind: corpora\noutput_dir: {bucket}/corpora\nheldout_fraction: 0.2\n"
        "domain: {max_documents: 12, min_chars: 300, max_chars: 3000}\n"
        "general: {max_documents: 30, min_chars: 300, max_chars: 3000}\n")
    (tmp_path / "tokenizer.yaml").write_text(
        f"kind: tokenizer\ninputs: [{bucket}/corpora/domain, {bucket}/corpora/general/train.parquet]\n"
        f"output_dir: {bucket}/tok\nvocab_size: 400\n")
    (tmp_path / "mix.yaml").write_text(
        f"kind: mix\nname: s3mix\noutput_dir: {bucket}/mix\ntokenizer: {bucket}/tok\ntotal_tokens: 4096\n"
        "seq_len: 32\nglobal_batch_size: 4\nbuild: {workers: 1}\nsources:\n"
        f"  - {{name: domain, role: domain, paths: [{bucket}/corpora/domain/train.parquet], fraction: 0.3}}\n"
        f"  - {{name: general, role: general, paths: [{bucket}/corpora/general/train.parquet],"
        f" heldout_paths: [{bucket}/corpora/general/heldout.parquet]}}\n")
    before = tree(tmp_path)
    for argv in (["corpora", tmp_path / "corpora.yaml"], ["tokenizer", tmp_path / "tokenizer.yaml"],
                 ["mix", "build", tmp_path / "mix.yaml"]):
        code, out, err = run_cli(*argv)
        assert code == 0, err
    assert out.splitlines()[-1] == f"streams spec: {bucket}/mix/mixes/s3mix/streams.json"
    assert tree(tmp_path) == before  # no local output folder, no 's3:' folder, no local cache
    assert _s3_keys(f"{bucket}/corpora") == [".spt-owner.json", "domain/heldout.parquet", "domain/train.parquet",
                                             "general/heldout.parquet", "general/train.parquet", "summary.json"]
    assert _s3_keys(f"{bucket}/tok") == [".spt-owner.json", "special_tokens_map.json", "spt-tokenizer.json",
                                         "tokenizer.json", "tokenizer_config.json"]
    keys = _s3_keys(f"{bucket}/mix")
    assert sum(k.endswith("/source.json") for k in keys) == 2 and any(k.startswith("cache/") for k in keys)
    assert {"mixes/s3mix/.spt-owner.json", "mixes/s3mix/streams.json", ".spt-owner.json"} <= set(keys)
    spec = storage.read_json(f"{bucket}/mix/mixes/s3mix/streams.json")
    assert spec["tokenizer"] == f"{bucket}/tok" and sum(s["choose"] for s in spec["streams"]) == 4096 // 32
    # reruns reuse everything; a changed corpora config is refused, nothing rewritten
    assert "already built, reused" in run_cli("corpora", tmp_path / "corpora.yaml")[1]
    assert "sources built: none; reused: domain, general" in run_cli("mix", "build", tmp_path / "mix.yaml")[1]
    summary = storage.read_bytes(f"{bucket}/corpora/summary.json")
    code, _, err = run_cli("corpora", tmp_path / "corpora.yaml", "seed=1")
    assert code == 2 and "holds `spt corpora` output made before its config changed" in err
    assert storage.read_bytes(f"{bucket}/corpora/summary.json") == summary
    assert tree(tmp_path) == before
