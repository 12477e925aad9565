"""Probability files: Parquet with image_id plus one float column per label id (the column
name is the id as a string), the shape `ifa eval` and `ifa curate flag-noise --probs` read.

Written and read in row batches, so a million x 228 file never needs a second copy in memory.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ....errors import IfaError

ROWS_PER_GROUP = 100_000
OOS_FILE = "oos-probs.parquet"  # flag-noise's cross-fit writes its out-of-sample probabilities here


def cross_fitted(root: Path, run: str = "flag-noise") -> Path:
    """Where the workspace at `root` keeps the out-of-sample probabilities of the cross-fit
    `run` (flag-noise's default run: `<workspace>/models/flag-noise/oos-probs.parquet`)."""
    return Path(root) / "models" / run / OOS_FILE


def write_probs(path: Path, image_ids: np.ndarray, label_ids: np.ndarray, probs: np.ndarray) -> Path:
    """Write `probs` (float, (n, K); rows follow image_ids, columns label_ids) to `path`
    atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = ["image_id"] + [str(int(i)) for i in label_ids]
    schema = pa.schema([pa.field("image_id", pa.string())] + [pa.field(n, pa.float32()) for n in names[1:]])
    tmp = path.with_name(path.name + ".tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        for first in range(0, max(len(image_ids), 1), ROWS_PER_GROUP):
            rows = slice(first, first + ROWS_PER_GROUP)
            block = np.asarray(probs[rows], dtype=np.float32)
            arrays = [pa.array(np.asarray(image_ids[rows]).astype(str))] + [pa.array(block[:, j]) for j in range(block.shape[1])]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
    os.replace(tmp, path)
    return path


def open_parquet(path: Path, what: str) -> pq.ParquetFile:
    """The Parquet file at `path`; IfaError naming `what` (e.g. "Features file") when it is
    missing or not Parquet."""
    path = Path(path)
    if not path.exists():
        raise IfaError(f"{what} {path} does not exist.")
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise IfaError(f"{path} is not a readable Parquet file: {exc}") from None


def read_probs(path: Path, label_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image_ids, float32 probs (n, K) with columns in `label_ids` order) from a
    probability Parquet. Raises IfaError for a missing file, a file without image_id,
    columns that are not the taxonomy's label ids, repeated images, or values outside [0, 1]."""
    path = Path(path)
    handle = open_parquet(path, "Probabilities file")
    cols = handle.schema_arrow.names
    if "image_id" not in cols:
        raise IfaError(f"{path} has no image_id column; it must hold image_id plus one column per label id.")
    wanted = [str(int(i)) for i in label_ids]
    missing = [c for c in wanted if c not in cols]
    extra = [c for c in cols if c != "image_id" and c not in set(wanted)]
    if missing or extra:
        detail = (f"it lacks {len(missing)} label columns (e.g. {', '.join(missing[:3])})" if missing else
                  f"it has columns that are not label ids of this taxonomy ({', '.join(extra[:3])})")
        raise IfaError(f"{path} does not match the workspace's {len(wanted)} labels: {detail}.")
    n = handle.metadata.num_rows
    probs = np.empty((n, len(wanted)), dtype=np.float32)
    ids: list[np.ndarray] = []
    row = 0
    for batch in handle.iter_batches(batch_size=ROWS_PER_GROUP, columns=["image_id"] + wanted):
        k = batch.num_rows
        ids.append(np.asarray(batch.column(0).to_pylist(), dtype=object).astype(str))
        for j in range(len(wanted)):
            probs[row:row + k, j] = batch.column(j + 1).to_numpy(zero_copy_only=False)
        row += k
    image_ids = np.concatenate(ids) if ids else np.array([], dtype=str)
    if len(np.unique(image_ids)) != len(image_ids):
        raise IfaError(f"{path} lists some images more than once.")
    if not (np.isfinite(probs).all() and probs.min(initial=0) >= 0 and probs.max(initial=0) <= 1):
        raise IfaError(f"{path} holds values outside [0, 1] or NaN; it must hold probabilities, not logits.")
    return image_ids, probs
