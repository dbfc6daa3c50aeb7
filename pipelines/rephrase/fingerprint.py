"""What a rephrase output depends on, hashed: the fingerprint that its folder's owner marker and manifest hold.

Three parts, so that a refusal can say which one changed:

- ``config``: every setting that shapes the rows (styles, filter, chunking, sampling, the model's name, shard
  size); not where the output goes, not Ray, not engine speed settings;
- ``inputs``: the content id (:func:`spt.storage.content_id`) of every input file that has work units, with the
  name its rows' ids are made from and its split: the same file names with other bytes are other inputs;
- ``model``: the content of a local model folder (every file hashed, ~0.4 s for the 260 MB SmolLM2), or a hub id.
"""

from __future__ import annotations

from typing import Any

from pipelines.rephrase.sources import Unit, location
from spt import storage
from spt.config.rephrase import RephraseConfig, StyleSpec
from spt.storage import sha256_json

#: Engine settings that change how fast a run goes but not what it writes; a rerun may change them.
RUNTIME_ENGINE = {
    "batch_size", "concurrent_batches", "concurrency", "device", "enforce_eager", "cpu_kv_cache_gib",
    "gpu_memory_utilization", "tensor_parallel_size",
}


def config_identity(config: RephraseConfig, styles: dict[str, StyleSpec], weights: dict[str, float],
                    model_name: str) -> dict[str, Any]:
    """The settings that shape the rows, with the resolved styles and weights."""
    settings = config.model_dump(mode="json")
    identity = {k: v for k, v in settings.items() if k not in ("ray", "output", "input", "engine")}
    identity["engine"] = {k: v for k, v in settings["engine"].items() if k not in RUNTIME_ENGINE}
    identity["engine"]["model"] = model_name
    identity["output"] = {k: v for k, v in settings["output"].items() if k != "dir"}
    identity["input"] = {k: v for k, v in settings["input"].items() if k not in ("paths", "heldout_paths")}
    identity["styles"] = {
        "specs": {k: v.model_dump(mode="json") for k, v in styles.items()},
        "weights": weights,
        "per_document": config.styles.per_document,
    }
    return identity


def fingerprint_parts(identity: dict[str, Any], units: list[Unit], model: str) -> dict[str, str]:
    """The fingerprint's parts by name: ``config``, ``inputs`` and ``model`` hashes."""
    return {"config": sha256_json(identity), "inputs": inputs_id(units), "model": model_id(model)}


def inputs_id(units: list[Unit]) -> str:
    """Hash of the content of every input file that has units, with the name its rows' ids are made from and its
    split (train or held out)."""
    files = dict.fromkeys((u.scheme, u.path, u.label, u.split) for u in units)
    return sha256_json([[label, storage.content_id(location(scheme, path)), split]
                        for scheme, path, label, split in files])


def model_id(model: str) -> str:
    """Hash of a local model folder's files (names and content); a hub id stands for itself."""
    if not storage.is_folder(model):
        return sha256_json({"hub": model})
    return sha256_json({e.relative: storage.sha256(e.location) for e in storage.list_files(model)})
