"""Near-duplicate detection: `ifa curate dedup`.

Start with `run.py` (the command: hash cache, two stages, clusters, keep policy, reports);
`hashing.py` decodes, trims and hashes images, `verify.py` makes and compares the
verification signatures, `recheck.py` re-decodes near misses and checks pairs whose
labels differ, `pairs.py` finds candidate pairs (multi-index hashing) and clusters them
without chaining; the numba kernels live in `_kernels.py`.
"""
