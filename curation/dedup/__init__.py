"""Near-duplicate detection: `ifa curate dedup`.

Start with `run.py` (the command: hash cache, clusters, keep policy, reports); `hashing.py`
decodes and hashes images, `pairs.py` finds candidate pairs (multi-index hashing, with the
numba kernels in `_kernels.py`) and groups them.
"""
