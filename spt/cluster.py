"""Talking to a Ray cluster: address forms, a fast reachability check, token authentication, the Jobs client.

Authentication: Ray 2.60 clusters enforce token authentication (``RAY_AUTH_MODE=token``). spt clients send the
cluster's token when one is available, from (first found): ``--token-file``, ``$RAY_AUTH_TOKEN``,
``$RAY_AUTH_TOKEN_PATH``, or ``~/.ray/auth_token`` (where a local ``ray start`` writes it). Set
``RAY_AUTH_MODE=disabled`` to talk to a cluster started without authentication.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

from spt.errors import InputError

DEFAULT_DASHBOARD_PORT = 8265
DEFAULT_GCS_PORT = 6379


def host_port(address: str, default_port: int) -> tuple[str, int]:
    """``http://h:8265``, ``ray://h:10001`` or ``h:6379`` -> (host, port)."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if not parsed.hostname:
        raise InputError(f"--address={address!r}: expected HOST:PORT or http://HOST:PORT")
    try:
        port = parsed.port or default_port
    except ValueError:
        raise InputError(f"--address={address!r}: the port is not a number") from None
    return parsed.hostname, port


def check_reachable(address: str, default_port: int, timeout_seconds: float = 3.0) -> None:
    """Fails fast, with a clear message, when nothing listens at the address (Ray itself would wait minutes)."""
    host, port = host_port(address, default_port)
    try:
        with socket.create_connection((host, port), timeout=timeout_seconds):
            return
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(f"cannot reach the Ray cluster at {address} ({host}:{port}: {reason}); is it running?") from None


def dashboard_url(address: str) -> str:
    """The Jobs API URL for an address given as ``HOST[:PORT]`` or ``http(s)://HOST:PORT``.

    Raises:
        InputError: another scheme (``ray://`` and ``HOST:6379`` name the cluster's client and GCS ports, not the
            Jobs API), or no host, or a port that is not a number.
    """
    if "://" in address and not address.startswith(("http://", "https://")):
        scheme = address.split("://", 1)[0]
        raise InputError(f"--address={address!r}: {scheme}:// is not the Jobs API; give http://HOST:8265")
    host, port = host_port(address, DEFAULT_DASHBOARD_PORT)
    if address.startswith(("http://", "https://")):
        return address.rstrip("/")
    return f"http://{host}:{port}"


def configure_auth(token_file: str | None = None) -> str | None:
    """Sets the environment Ray's clients read so they send the cluster token; returns where it came from."""
    if token_file:
        path = Path(token_file)
        if not path.is_file():
            raise InputError(f"--token-file={token_file!r}: no such file")
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(path.resolve())
        os.environ.pop("RAY_AUTH_TOKEN", None)
        source = str(path)
    elif os.environ.get("RAY_AUTH_TOKEN"):
        source = "$RAY_AUTH_TOKEN"
    elif os.environ.get("RAY_AUTH_TOKEN_PATH"):
        source = os.environ["RAY_AUTH_TOKEN_PATH"]
    elif (Path.home() / ".ray" / "auth_token").is_file():
        source = str(Path.home() / ".ray" / "auth_token")
    else:
        return None
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    return source


def job_client(address: str, token_file: str | None = None):
    """A ``JobSubmissionClient`` for ``address``, after a fast reachability check; auth failures become clear errors."""
    url = dashboard_url(address)
    check_reachable(url, DEFAULT_DASHBOARD_PORT)
    configure_auth(token_file)
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(url)
    except Exception as exc:  # Ray raises several types here; all mean "cannot use this cluster"
        raise InputError(explain_connection_error(url, exc)) from None


def explain_connection_error(url: str, exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "authentication" in text.lower() or "unauthorized" in text.lower():
        return (f"the Ray cluster at {url} refused the request ({text}); pass its token with --token-file, "
                "$RAY_AUTH_TOKEN or $RAY_AUTH_TOKEN_PATH")
    return f"cannot use the Ray cluster at {url}: {text}"


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
    import yaml

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
