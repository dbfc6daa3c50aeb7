"""What `spt submit` uploads as a job's working directory: code and configs, never credentials.

In a git work tree, the files git tracks or would track (``.gitignore`` followed); elsewhere every file except the
command's excludes and the folder's ``.gitignore``/``.rayignore`` patterns. The files the command names are added;
credential patterns and symlinks out of the folder are always left out (:func:`upload_for`).
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

#: Never uploaded by `spt submit`, whatever git or a command names: files and folders that hold credentials
#: (matched against every part of a file's path, and of a symlink's target).
CREDENTIAL_PATTERNS = (
    ".env", ".env.*", "*.env", ".envrc", ".aws", ".ssh", ".gnupg", ".docker", ".kube", ".ray", ".netrc", "_netrc",
    ".git-credentials", ".pgpass", ".pypirc", ".npmrc", "credentials", "credentials.*", "auth_token",
    "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore",
    "*.kdbx", "*.ovpn",
)
#: Ignore rules, not code: left out of the upload so that Ray, which applies them again, zips exactly the list.
IGNORE_FILES = (".gitignore", ".rayignore")


@dataclass(frozen=True)
class Upload:
    """What `spt submit` uploads as a job's working directory: ``files`` (paths relative to ``folder``, with their
    sizes in bytes), how they were chosen (``basis``), and what was left out that would otherwise have gone
    (``left_out``: path -> reason)."""

    folder: Path
    files: dict[str, int]
    basis: str
    left_out: dict[str, str]

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())

    @contextmanager
    def staged(self) -> Iterator[Path]:
        """A temp folder holding exactly :attr:`files`: what Ray zips and uploads."""
        with tempfile.TemporaryDirectory(prefix="spt-submit-") as tmp:
            for relative in self.files:
                target = Path(tmp) / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(self.folder / relative, target)
            yield Path(tmp)


def upload_for(folder: Path, command: list[str], excludes: list[str]) -> Upload:
    """The files `spt submit` uploads from ``folder``: code and configs, never credentials.

    In a git work tree, the files git tracks or would track (``.gitignore`` followed); elsewhere every file
    except those matching ``excludes`` or a pattern of the folder's ``.gitignore``/``.rayignore`` (names and
    ``/``-anchored paths; no ``!`` negations). Then the files the command names (its arguments, and files named by
    the YAML configs among them, e.g. a sweep's base configs), even when ignored. :data:`CREDENTIAL_PATTERNS`,
    ``excludes`` and symlinks that lead out of the folder are always left out.
    """
    folder = folder.resolve()
    listed, basis = _git_files(folder)
    if listed is None:
        listed, basis = _walked_files(folder, excludes), "every file not excluded or ignored"
    named = _command_files(folder, command)
    files, left_out = {}, {}
    for relative in sorted(set(listed) | named):
        path = folder / relative
        if _matches(relative, excludes) or Path(relative).name in IGNORE_FILES or not path.is_file():
            continue
        target = path.resolve()
        if not target.is_relative_to(folder):
            left_out[relative] = "a link out of the folder"
        elif _matches(relative, CREDENTIAL_PATTERNS) or _matches(target.relative_to(folder), CREDENTIAL_PATTERNS):
            left_out[relative] = "credentials"
        else:
            files[relative] = path.stat().st_size
    basis += " and the files the command names" if named else ""
    return Upload(folder, files, basis, left_out)


def _matches(relative: str | Path, patterns) -> bool:
    """True when a part of the path (a folder or the file's name) matches one of ``patterns``."""
    return any(fnmatch.fnmatch(part, pattern) for part in Path(relative).parts for pattern in patterns)


def _git_files(folder: Path) -> tuple[list[str] | None, str]:
    """Files git tracks or would track under ``folder`` (relative to it); None outside a git work tree."""
    try:
        proc = subprocess.run(["git", "-C", str(folder), "ls-files", "-z", "--cached", "--others",
                               "--exclude-standard"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None, ""
    if proc.returncode != 0:
        return None, ""
    return [p for p in proc.stdout.decode().split("\0") if p], "files git tracks or would track (.gitignore followed)"


def _walked_files(folder: Path, excludes: list[str]) -> list[str]:
    rules = [line.strip() for name in IGNORE_FILES if (folder / name).is_file()
             for line in (folder / name).read_text(errors="replace").splitlines()]
    rules = [r.rstrip("/") for r in rules if r and not r.startswith(("#", "!"))]
    found = []
    for root, dirs, names in os.walk(folder):
        relative_root = Path(root).relative_to(folder)
        dirs[:] = [d for d in dirs if not _ignored((relative_root / d).as_posix(), excludes, rules)]
        found += [(relative_root / n).as_posix() for n in names
                  if not _ignored((relative_root / n).as_posix(), excludes, rules)]
    return found


def _ignored(relative: str, excludes: list[str], rules: list[str]) -> bool:
    name = Path(relative).name
    anchored = [r.lstrip("/") for r in rules if "/" in r]
    return (_matches(relative, excludes) or any(fnmatch.fnmatch(name, r) for r in rules if "/" not in r)
            or any(fnmatch.fnmatch(relative, r) for r in anchored))


def _command_files(folder: Path, command: list[str]) -> set[str]:
    """Files under ``folder`` that the command's arguments name, and those named by the YAML files among them."""
    named = {relative for arg in command if (relative := _inside(folder, arg))}
    for relative in list(named):
        if relative.endswith((".yaml", ".yml")):
            named |= {r for value in _strings(_read_yaml(folder / relative)) if (r := _inside(folder, value))}
    return named


def _inside(folder: Path, value: str) -> str | None:
    """``value`` as a file path relative to ``folder`` (the job's working directory), if it names one there."""
    if not value or "\n" in value or "://" in value or len(value) > 4096:
        return None
    path = (folder / value).resolve()
    return path.relative_to(folder).as_posix() if path.is_relative_to(folder) and path.is_file() else None


def _read_yaml(path: Path):
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None


def _strings(value) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
