"""Talking to a Ray cluster: address forms, a fast reachability check, token authentication, the Jobs client.

Authentication: Ray 2.60 clusters enforce token authentication (``RAY_AUTH_MODE=token``). spt clients send the
cluster's token when one is available, from (first found): ``--token-file``, ``$RAY_AUTH_TOKEN``,
``$RAY_AUTH_TOKEN_PATH``, or ``~/.ray/auth_token`` (where a local ``ray start`` writes it). Set
``RAY_AUTH_MODE=disabled`` to talk to a cluster started without authentication.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
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
