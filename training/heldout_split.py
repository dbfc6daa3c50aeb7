"""Validation and test splits of a domain held-out set, by document, for finetuning.

Early stopping watches one split and the reported loss comes from the other: the minimum of a curve that was
watched to stop is an optimistic estimate of the loss of the model it picked.

How samples map to documents: `spt mix build` tokenizes each held-out document, ends it with one EOS token and
packs the joined stream into consecutive ``seq_len`` samples, in document order (:mod:`pipelines.mix.pack`). So
document ``d`` is the tokens after the ``d``-th EOS up to and including the next one, and each sample's documents
can be read off its tokens. The split is contiguous: documents ``[0, k)`` are the validation split and
``[k, D)`` the test split, with ``k`` the document at the asked share of the samples. The one sample that holds the
end of document ``k - 1`` and the start of document ``k`` (if the boundary falls inside a sample) belongs to
neither, so the two splits share no document. (Splitting by a hash of each document instead would drop every
sample that straddles two documents of different splits: most samples when documents are shorter than a sample.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.mix.streams import eval_dataset
from spt.errors import InputError


@dataclass(frozen=True)
class HeldoutSplit:
    """The two splits: samples ``(n, seq_len)`` and the document ordinals ``[first, stop)`` each covers."""

    validation: np.ndarray
    test: np.ndarray
    validation_documents: tuple[int, int]
    test_documents: tuple[int, int]
    dropped_samples: int

    def describe(self) -> dict:
        return {"validation_samples": len(self.validation), "test_samples": len(self.test),
                "validation_documents": list(self.validation_documents),
                "test_documents": list(self.test_documents), "dropped_samples": self.dropped_samples}


def sample_documents(samples: np.ndarray, eos_token_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(document of each sample's first token, document of its last token), documents numbered from 0 in order."""
    flat = samples.reshape(-1)
    document = np.concatenate([[0], np.cumsum(flat == eos_token_id)[:-1]])  # EOS tokens before each token
    seq_len = samples.shape[1]
    return document[::seq_len], document[seq_len - 1::seq_len]


def split_by_document(samples: np.ndarray, eos_token_id: int, test_fraction: float, where: str) -> HeldoutSplit:
    """Splits held-out samples (in build order) into validation and test samples that share no document.

    Args:
        samples: ``(n, seq_len)`` token ids, the held-out split of one source in order.
        eos_token_id: the token that ends every document.
        test_fraction: the share of the samples aimed at for the test split (the cut moves to a document end).
        where: how messages name the held-out set.

    Raises:
        InputError: fewer than two documents, or no cut leaves samples on both sides.
    """
    first, last = sample_documents(samples, eos_token_id)
    count = len(samples)
    cut = min(max(round(count * (1 - test_fraction)), 1), count - 1) if count > 1 else 0
    for boundary in (int(first[cut]), int(first[cut]) + 1):  # the document starting at or in sample `cut`
        validation, test = last < boundary, first >= boundary
        if validation.any() and test.any():
            documents = int(last[-1]) + 1
            return HeldoutSplit(samples[validation], samples[test], (0, boundary), (boundary, documents),
                                int(count - validation.sum() - test.sum()))
    raise InputError(f"{where}: {count} held-out samples of {int(last[-1]) + 1 if count else 0} documents cannot be "
                     "split by document into validation and test samples; finetuning needs a domain held-out set "
                     "of at least two documents, each side a whole sample or more")


def read_heldout(spec: dict, source: str, limit: int | None = None) -> np.ndarray:
    """The held-out samples of a source of a built mix (the first ``limit``, or all), in build order, as
    ``(n, seq_len)`` int64."""
    dataset = eval_dataset(spec, source, batch_size=1, num_canonical_nodes=1)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    rows = [np.asarray(dataset[i]["tokens"], dtype=np.int64) for i in range(count)]
    return np.stack(rows) if rows else np.zeros((0, int(spec["seq_len"])), np.int64)


def domain_split(spec: dict, test_fraction: float) -> tuple[str, HeldoutSplit]:
    """(the domain source's name, its held-out split) for the first domain source with held-out samples.

    Raises:
        InputError: the mix has no domain held-out samples, or they cannot be split.
    """
    held_out = [e for e in spec["eval"] if e["role"] == "domain" and e.get("samples")]
    if not held_out:
        raise InputError(f"finetune: the mix {spec.get('name')!r} has no held-out domain samples to validate and "
                         "test on (give the domain source heldout_paths or heldout_fraction)")
    source = held_out[0]["name"]
    where = f"finetune: mix {spec.get('name')!r}, source {source!r}"
    return source, split_by_document(read_heldout(spec, source), int(spec["eos_token_id"]), test_fraction, where)


def mean_loss(model, samples: np.ndarray, batch_size: int = 16) -> float:
    """Mean next-token cross-entropy (nats/token) of an HF causal LM over ``samples``."""
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(samples), batch_size):
            ids = torch.as_tensor(samples[start:start + batch_size])
            logits = model(input_ids=ids).logits[:, :-1]
            targets = ids[:, 1:]
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                                     reduction="sum").item()
            count += targets.numel()
    return total / max(count, 1)
