"""`spt sweep`, `spt submit` and `spt jobs`: grids of runs on Ray, and any spt command as a Ray job."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from cli.common import add_config_arguments, open_config, print_config
from cli.main import build_parser
from spt import environments
from spt.cluster import job_client
from spt.errors import InputError
from spt.upload import upload_for
from sweeps.layout import SweepLayout
from sweeps.plan import format_plan, plan_sweep
from sweeps.run import run_sweep as sweep

#: Not uploaded with the working directory: environments, caches, outputs (credentials never are either:
#: see :data:`spt.cluster.CREDENTIAL_PATTERNS`).
UPLOAD_EXCLUDES = [".venv", ".spt", "outputs", ".git", "__pycache__", "*.pyc", ".pytest_cache"]


def register(subparsers: argparse._SubParsersAction) -> None:
    sweep = subparsers.add_parser("sweep", help="train a δ x model x tokens grid on Ray into one results table")
    add_config_arguments(sweep)
    sweep.add_argument("--address", default=None, help="Ray address (HOST:6379, ray://HOST:10001 or auto)")
    sweep.add_argument("--force", action="store_true",
                       help="rerun the cells whose configs or inputs changed since they ran (else the sweep refuses)")
    sweep.add_argument("--no-calibrate", action="store_true",
                       help="with --dry-run: do not time a few training steps when no finished cell measured a preset")
    sweep.set_defaults(func=run_sweep, environment="train")

    submit = subparsers.add_parser("submit", help="submit any spt command to a Ray cluster as a job")
    submit.add_argument("--address", required=True, help="the cluster's Jobs API, http://HOST:8265")
    submit.add_argument("--follow", action="store_true", help="stream the job's logs and exit with its outcome")
    submit.add_argument("--working-dir", default=".", help="folder uploaded as the job's working directory")
    submit.add_argument("--python", default=None,
                        help="interpreter on the cluster (default: $SPT_<ENV>_PYTHON or the local environment's)")
    submit.add_argument("--token-file", default=None, help="file holding the cluster's auth token")
    submit.add_argument("--dry-run", action="store_true", help="print the job that would be submitted and exit")
    submit.add_argument("command", nargs=argparse.REMAINDER, help="-- spt COMMAND [ARGS ...]")
    submit.set_defaults(func=run_submit, environment="any")

    jobs = subparsers.add_parser("jobs", help="list, show logs of, or stop Ray jobs")
    jobs.add_argument("action", choices=["list", "logs", "stop", "status"])
    jobs.add_argument("job_id", nargs="?", help="submission id (for logs, stop, status)")
    jobs.add_argument("--address", required=True, help="the cluster's Jobs API, http://HOST:8265")
    jobs.add_argument("--token-file", default=None, help="file holding the cluster's auth token")
    jobs.add_argument("--dry-run", action="store_true", help="print what would be asked and exit")
    jobs.set_defaults(func=run_jobs, environment="any")


def run_sweep(args: argparse.Namespace) -> int:
    def show(config) -> None:
        plan = plan_sweep(config, calibrate_when_unmeasured=not args.no_calibrate)  # refuses bad cells first
        print_config(config)
        print(format_plan(plan))

    config = open_config(args, "sweep", show=show)
    if config is None:
        return 0

    results = sweep(config, args.address, force=args.force)
    print(results.to_string(index=False, columns=["run_id", "status", "domain_loss", "general_loss", "wall_seconds"]))
    failed = results[results["status"] != "ok"]
    for _, row in failed.iterrows():
        print(f"failed: {row['run_id']}: {row['error']} (log: {row['log_path']})", file=sys.stderr)
    print(f"results: {SweepLayout(config.output_dir).results}")
    return 0 if failed.empty else 1


def job_entrypoint(command: list[str], python: str | None) -> tuple[str, str]:
    """Validates ``spt COMMAND ...`` and turns it into the job's shell entrypoint; returns (entrypoint, environment)."""
    if command and command[0] == "--":
        command = command[1:]
    if not command or command[0] != "spt":
        raise InputError("submit: give the command after --, starting with spt (e.g. -- spt sweep configs/x.yaml)")
    try:
        parsed = build_parser().parse_args(command[1:])
    except SystemExit:
        raise InputError(f"submit: not a valid spt command: {shlex.join(command)}") from None
    environment = getattr(parsed, "environment", "any")
    env_name = "train" if environment == "any" else environment
    interpreter = python or os.environ.get(f"SPT_{env_name.upper()}_PYTHON") or str(environments.python_for(env_name))
    return f"{shlex.quote(interpreter)} -m cli.main {shlex.join(command[1:])}", env_name


def run_submit(args: argparse.Namespace) -> int:
    entrypoint, env_name = job_entrypoint(args.command, args.python)
    working_dir = Path(args.working_dir)
    if not working_dir.is_dir():
        raise InputError(f"--working-dir={args.working_dir!r}: no such folder")
    upload = upload_for(working_dir, args.command, UPLOAD_EXCLUDES)
    subcommand = entrypoint.split(" -m cli.main ", 1)[1].split()[0]
    submission_id = f"spt-{subcommand}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    if args.dry_run:
        print(f"entrypoint: {entrypoint}\nenvironment: {env_name}\nworking_dir: {upload.folder}")
        print(format_upload(upload))
        return 0

    client = job_client(args.address, args.token_file)
    # Ray zips the folder it is given: a temp copy of exactly the listed files (Ray's own excludes and
    # .gitignore handling would upload whatever they do not name, credentials included).
    with upload.staged() as staged:
        runtime_env = {
            "working_dir": str(staged),
            # Job logs are not a terminal: long stages print a plain progress line every $SPT_PROGRESS_SECONDS.
            "env_vars": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
        }
        job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env, submission_id=submission_id)
    print(f"submitted job {job_id} to {args.address} ({env_name} environment, {_size(upload.total_bytes)} in "
          f"{len(upload.files)} files)", flush=True)
    if not args.follow:
        return 0
    return follow(client, job_id)


def format_upload(upload) -> str:
    """The files a job would upload with their sizes, the total, and what is left out and why."""
    lines = [f"upload ({upload.basis}):"]
    lines += [f"  {_size(size):>9}  {relative}" for relative, size in upload.files.items()]
    lines.append(f"upload: {len(upload.files)} files, {_size(upload.total_bytes)}")
    lines += [f"not uploaded: {relative} ({reason})" for relative, reason in upload.left_out.items()]
    return "\n".join(lines)


def _size(num_bytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:.1f} {unit}"
    return f"{num_bytes} B"


def follow(client, job_id: str, poll_seconds: float = 1.0) -> int:
    """Streams a job's log until it ends; returns 0 if it succeeded."""
    from ray.job_submission import JobStatus

    shown = 0
    while True:
        status = client.get_job_status(job_id)
        logs = client.get_job_logs(job_id)
        print(logs[shown:], end="", flush=True)
        shown = len(logs)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            print(f"job {job_id}: {status.value}")
            return 0 if status == JobStatus.SUCCEEDED else 1
        time.sleep(poll_seconds)


def run_jobs(args: argparse.Namespace) -> int:
    if args.action != "list" and not args.job_id:
        raise InputError(f"jobs {args.action}: give a job id")
    if args.dry_run:
        print(f"jobs {args.action} {args.job_id or ''} at {args.address}")
        return 0

    client = job_client(args.address, args.token_file)
    try:
        if args.action == "list":
            for job in sorted(client.list_jobs(), key=lambda j: j.start_time or 0):
                print(f"{job.submission_id}\t{job.status.value}\t{job.entrypoint}")
        elif args.action == "logs":
            print(client.get_job_logs(args.job_id), end="")
        elif args.action == "status":
            print(client.get_job_status(args.job_id).value)
        else:
            print(f"stop requested: {client.stop_job(args.job_id)}")
    except RuntimeError as exc:
        raise InputError(f"jobs {args.action}: {str(exc).splitlines()[0]}") from None
    return 0
