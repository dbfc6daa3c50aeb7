"""Talking to a Ray cluster: the one way every stage connects (:func:`ray_session`), address forms, a fast
reachability check, token authentication, the Jobs client.

Which Ray a stage uses, in order: the config's ``ray.address``; else ``$RAY_ADDRESS`` (set in the driver of a Ray
job, so ``spt submit -- spt COMMAND`` runs on the cluster, not on a private Ray beside the driver); else a new
local Ray of the stage's own (``address="local"``: never a cluster that a ``ray start`` left on this machine).

Authentication: Ray 2.60 clusters enforce token authentication (``RAY_AUTH_MODE=token``). spt clients send the
cluster's token when one is available, from (first found): ``--token-file``, ``$RAY_AUTH_TOKEN``,
``$RAY_AUTH_TOKEN_PATH``, or ``~/.ray/auth_token`` (where a local ``ray start`` writes it). Set
``RAY_AUTH_MODE=disabled`` to talk to a cluster started without authentication.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from spt.errors import InputError

DEFAULT_DASHBOARD_PORT = 8265
DEFAULT_GCS_PORT = 6379
DEFAULT_CLIENT_PORT = 10001
#: Addresses that name no host to check: Ray finds the cluster itself.
_SELF_RESOLVED = ("auto", "local")


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


def cluster_address(address: str | None) -> str | None:
    """The cluster to join: ``address``, else ``$RAY_ADDRESS``, else None (start a local Ray).

    A named cluster is checked for reachability first (Ray itself would wait minutes) and its token is set up.

    Raises:
        InputError: When nothing listens at the address.
    """
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address not in _SELF_RESOLVED:
        check_reachable(address, DEFAULT_CLIENT_PORT if address.startswith("ray://") else DEFAULT_GCS_PORT)
    if address:
        configure_auth()
    return address


@contextmanager
def ray_session(address: str | None, *, runtime_env: dict | Callable[[], dict] | None = None,
                local: dict | Callable[[], dict] = dict,
                combine_job_env: bool = False, **options) -> Iterator[str | None]:
    """Ray for one stage: joins the cluster (:func:`cluster_address`) or starts a local Ray, and shuts it down
    at the end. When Ray is already running in this process, it is used as it is and left running.

    Args:
        address: The config's ``ray.address`` (None: ``$RAY_ADDRESS``, else a local Ray).
        runtime_env: The runtime env of the stage's tasks on a joined cluster (None: the job's own), or a
            function that makes it (called only when a cluster is joined).
        local: ``ray.init`` options of a local start (e.g. ``num_cpus``, ``runtime_env``), or a function that makes
            them (called only when a local Ray is started, e.g. to create its temp folder).
        combine_job_env: In a Ray job's driver, merge ``runtime_env`` into the job's (this stage's values win)
            instead of failing on keys both set.
        **options: ``ray.init`` options of both cases (``log_to_driver``, ``configure_logging``, ...).

    Yields:
        The address joined, ``"local"`` for a local Ray, or None when Ray was already running.
    """
    import ray  # expensive: a second or more

    if ray.is_initialized():
        yield None
        return
    target = cluster_address(address)
    saved = os.environ.get("RAY_OVERRIDE_JOB_RUNTIME_ENV")
    if combine_job_env:
        os.environ["RAY_OVERRIDE_JOB_RUNTIME_ENV"] = "1"
    try:
        if target:
            ray.init(address=target, runtime_env=runtime_env() if callable(runtime_env) else runtime_env,
                     **options)
        else:
            local_options = local() if callable(local) else local
            ray.init(address="local", include_dashboard=False, **{**options, **local_options})
    finally:
        if combine_job_env:
            if saved is None:
                os.environ.pop("RAY_OVERRIDE_JOB_RUNTIME_ENV", None)
            else:
                os.environ["RAY_OVERRIDE_JOB_RUNTIME_ENV"] = saved
    try:
        yield target or "local"
    finally:
        ray.shutdown()
