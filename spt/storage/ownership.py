"""Which folders spt may write into: a marker file ``.spt-owner.json`` names the stage and the fingerprint.

Rules (every stage follows them through :func:`claim` before its first write):

- a folder that does not exist or is empty is claimed: the marker is written first;
- a folder whose marker names this stage and this fingerprint is this stage's own output: resume or reuse it;
- a folder whose marker names this stage and another fingerprint (another config or other inputs) is refused,
  naming what changed, unless the caller was given ``--force``, which re-claims it (the stage then replaces
  only its own files);
- a folder of another stage is refused, with or without ``--force``;
- a non-empty folder without a marker is refused: spt never deletes or overwrites a file there.

A marker claims its folder's whole subtree. The fingerprint is a hash the stage computes from the config that
shapes its result and the *content* of its inputs; ``parts`` (e.g. ``{"config": ..., "inputs": ...}``) are kept
beside it so that a refusal can say which of them changed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from spt import storage
from spt.errors import InputError

MARKER = ".spt-owner.json"
FORMAT = "spt-owner/1"


@dataclass(frozen=True)
class Claim:
    """The outcome of :func:`claim`.

    Attributes:
        state: ``new`` (claimed now: the folder was missing or empty), ``same`` (this stage's output for this
            fingerprint), or ``replaced`` (this stage's output for another fingerprint, re-claimed by force).
        previous: the marker found, or None.
    """

    folder: str
    stage: str
    fingerprint: str
    state: str
    previous: dict | None = None


def read_marker(folder: str) -> dict | None:
    """The marker of a folder, or None when it has none.

    Raises:
        InputError: a marker that is not valid JSON (it cannot say who owns the folder).
    """
    location = storage.join(folder, MARKER)
    try:
        text = storage.read_text(location)
    except FileNotFoundError:
        return None
    value = storage.read_json(location)
    if not isinstance(value, dict) or value.get("format") != FORMAT:
        raise InputError(f"{location}: unreadable ownership marker ({text[:40]!r}); move the folder away")
    return value


def _changed(previous: dict, parts: dict[str, str]) -> str:
    old = previous.get("parts") or {}
    changed = [key for key, value in parts.items() if old.get(key) != value]
    return " and ".join(changed) if changed else "fingerprint"


def check_claim(folder: str, stage: str, fingerprint: str, *, where: str, parts: dict[str, str] | None = None,
                force: bool = False, label: str | None = None) -> Claim:
    """What :func:`claim` would decide, without writing anything (to check outputs before any work).

    Raises:
        InputError: as :func:`claim`.
    """
    storage.check_writable(folder, where)
    previous = read_marker(folder)
    label = label or f"{where}={str(folder)!r}"
    if previous is None:
        if not storage.is_empty(folder):
            raise InputError(
                f"{label}: folder is not empty and has no {MARKER} (not written by spt); spt writes only into "
                "new or empty folders and its own: move the files away or choose another folder"
            )
        return Claim(str(folder), stage, fingerprint, "new")
    if previous.get("stage") != stage:
        raise InputError(f"{label}: holds the output of `spt {previous.get('stage')}`, not of `spt {stage}`; "
                         "choose another folder")
    if previous.get("fingerprint") == fingerprint:
        return Claim(str(folder), stage, fingerprint, "same", previous)
    if not force:
        raise InputError(
            f"{label}: holds `spt {stage}` output made before its {_changed(previous, parts or {})} changed "
            f"(fingerprint {str(previous.get('fingerprint'))[:12]}, now {fingerprint[:12]}); "
            "rerun with --force to replace it, or choose another folder"
        )
    return Claim(str(folder), stage, fingerprint, "replaced", previous)


def claim(folder: str, stage: str, fingerprint: str, *, where: str, parts: dict[str, str] | None = None,
          force: bool = False, about: dict[str, Any] | None = None, label: str | None = None) -> Claim:
    """Checks that ``stage`` may write into ``folder`` and writes the marker when it must.

    Args:
        folder: the stage's output folder (local or ``s3://``).
        stage: the command that writes it, e.g. ``rephrase``.
        fingerprint: hash of the config and input content the output depends on.
        where: the config field that named the folder, for messages (e.g. ``output.dir``).
        parts: the fingerprint's components by name, so a refusal can say what changed.
        force: re-claim this stage's folder that holds output for another fingerprint.
        about: more descriptive fields stored in the marker (not compared).
        label: what messages call the folder; default ``<where>='<folder>'``.

    Returns:
        The claim; ``state`` says whether the folder was new, this output already, or replaced by force.

    Raises:
        InputError: the folder is not writable, not empty and not spt's, another stage's, or (without
            ``force``) this stage's output for another fingerprint. Nothing has been written then.
    """
    result = check_claim(folder, stage, fingerprint, where=where, parts=parts, force=force, label=label)
    if result.state == "same":
        return result
    marker = {"format": FORMAT, "stage": stage, "fingerprint": fingerprint, "parts": dict(parts or {}),
              "claimed": round(time.time(), 3), **(about or {})}
    try:
        storage.write_json(storage.join(folder, MARKER), marker)
    except OSError as exc:
        raise InputError(f"{label or where + '=' + repr(str(folder))}: cannot write there "
                         f"({str(exc).splitlines()[0]})") from None
    return result
