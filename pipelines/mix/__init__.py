"""Declarative, token-exact data mixes (`spt mix plan|build`), one small module per step:

- ``documents``: input files (local or S3) and the documents in them; bad rows skipped and counted;
- ``tokens``: the batched-encode stage and exact per-source token counts, cached by content hash;
- ``plan``: what a mix means in tokens, samples and epochs, and the checks that refuse impossible mixes;
- ``report``: the plan as a table and as JSON;
- ``ray_tokenize``: the Ray Data pipeline the build tokenizes with (the only module that knows Ray);
- ``pack``: packing into fixed-length samples and writing MDS shards;
- ``build``: content-addressed sources and the mix's streams spec;
- ``layout``: where a mix's files go, computed once per run;
- ``streams``: reading a built mix back (``read_spec``, ``train_dataset``, ``eval_dataset``) for training;
- ``verify``: checks that a built mix is what the build wrote, before a source is reused and before training.

Every read and write goes through :mod:`spt.storage` (local paths and ``s3://`` URLs).
"""
