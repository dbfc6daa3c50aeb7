"""A real local Ray head for tests: its own temp dir, ports and auth token, cleaned up by PID."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path


def free_ports(count: int) -> list[int]:
    sockets, ports = [], []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
        ports.append(sock.getsockname()[1])
    for sock in sockets:
        sock.close()
    return ports


def _processes_of(temp_dir: str, gcs_port: int):
    import psutil

    found = set()
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if temp_dir in cmdline or f"--gcs-address=127.0.0.1:{gcs_port}" in cmdline or f":{gcs_port} " in cmdline:
            found.add(proc)
            try:
                found.update(proc.children(recursive=True))
            except psutil.NoSuchProcess:
                pass
    return found


@contextmanager
def ray_head(num_cpus: int = 2):
    """Starts ``ray start --head`` with token auth.

    Yields:
        (Jobs API URL, GCS address, token file, environment for clients of this cluster)
    """
    import psutil

    # Unix socket paths are limited to ~107 bytes: keep the temp dir short.
    temp_dir = tempfile.mkdtemp(prefix="spt-ray-", dir="/tmp")
    token_file = Path(temp_dir) / "token"
    token_file.write_text(secrets.token_hex(32))
    gcs, dashboard, client, node_manager, object_manager, metrics, agent, agent_grpc, runtime_env = free_ports(9)
    # Worker ports below the kernel's ephemeral range (where free_ports draws from), spread by the GCS port so
    # that two heads on one machine rarely share a range.
    low, _ = (int(p) for p in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    worker_low = 10000 + (gcs * 7919) % max(1, low - 10000 - 201)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file), "RAY_ADDRESS": "",
           "OMP_NUM_THREADS": "1", "SPT_PROGRESS": "0"}
    ray_bin = str(Path(sys.executable).parent / "ray")
    command = [ray_bin, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs}",
               f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1", f"--ray-client-server-port={client}",
               f"--node-manager-port={node_manager}", f"--object-manager-port={object_manager}",
               f"--metrics-export-port={metrics}", f"--dashboard-agent-listen-port={agent}",
               f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={runtime_env}",
               f"--min-worker-port={worker_low}", f"--max-worker-port={worker_low + 200}",
               f"--temp-dir={temp_dir}", f"--num-cpus={num_cpus}", "--include-dashboard=true",
               "--disable-usage-stats"]
    try:
        started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
        if started.returncode != 0:
            raise RuntimeError(f"ray start failed:\n{started.stdout[-2000:]}\n{started.stderr[-2000:]}")
        yield f"http://127.0.0.1:{dashboard}", f"127.0.0.1:{gcs}", token_file, env
    finally:
        procs = _processes_of(temp_dir, gcs)
        for proc in procs:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(list(procs), timeout=15)
        shutil.rmtree(temp_dir, ignore_errors=True)
