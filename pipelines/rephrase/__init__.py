"""Synthetic rephrasing: seed documents -> quality filter -> token-aware chunks -> styled prompts -> vLLM -> quality
gate -> shards.

One module per stage; each stage is a small class or function that works in Ray Data and when called directly:

- :mod:`.sources`   list inputs (local or s3://; parquet, jsonl, HF datasets) and cut them into work units
- :mod:`.quality`   decode and clean documents; seed-quality rules
- :mod:`.chunking`  split documents into chunks that fit the rephraser's budget, in its own tokens
- :mod:`.prompts`   the weighted style draw per document and the prompt token ids
- :mod:`.expand`    one work unit -> prompt rows (the stage before the engine)
- :mod:`.generate`  the vLLM stage (a Ray Data actor class); it applies the gate to what it generated
- :mod:`.gate`      the quality gate after generation: language, length ratio, repetition, empty or refusal
- :mod:`.commit`    the output folder (local or s3://): atomic shards, the manifest, ownership, the lock
- :mod:`.fingerprint` what an output depends on: config, input content, model
- :mod:`.report`    counts per run and per style
- :mod:`.runner`    where it runs: plans the work, starts/joins Ray, commits each unit exactly once

Only :mod:`.generate` and :mod:`.runner` import vllm/ray, inside the functions that need them.
"""
