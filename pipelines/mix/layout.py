"""Where a mix's files go, computed once per run from the config (local or ``s3://``)::

    <output_dir>/.spt-owner.json                  the store's ownership marker (stage mix)
    <output_dir>/sources/<name>-<hash12>/         MDS {train,heldout}/ and source.json, written last
    <output_dir>/mixes/<mix name>/                .spt-owner.json (the mix's fingerprint), plan.json,
                                                  manifest.json, streams.json (written last)
    <cache>/<count key>.json                      token counts; <cache> = cache_dir or <output_dir>/cache
    <cache>/hf/<dataset>-<key16>/                 Hugging Face datasets of `hf:` sources, as parquet
"""

from __future__ import annotations

from dataclasses import dataclass

from spt import storage
from spt.config.mix import MixConfig
from spt.storage import ownership

#: The marker fingerprint of a mix store: its sources are content-addressed, so any mix may add to it.
STORE_FINGERPRINT = "content-addressed"
SOURCE_MANIFEST = "source.json"
STAGE = "mix"


@dataclass(frozen=True)
class MixLayout:
    """Every location a mix reads or writes; ``name`` is the mix's folder under ``mixes/``."""

    root: str
    cache: str
    name: str = ""

    @classmethod
    def of(cls, config: MixConfig, name: str = "") -> "MixLayout":
        return cls(config.output_dir, config.cache_dir or storage.join(config.output_dir, "cache"), name)

    @property
    def separate_cache(self) -> bool:
        """True when the count cache lives outside the store (then it is claimed on its own)."""
        return self.cache != storage.join(self.root, "cache")

    @property
    def sources(self) -> str:
        return storage.join(self.root, "sources")

    def source(self, dir_name: str, *parts: str) -> str:
        return storage.join(self.sources, dir_name, *parts)

    def source_manifest(self, dir_name: str) -> str:
        return self.source(dir_name, SOURCE_MANIFEST)

    @property
    def mix(self) -> str:
        return storage.join(self.root, "mixes", self.name)

    @property
    def plan(self) -> str:
        return storage.join(self.mix, "plan.json")

    @property
    def manifest(self) -> str:
        return storage.join(self.mix, "manifest.json")

    @property
    def streams(self) -> str:
        return storage.join(self.mix, "streams.json")

    def count(self, key: str) -> str:
        return storage.join(self.cache, f"{key}.json")

    @property
    def hf(self) -> str:
        """Hugging Face datasets materialized as parquet (:func:`pipelines.hf_datasets.materialize`)."""
        return storage.join(self.cache, "hf")

    def check_store(self) -> None:
        """Refuses a store or cache folder that is not writable or not spt's mix store (writes nothing).

        Raises:
            InputError: one line naming the folder and the rule.
        """
        ownership.check_claim(self.root, STAGE, STORE_FINGERPRINT, where="mix.output_dir")
        if self.separate_cache:
            ownership.check_claim(self.cache, "mix-cache", STORE_FINGERPRINT, where="mix.cache_dir")

    def claim_store(self) -> None:
        """Claims the store and the cache (before the first file is written into either)."""
        ownership.claim(self.root, STAGE, STORE_FINGERPRINT, where="mix.output_dir")
        if self.separate_cache:
            ownership.claim(self.cache, "mix-cache", STORE_FINGERPRINT, where="mix.cache_dir")
