"""The train environment's part of `spt rephrase` when its input is a Hugging Face dataset (``input.hf``).

Rephrasing runs in the generate environment, which has no `datasets` (a version that fits vLLM's transformers
would move huggingface_hub under it). So `spt rephrase`, started in the train environment, first writes the
dataset as parquet (columns ``id``, ``text``) into a content-addressed cache (:func:`pipelines.hf_datasets.
materialize`), then re-runs itself under the generate interpreter with overrides that name those folders instead
of the dataset. The generate stage reads them like any parquet input; its fingerprint covers their content, so a
changed dataset is another input there too.
"""

from __future__ import annotations

import json
import sys

from pipelines.hf_datasets import claim_cache, materialize, open_dataset
from spt import storage
from spt.config.rephrase import RephraseConfig
from spt.errors import InputError


def default_cache_dir() -> str:
    """``$SPT_CACHE_DIR/hf`` (:func:`spt.storage.cache_folder`)."""
    return storage.cache_folder("hf")


def uses_hf(config: RephraseConfig) -> bool:
    return config.input.hf is not None


def handoff_overrides(config: RephraseConfig) -> list[str]:
    """Materializes ``input.hf`` (and ``input.heldout_hf``) and returns the ``KEY=VALUE`` overrides that hand the
    parquet folders to the generate stage in their place; [] when the input is not a Hugging Face dataset.

    Raises:
        InputError: a dataset that cannot be opened (checked for both before anything is written), or a cache
            folder spt may not write.
    """
    named = {"hf": config.input.hf, "heldout_hf": config.input.heldout_hf}
    opened, problems = {}, []
    for name, spec in named.items():
        if spec is None:
            continue
        try:
            opened[name] = open_dataset(spec, f"rephrase.input.{name}")
        except InputError as exc:
            problems += exc.problems
    if problems:
        raise InputError(problems)
    if not opened:
        return []
    cache = config.input.cache_dir or default_cache_dir()
    claim_cache(cache, "rephrase.input.cache_dir")
    overrides = ["input.hf=null", "input.heldout_hf=null", "input.format=auto", "input.text_column=text",
                 "input.id_column=id"]
    for name, source in opened.items():
        written = materialize(source, cache)
        field = "paths" if name == "hf" else "heldout_paths"
        overrides.append(f"input.{field}={json.dumps([written.folder])}")  # JSON is YAML: any path survives
        state = "reused" if written.reused else "written"
        print(f"rephrase: {source.spec.label()} ({written.rows} rows) as parquet {state}: {written.folder}",
              file=sys.stderr, flush=True)
    return overrides
