"""What a run writes besides its curve table, on a local folder or ``s3://``: Composer checkpoints, the file
log and the exported model (see :mod:`training.layout` for where each goes).

Checkpoints on S3 go through Composer's own uploader (its ``S3ObjectStore`` reads ``$S3_ENDPOINT_URL`` like
:mod:`spt.storage`), and autoresume downloads ``latest-rank<r>.pt.symlink`` and the checkpoint it names. spt
builds the :class:`~composer.callbacks.CheckpointSaver` itself instead of passing ``save_folder="s3://..."`` to the
Trainer, because with that argument Composer 0.32.1 (a) makes a local folder named ``s3:`` in the working
directory while looking for a checkpoint to resume from, and (b) checks its credentials by writing
``.credentials_validated_successfully`` at the *bucket's root*, outside the run. Here the uploader's object store
is rooted at the run's checkpoints prefix, so both stay inside the run dir, and the local side is a temp folder.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from composer.core import Callback, State
from composer.loggers import Logger

from spt import storage
from spt.errors import InputError
from spt.storage.staging import staged_folder
from training.export import complete_model_folder
from training.layout import RunLayout

CHECKPOINT_NAME = "ba{batch}-rank{rank}.pt"
LATEST_NAME = "latest-rank{rank}.pt"
LOG_NAME = "metrics-rank{rank}.log"
#: Seconds between checks that a checkpoint's upload finished before its `latest` symlink is uploaded
#: (Composer's default, 30, would leave a killed run's latest checkpoint unreachable for that long).
SYMLINK_RETRY_SECONDS = 1.0


class RunFiles:
    """The local places Composer writes a run's checkpoints and log into, and their upload to an S3 run dir.

    Locally these are the run dir's own folders. For an ``s3://`` run dir they are temp folders, removed by
    :meth:`close`: checkpoints are uploaded by Composer as they are saved, the log at every evaluation and at the
    end (:class:`LogUpload`).
    """

    def __init__(self, layout: RunLayout):
        self.layout = layout
        self.staging = Path(tempfile.mkdtemp(prefix="spt-run-")) if layout.remote else None
        self._savers: list = []

    @property
    def log_folder(self) -> Path:
        return self.staging / "logs" if self.staging else storage.local_path(self.layout.logs)

    def checkpoint_saver(self, interval_batches: int):
        """Composer's CheckpointSaver: every ``interval_batches`` batches and at the end, the last two kept locally."""
        from composer.callbacks import CheckpointSaver

        folder = self.staging / "checkpoints" if self.staging else storage.local_path(self.layout.checkpoints)
        # The remote names only take effect with an uploader (S3); locally no logger destination uploads, but
        # the Trainer's autoresume asserts a `latest` remote name.
        saver = CheckpointSaver(
            folder=str(folder), filename=CHECKPOINT_NAME, remote_file_name=CHECKPOINT_NAME, latest_filename=LATEST_NAME,
            latest_remote_file_name=LATEST_NAME, save_interval=f"{interval_batches}ba",
            # A kill between writing a checkpoint and moving the `latest` link leaves a file the resumed run will
            # write again (with the same content: the run is deterministic), so overwriting is safe and needed.
            overwrite=True, num_checkpoints_to_keep=2,
        )
        if self.layout.remote:
            _upload_to(saver, self.layout.checkpoints)
        self._savers.append(saver)
        return saver

    def callbacks(self) -> list:
        return [LogUpload(self.log_folder, self.layout.logs)] if self.layout.remote else []

    def close(self) -> None:
        if self.staging:
            shutil.rmtree(self.staging, ignore_errors=True)
        # Composer writes each `latest` link into a temp folder of its own that only its finalizer removes, which
        # never runs in a Ray Train worker (Ray kills the worker process): it was left in the node's $TMPDIR.
        for saver in self._savers:
            symlinks = getattr(saver, "tmp_dir_for_symlink", None)
            if symlinks is not None:
                symlinks.cleanup()


def _upload_to(saver, location: str) -> None:
    """Makes ``saver`` upload every checkpoint and its `latest` symlink to the S3 folder ``location``."""
    from composer.utils.remote_uploader import RemoteUploader

    prefix = location[len(storage.S3):].partition("/")[2]
    # The uploader adds the bucket from the URL itself (and refuses backend_kwargs that already hold one).
    saver.remote_uploader = RemoteUploader(remote_folder=location, num_concurrent_uploads=1,
                                           backend_kwargs={"prefix": prefix})
    saver._symlink_upload_wait_before_next_try_in_seconds = SYMLINK_RETRY_SECONDS


def checkpoint_globals() -> list:
    """The Python objects besides torch's own (tensors, storages, dtypes, ``OrderedDict``) that a checkpoint spt
    writes holds: wall-clock times, the torch version string and numpy's random state (an array, its dtype and
    the dtype's class). Found by loading checkpoints of Composer 0.32.1 under torch 2.7 with torch's weights-only
    unpickler. None of them runs code when unpickled: each builds a value from the plain data that follows it."""
    import datetime

    import numpy as np
    import torch

    dtype_classes = [c for c in vars(np.dtypes).values() if isinstance(c, type) and issubclass(c, np.dtype)]
    return [datetime.timedelta, torch.torch_version.TorchVersion, np.ndarray, np.dtype,
            np._core.multiarray._reconstruct, *dtype_classes]


@contextmanager
def code_free_checkpoints(checkpoints: str) -> Iterator[None]:
    """Checkpoints loaded in the block (Composer's autoresume) are unpickled by torch's weights-only unpickler:
    tensors, plain values and :func:`checkpoint_globals`, never code.

    Composer 0.32.1 calls ``torch.load(..., weights_only=False)`` and has no option to change that; torch's
    ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` overrides the argument, so it is set for the block only (other libraries'
    loads outside it keep their own choice). A digest recorded beside a checkpoint would not do: whoever can write
    a crafted checkpoint into ``run_dir`` (a shared S3 prefix) can write its digest too.

    Raises:
        InputError: a checkpoint in the block names any other global; nothing of it ran.
    """
    import torch

    saved = {name: os.environ.pop(name, None) for name in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD",
                                                           "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        with torch.serialization.safe_globals(checkpoint_globals()):
            yield
    except pickle.UnpicklingError as exc:
        raise InputError(
            f"{_latest_checkpoint(checkpoints)}: refused: unpickling it needs {_unpickling_problem(exc)}, which "
            "could run code; checkpoints written by spt hold only tensors and plain values. Rerun with "
            "autoresume=false to train from scratch (it deletes the run's checkpoints)") from None
    finally:
        del os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"]
        os.environ.update({name: value for name, value in saved.items() if value is not None})


def _unpickling_problem(exc: Exception) -> str:
    """What torch's weights-only unpickler refused (its message is a page of advice around one line)."""
    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        return found.group(1)
    found = re.search(r"WeightsUnpickler error: ([^\n]+)", text)
    return f"what torch refused ({found.group(1) if found else text.splitlines()[0]})"


def _latest_checkpoint(checkpoints: str) -> str:
    """The checkpoint that rank 0's `latest` link names (locally a symlink, on S3 an object holding the name),
    or the checkpoints folder when there is none."""
    latest = storage.join(checkpoints, LATEST_NAME.format(rank=0))
    try:
        if storage.is_remote(checkpoints):
            target = storage.read_text(latest + ".symlink").strip().rsplit("/", 1)[-1]
        else:
            target = os.readlink(storage.local_path(latest))
    except OSError:
        return checkpoints
    return storage.join(checkpoints, os.path.basename(target))


class LogUpload(Callback):
    """Copies the local file logs to the run dir on S3 after every evaluation and at the end of training."""

    def __init__(self, local_folder: Path, location: str):
        self.local_folder, self.location = Path(local_folder), location

    def _upload(self) -> None:
        for path in sorted(self.local_folder.glob("*.log")):
            storage.write_bytes(storage.join(self.location, path.name), path.read_bytes())

    def eval_after_all(self, state: State, logger: Logger) -> None:
        self._upload()

    def fit_end(self, state: State, logger: Logger) -> None:
        self._upload()


class BatchCounter(Callback):
    """Counts the batches trained in this process: what a resumed run really trained, not what its clock says."""

    def __init__(self):
        self.batches = 0

    def batch_end(self, state: State, logger: Logger) -> None:
        self.batches += 1


class Snapshots(Callback):
    """Exports the model after each snapshot's batch, on rank 0 (see :mod:`training.snapshots`).

    It runs at the batch's end, before the batch's checkpoint is saved: a run killed during an export resumes
    from an earlier checkpoint and passes the batch again, so no snapshot is lost; a snapshot exported again is
    replaced whole, with the same weights (the run is deterministic), so none is doubled.
    """

    def __init__(self, layout: RunLayout, batches: dict[int, int], spec: dict):
        self.layout, self.batches, self.spec = layout, batches, spec

    def batch_end(self, state: State, logger: Logger) -> None:
        tokens = self.batches.get(int(state.timestamp.batch))
        if tokens is not None and int(os.environ.get("RANK", "0")) == 0:
            export_model(state.model, self.layout.snapshot(tokens), self.spec)


def export_model(model, location: str, spec: dict | None = None) -> None:
    """Saves weights as a safetensors HF folder at ``location`` (replaced whole; finetune and interpolate load
    it, nothing is unpickled). With the mix ``spec``, the folder also gets the mix's tokenizer and a generation
    config, so ``AutoTokenizer`` and ``AutoModelForCausalLM`` both load it as it is."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    with staged_folder(location) as folder:
        model.model.save_pretrained(folder, safe_serialization=True)
        if spec is not None:
            complete_model_folder(str(folder), spec)


@contextmanager
def local_model(location: str) -> Iterator[Path]:
    """A local folder with the model at ``location`` (downloaded to a temp folder when it is on S3)."""
    if not storage.is_remote(location):
        yield storage.local_path(location)
        return
    with tempfile.TemporaryDirectory(prefix="spt-model-") as tmp:
        yield storage.download_folder(location, tmp)
