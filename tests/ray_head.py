"""Real local Ray clusters for tests: a head (:func:`ray_head`) or a head and a second node (:func:`ray_cluster`),
each node a separate ``ray start`` with its own temp dir, ports, working directory and ``$TMPDIR``, token auth,
cleaned up by PID."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

#: Loopback addresses of the head and the second node: Linux routes all of 127.0.0.0/8 to the loopback device,
#: so the second node gets an IP of its own (Ray Train groups workers into machines by node IP).
HEAD_IP, SECOND_IP = "127.0.0.1", "127.0.0.2"
#: How fast the head declares a silent node dead (Ray's defaults take about 30 s): health checks every second,
#: dead after 3 misses.
FAST_NODE_DEATH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
                   "RAY_health_check_failure_threshold": "3"}


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


def _worker_port_low(seed_port: int) -> int:
    """The first of 201 worker ports, below the kernel's ephemeral range (where :func:`free_ports` draws from),
    spread by ``seed_port`` so that two nodes on one machine rarely share a range."""
    low, _ = (int(p) for p in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    return 10000 + (seed_port * 7919) % max(1, low - 10000 - 201)


def _processes_of(temp_dir: str, gcs_port: int | None = None):
    """The processes of the node(s) started with ``temp_dir`` (or, with ``gcs_port``, of the whole cluster), and
    every process they started."""
    import psutil

    found = set()
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        in_cluster = gcs_port is not None and (f"--gcs-address=127.0.0.1:{gcs_port}" in cmdline
                                               or f":{gcs_port} " in cmdline)
        if temp_dir in cmdline or in_cluster:
            found.add(proc)
            try:
                found.update(proc.children(recursive=True))
            except psutil.NoSuchProcess:
                pass
    return found


def _kill(procs) -> None:
    import psutil

    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(list(procs), timeout=15)


#: Ways to start a process in a mount namespace of its own (where it can mount tmpfs folders nobody else sees),
#: as root or through a user namespace; the first that works on this machine is used.
_UNSHARE = (["unshare", "--mount", "--propagation", "private"],
            ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"])


def own_disk_prefix(hidden: list[str]) -> list[str] | None:
    """A command prefix that runs a command as if on a machine of its own, or None when this machine cannot.

    The command gets an empty /dev/shm and an empty folder over each of ``hidden`` (the other nodes' folders),
    visible to it and its children only. Two nodes of one machine otherwise share both, and libraries that assume
    one machine per node rank collide there: MosaicML Streaming registers each machine's datasets in /dev/shm
    (two local leaders both create ``/000000_locals``: ``FileExistsError``), and Composer's autoresume writes a
    signal file into rank 0's local checkpoint folder on every node and removes it (the second ``os.remove``
    fails: ``FileNotFoundError``).
    """
    mounts = " && ".join(f"mount -t tmpfs tmpfs {folder}" for folder in ["/dev/shm", *hidden])
    for unshare in _UNSHARE:
        probe = [*unshare, "sh", "-c", "mount -t tmpfs tmpfs /dev/shm"]
        try:
            if subprocess.run(probe, capture_output=True, timeout=30).returncode == 0:
                return [*unshare, "sh", "-c", f'{mounts} && exec "$@"', "sh"]
        except (OSError, subprocess.TimeoutExpired):
            pass
    return None


def _ray_start(args: list[str], env: dict, cwd: str | None = None, prefix: list[str] = ()) -> None:
    command = [*prefix, str(Path(sys.executable).parent / "ray"), "start", *args, "--disable-usage-stats"]
    started = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=180)
    if started.returncode != 0:
        raise RuntimeError(f"ray start failed:\n{started.stdout[-2000:]}\n{started.stderr[-2000:]}")


def _node_ports(ip: str) -> list[str]:
    """Flags giving a node its own ports: free ones for its services, a range below them for its workers."""
    node_manager, object_manager, metrics, agent, agent_grpc, runtime_env = free_ports(6)
    worker_low = _worker_port_low(node_manager)
    return [f"--node-ip-address={ip}", f"--node-manager-port={node_manager}",
            f"--object-manager-port={object_manager}", f"--metrics-export-port={metrics}",
            f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--runtime-env-agent-port={runtime_env}", f"--min-worker-port={worker_low}",
            f"--max-worker-port={worker_low + 200}"]


@contextmanager
def ray_head(num_cpus: int = 2):
    """Starts ``ray start --head`` with token auth.

    Yields:
        (Jobs API URL, GCS address, token file, environment for clients of this cluster)
    """
    # Unix socket paths are limited to ~107 bytes: keep the temp dir short.
    temp_dir = tempfile.mkdtemp(prefix="spt-ray-", dir="/tmp")
    token_file = Path(temp_dir) / "token"
    token_file.write_text(secrets.token_hex(32))
    gcs, dashboard, client = free_ports(3)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file), "RAY_ADDRESS": "",
           "OMP_NUM_THREADS": "1", "SPT_PROGRESS": "0"}
    try:
        _ray_start(["--head", *_node_ports(HEAD_IP), f"--port={gcs}", f"--dashboard-port={dashboard}",
                    "--dashboard-host=127.0.0.1", f"--ray-client-server-port={client}", f"--temp-dir={temp_dir}",
                    f"--num-cpus={num_cpus}", "--include-dashboard=true"], env)
        yield f"http://127.0.0.1:{dashboard}", f"127.0.0.1:{gcs}", token_file, env
    finally:
        _kill(_processes_of(temp_dir, gcs))
        shutil.rmtree(temp_dir, ignore_errors=True)


@dataclass
class RayNode:
    """One ``ray start`` of a cluster: its Ray temp dir, the working directory and ``$TMPDIR`` its processes
    (and so every task and job on it) start with, and the custom resource that names it."""

    name: str
    ip: str
    root: Path
    node_id: str = ""

    @property
    def temp_dir(self) -> str:
        return str(self.root / "ray")

    @property
    def work_dir(self) -> Path:
        return self.root / "work"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    prefix: list[str] = field(default_factory=list)  # runs `ray start` as on a machine of its own

    def start(self, flags: list[str], env: dict, num_cpus: int) -> None:
        for folder in (self.work_dir, self.tmp_dir):
            folder.mkdir(parents=True, exist_ok=True)
        node_env = {**env, "TMPDIR": str(self.tmp_dir)}
        _ray_start([*flags, *_node_ports(self.ip), f"--temp-dir={self.temp_dir}", f"--num-cpus={num_cpus}",
                    f'--resources={{"{self.name}": 1}}'], node_env, cwd=str(self.work_dir), prefix=self.prefix)

    def seen(self, folder: Path) -> Path:
        """``folder`` as this node's processes see it (another node's folders are empty to it), while it runs."""
        raylets = [p for p in _processes_of(self.temp_dir) if p.name() == "raylet"]
        if not raylets:
            raise RuntimeError(f"{self.name} is not running")
        return Path(f"/proc/{raylets[0].pid}/root{folder}")

    def stop(self) -> int:
        """Kills every process of this node (raylet, agents, workers and what they started); returns how many."""
        procs = _processes_of(self.temp_dir)
        _kill(procs)
        return len(procs)


@dataclass
class RayCluster:
    """A head (``node_a``) and a second node (``node_b``) on this machine, and how clients reach them."""

    address: str  # the Jobs API
    gcs_address: str
    token_file: Path
    env: dict  # for clients and for the nodes' own processes
    head: RayNode
    second: RayNode
    num_cpus: int
    dead: list[str] = field(default_factory=list)  # node ids of stopped second nodes

    def start_second(self) -> None:
        """(Re)starts the second node (a new Ray node id each time) and waits until the head lists it alive."""
        self.second.start([f"--address={self.gcs_address}"], self.env, self.num_cpus)
        self.second.node_id = self._wait_for_node("node_b")

    def stop_second(self) -> None:
        """Loses the second node: kills its processes by PID, then waits until the head declares it dead."""
        self.second.stop()
        lost = self.second.node_id
        deadline = time.time() + 120
        while lost in self.alive_nodes() and time.time() < deadline:
            time.sleep(0.5)
        self.dead.append(lost)

    def alive_nodes(self) -> dict[str, dict]:
        """Node id -> resources of every live node, from the head's GCS (``ray list nodes``)."""
        listed = subprocess.run([str(Path(sys.executable).parent / "ray"), "list", "nodes", "--format=json",
                                 f"--address={self.gcs_address}", "--filter", "state=ALIVE"],
                                env=self.env, capture_output=True, text=True, timeout=60)
        import json

        if listed.returncode != 0:
            raise RuntimeError(listed.stderr[-2000:])
        return {n["node_id"]: n.get("resources_total", {}) for n in json.loads(listed.stdout)}

    def _wait_for_node(self, resource: str) -> str:
        deadline = time.time() + 120
        while time.time() < deadline:
            for node_id, resources in self.alive_nodes().items():
                if resources.get(resource):
                    return node_id
            time.sleep(0.5)
        raise RuntimeError(f"no live node with resource {resource} after 120 s")


@contextmanager
def ray_cluster(num_cpus: int = 2, env: dict | None = None):
    """A head and a second node, each ``num_cpus`` CPUs, token auth shared through ``RAY_AUTH_TOKEN_PATH``.

    The head (``{"node_a": 1}``, started at 127.0.0.1, which Ray replaces by the machine's address) and the second
    node (``{"node_b": 1}``, 127.0.0.2) have their own
    Ray temp dir, ports, working directory and ``$TMPDIR`` under one folder each, so a stage that writes a local
    path on one node leaves it in that node's folders. Each node runs in a mount namespace of its own, with its
    own /dev/shm, where the other node's folder is an empty folder (see :func:`own_disk_prefix`): as on two
    machines, what one node writes locally the other never sees. The head declares a lost node dead within
    seconds.

    Args:
        env: extra environment for both nodes' processes (e.g. the object store's settings).

    Raises:
        RuntimeError: this machine cannot give a process a mount namespace of its own.

    Yields:
        :class:`RayCluster`.
    """
    # Unix socket paths are limited to ~107 bytes: keep the folders short.
    base = Path(tempfile.mkdtemp(prefix="spt-rc-", dir="/tmp"))
    for name in ("a", "b"):
        (base / name).mkdir()
    head_prefix, second_prefix = own_disk_prefix([str(base / "b")]), own_disk_prefix([str(base / "a")])
    if head_prefix is None or second_prefix is None:
        shutil.rmtree(base)
        raise RuntimeError("cannot give a Ray node a disk of its own: `unshare --mount` (root) and "
                           "`unshare --user --mount` both fail here")
    token_file = base / "token"
    token_file.write_text(secrets.token_hex(32))
    gcs, dashboard, client = free_ports(3)
    client_env = {**os.environ, **(env or {}), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file),
                  "RAY_ADDRESS": "", "OMP_NUM_THREADS": "1", "SPT_PROGRESS": "0"}
    head = RayNode("node_a", HEAD_IP, base / "a", prefix=head_prefix)
    second = RayNode("node_b", SECOND_IP, base / "b", prefix=second_prefix)
    cluster = RayCluster(f"http://127.0.0.1:{dashboard}", f"127.0.0.1:{gcs}", token_file, client_env, head, second,
                         num_cpus)
    try:
        cluster.head.start(["--head", f"--port={gcs}", f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1",
                            f"--ray-client-server-port={client}", "--include-dashboard=true"],
                           {**client_env, **FAST_NODE_DEATH}, num_cpus)
        cluster.head.node_id = cluster._wait_for_node("node_a")
        cluster.start_second()
        yield cluster
    finally:
        _kill(_processes_of(str(base), gcs))
        shutil.rmtree(base, ignore_errors=True)
