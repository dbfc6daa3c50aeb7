"""`spt export RUN --out DIR`: a finished run as a Hugging Face model folder that transformers and vLLM load.

The folder holds the run's ``config.json`` and safetensors weights, the tokenizer files of the mix the run trained
on (the streams spec names the tokenizer folder and its sha256, checked here), a ``generation_config.json`` with
the tokenizer's EOS/BOS/PAD ids, and a model card (``README.md``: data mix, δ, tokens, held-out losses from
``summary.json``). The run and the output may be local or ``s3://`` (everything goes through :mod:`spt.storage`).
``spt-export.json`` is written last and marks a complete export; a rerun of the same export does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.mix.streams import read_spec
from spt import storage
from spt.errors import InputError
from spt.storage import ownership, sha256_json
from training.model_card import model_card

STAGE = "export"
FORMAT = "spt-export/1"
MANIFEST = "spt-export.json"
#: Files of a tokenizer folder that `AutoTokenizer` reads, when the folder has them.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "chat_template.jinja")


@dataclass(frozen=True)
class RunToExport:
    """What an export reads, resolved and checked before anything is written."""

    run: str
    summary: dict
    config: dict  # the run's config.json
    spec: dict  # the streams spec of the mix it trained on
    model_config: dict  # model/config.json
    weights: list[str]  # model/*.safetensors (and a shard index), by name
    tokenizer: str  # the tokenizer folder the mix names
    eos_token_id: int
    pad_token_id: int

    @property
    def model(self) -> str:
        return storage.join(self.run, "model")

    def fingerprint(self) -> tuple[str, dict[str, str]]:
        """What the export's content depends on: the run (its summary) and the bytes of weights and tokenizer."""
        parts = {
            "run": sha256_json(self.summary),
            "weights": sha256_json({n: storage.content_id(storage.join(self.model, n)) for n in self.weights}),
            "tokenizer": str(self.spec.get("tokenizer_sha256")),
        }
        return sha256_json(parts), parts


def read_run(run: str) -> RunToExport:
    """Reads a finished run's summary, config, weights and the tokenizer of its mix.

    Raises:
        InputError: one line: no such run, an unfinished run (no summary.json), no exported weights, a mix or
            tokenizer that is gone or changed since training.
    """
    label = f"run={run!r}"
    if not storage.is_folder(run):
        raise InputError(f"{label}: no such run folder")
    summary = storage.read_json(storage.join(run, "summary.json"))
    if not isinstance(summary, dict):
        raise InputError(f"{label}: unfinished run (no summary.json); finish it with `spt train` first")
    config = storage.read_json(storage.join(run, "config.json")) or {}
    model_config = storage.read_json(storage.join(run, "model", "config.json"))
    weights = [e.relative for e in storage.list_files(storage.join(run, "model"))
               if e.relative.endswith((".safetensors", ".safetensors.index.json"))]
    if not isinstance(model_config, dict) or not any(w.endswith(".safetensors") for w in weights):
        raise InputError(f"{label}: no safetensors model in {storage.join(run, 'model')}")
    spec = _mix_spec(run, config, label)
    tokenizer = str(spec["tokenizer"])
    try:
        digest = storage.sha256(storage.join(tokenizer, "tokenizer.json"))
    except FileNotFoundError:
        raise InputError(f"{label}: the tokenizer of its mix ({tokenizer!r}) has no tokenizer.json") from None
    if spec.get("tokenizer_sha256") and digest != spec["tokenizer_sha256"]:
        raise InputError(f"{label}: the tokenizer {tokenizer!r} changed since its mix was built (sha256 "
                         f"{digest[:12]}, the mix says {str(spec['tokenizer_sha256'])[:12]})")
    eos, pad = _special_ids(tokenizer, int(spec["eos_token_id"]))
    return RunToExport(run, summary, config, spec, model_config, weights, tokenizer, eos, pad)


def _mix_spec(run: str, config: dict, label: str) -> dict:
    """The streams spec of the run's mix (a finetune run names it, or takes its base run's)."""
    mix = config.get("mix")
    if not mix and config.get("base_run"):
        mix = (storage.read_json(storage.join(str(config["base_run"]), "config.json")) or {}).get("mix")
    if not mix:
        raise InputError(f"{label}: its config.json names no mix (the tokenizer is found through it)")
    try:
        return read_spec(str(mix))
    except InputError as exc:
        raise InputError(f"{label}: its mix is unreadable: {exc.problems[0]}") from None


def _special_ids(tokenizer: str, eos_token_id: int) -> tuple[int, int]:
    """(EOS, PAD) ids; PAD is the tokenizer's pad token, or EOS when it has none (batched generation pads)."""
    from tokenizers import Tokenizer

    settings = storage.read_json(storage.join(tokenizer, "tokenizer_config.json")) or {}
    pad = settings.get("pad_token")
    pad = pad.get("content") if isinstance(pad, dict) else pad
    pad_id = Tokenizer.from_str(storage.read_text(storage.join(tokenizer, "tokenizer.json"))).token_to_id(pad) \
        if pad else None
    return eos_token_id, eos_token_id if pad_id is None else pad_id


def export_run(run: str, out: str, force: bool = False) -> dict:
    """Writes the Hugging Face folder of a finished run to ``out`` (local or ``s3://``).

    Args:
        force: replace an export of another run (or of this run before it changed) in ``out``.

    Returns:
        The export manifest (``files`` with their sha256, ``fingerprint``) and ``reused`` (nothing was written).

    Raises:
        InputError: bad run (see :func:`read_run`) or an output folder spt may not write; nothing is written then.
    """
    source = read_run(run)
    fingerprint, parts = source.fingerprint()
    storage.check_writable(out, "--out")
    claim = ownership.claim(out, STAGE, fingerprint, where="--out", parts=parts, force=force)
    previous = storage.read_json(storage.join(out, MANIFEST)) if claim.state == "same" else None
    if previous and previous.get("fingerprint") == fingerprint:
        return {**previous, "reused": True}
    earlier = storage.read_json(storage.join(out, MANIFEST)) or {}
    storage.delete(storage.join(out, MANIFEST))  # incomplete until the new manifest is written
    files = _write_files(source, out)
    for stale in set(earlier.get("files", {})) - set(files):  # e.g. shards of an export replaced by --force
        storage.delete(storage.join(out, stale))
    manifest = {"format": FORMAT, "run": run, "fingerprint": fingerprint, "parts": parts, "files": files}
    storage.write_json(storage.join(out, MANIFEST), manifest)
    return {**manifest, "reused": False}


def _write_files(source: RunToExport, out: str) -> dict[str, str]:
    """Writes every file of the folder; returns name -> sha256."""
    model_config = {**source.model_config, "bos_token_id": source.eos_token_id,
                    "eos_token_id": source.eos_token_id, "pad_token_id": source.pad_token_id}
    written = {"config.json": _put_json(out, "config.json", model_config)}
    for name in source.weights:
        written[name] = storage.copy_file(storage.join(source.model, name), storage.join(out, name))
    context = int(model_config.get("max_position_embeddings") or source.spec["seq_len"])
    written.update(write_tokenizer_and_generation_config(source.tokenizer, out, source.eos_token_id,
                                                         source.pad_token_id, context))
    card = model_card(source).encode("utf-8")
    storage.write_bytes(storage.join(out, "README.md"), card)
    written["README.md"] = storage.sha256_bytes(card)
    return dict(sorted(written.items()))


def write_tokenizer_and_generation_config(tokenizer: str, out: str, eos_token_id: int, pad_token_id: int,
                                          context: int) -> dict[str, str]:
    """Writes the tokenizer files and ``generation_config.json`` into a model folder; returns name -> sha256.

    Args:
        tokenizer: the tokenizer folder (local or ``s3://``).
        context: the model's context (tokens); the tokenizer advertises it as ``model_max_length``, since longer
            inputs would reach positions the model never trained on.
    """
    import transformers

    written = {"generation_config.json": _put_json(out, "generation_config.json", {
        "bos_token_id": eos_token_id, "eos_token_id": eos_token_id, "pad_token_id": pad_token_id,
        "transformers_version": transformers.__version__,
    })}
    for name in TOKENIZER_FILES:
        location = storage.join(tokenizer, name)
        if name == "tokenizer_config.json":
            written[name] = _put_json(out, name, {**(storage.read_json(location) or {}), "model_max_length": context})
        elif storage.is_file(location):
            written[name] = storage.copy_file(location, storage.join(out, name))
    return written


def complete_model_folder(folder: str, spec: dict) -> None:
    """Makes a run's ``model/`` folder (weights and config from ``save_pretrained``) a complete Hugging Face
    folder: the tokenizer of its mix and the generation config (for ``training.trainer.export_model``)."""
    eos, pad = _special_ids(str(spec["tokenizer"]), int(spec["eos_token_id"]))
    write_tokenizer_and_generation_config(str(spec["tokenizer"]), folder, eos, pad, int(spec["seq_len"]))


def _put_json(out: str, name: str, value: dict) -> str:
    text = storage.dumps_json(value)
    storage.write_text(storage.join(out, name), text)
    return storage.sha256_bytes(text.encode("utf-8"))
