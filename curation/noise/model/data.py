"""What the models read: label matrices, cached pixels, precomputed embeddings.

The ledger is read once at the edge; from here on everything is arrays whose rows follow
a list of image ids and whose columns follow `taxonomy.label_ids`.

Pixels are decoded once per split and image size into a uint8 memory-mapped array under
`<workspace>/cache/`, so K-fold cross-fitting and every epoch read the same decoded bytes
and a million images never have to sit in memory (at 64 px they take 12 GB of disk).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from ....errors import IfaError
from ....progress import SILENT, Progress
from ....taxonomy import Taxonomy
from ... import executors
from ...ledger import Ledger
from ...workspace import refuse_links
from ..pixels import decode
from .probs import open_parquet

# Below this many images, decoding in-process beats starting worker processes.
PARALLEL_FROM = 2000
CHUNK = 256


def label_matrix(labels: pd.DataFrame, image_ids: np.ndarray, taxonomy: Taxonomy) -> np.ndarray:
    """Dense bool (len(image_ids), K) matrix from a long frame with image_id, label_id;
    columns follow `taxonomy.label_ids`. Pairs of unknown images or label ids are ignored."""
    y = np.zeros((len(image_ids), len(taxonomy.label_ids)), dtype=bool)
    if len(labels) == 0:
        return y
    rows = pd.Index(image_ids).get_indexer(labels["image_id"].astype(str))
    cols = taxonomy.column_of(labels["label_id"].to_numpy())
    keep = (rows >= 0) & (cols >= 0)
    y[rows[keep], cols[keep]] = True
    return y


@dataclass
class Split:
    """A split's active images that a model can read, and their active labels."""

    name: str
    image_ids: np.ndarray  # str, row order of everything below
    paths: np.ndarray  # str paths (empty string when there is no local file)
    labels: np.ndarray  # bool (n, K)

    def __len__(self) -> int:
        return len(self.image_ids)

    def subset(self, rows: np.ndarray) -> "Split":
        return Split(self.name, self.image_ids[rows], self.paths[rows], self.labels[rows])


def read_split(ledger: Ledger, taxonomy: Taxonomy, split: str) -> Split:
    """Active images of `split` with their active labels (the one read of the ledger)."""
    images = ledger.images_frame([split])
    ids = images["image_id"].astype(str).to_numpy()
    paths = images["path"].fillna("").astype(str).to_numpy()
    labels = ledger.labels_frame([split])
    return Split(split, ids, paths, label_matrix(labels, ids, taxonomy))


def fingerprint(*arrays: np.ndarray) -> str:
    """A short hash of image ids and labels: a model trained on other data is not resumed."""
    h = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.shape).encode())
        h.update(("\n".join(a.tolist())).encode() if a.dtype.kind in "OUS" else a.tobytes())
    return h.hexdigest()[:16]


# ---- inputs ---------------------------------------------------------------------------------------
class Inputs:
    """Rows of model input for a list of images; `rows` picks them in `batch`."""

    kind: str

    def __len__(self) -> int:
        raise NotImplementedError

    def batch(self, rows: np.ndarray) -> torch.Tensor:
        raise NotImplementedError


@dataclass
class PixelInputs(Inputs):
    """uint8 (n, N, N, 3) pixels, a view into the split's memory-mapped cache."""

    store: np.ndarray  # memmap (m, N, N, 3)
    index: np.ndarray  # row in `store` of each image
    kind = "pixels"

    def __len__(self) -> int:
        return len(self.index)

    @property
    def size(self) -> int:
        return int(self.store.shape[1])

    def batch(self, rows: np.ndarray) -> torch.Tensor:
        take = self.index[rows]
        order = np.argsort(take, kind="stable")  # sorted reads are kinder to the page cache
        out = np.empty((len(take),) + self.store.shape[1:], dtype=np.uint8)
        out[order] = self.store[take[order]]
        return torch.from_numpy(out)

    def subset(self, rows: np.ndarray) -> "PixelInputs":
        return PixelInputs(self.store, self.index[rows])


@dataclass
class FeatureInputs(Inputs):
    """(n, D) precomputed embeddings: rows `index` of `matrix` (all rows when None).
    A subset only narrows the index, so K folds over a million x 512 embeddings never copy
    them (a copy per fold would be 1.6 GB); float16 matrices are widened a batch at a time."""

    matrix: np.ndarray
    index: np.ndarray | None = None
    kind = "features"

    def __len__(self) -> int:
        return len(self.matrix) if self.index is None else len(self.index)

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def batch(self, rows: np.ndarray) -> torch.Tensor:
        take = rows if self.index is None else self.index[rows]
        return torch.from_numpy(np.ascontiguousarray(self.matrix[take], dtype=np.float32))

    def subset(self, rows: np.ndarray) -> "FeatureInputs":
        rows = np.asarray(rows, dtype=np.int64)
        return FeatureInputs(self.matrix, rows if self.index is None else self.index[rows])


# ---- pixel cache ------------------------------------------------------------------------------------
def pixel_inputs(cache_dir: Path, split: Split, size: int, progress: Progress = SILENT,
                 workers: int | None = None) -> tuple[PixelInputs, np.ndarray]:
    """Pixels of `split`'s images at size x size, decoded once into
    `cache_dir/pixels-<size>/<split>.u8` and reused while it covers the same files.

    Returns (inputs for the images that have a readable local file, bool mask over the
    split's rows saying which those are). Raises IfaError when no image has a local file."""
    has_file = split.paths != ""
    if not has_file.any():
        raise IfaError(f"None of the {len(split):,} active {split.name} images has a local file: "
                       "fetch them first (`ifa fetch`) or train on --features.")
    folder = Path(cache_dir) / f"pixels-{size}"
    data, meta_path = folder / f"{split.name}.u8", folder / f"{split.name}.json"
    for path in (data, meta_path):  # the cache is rewritten in place: never through a link
        refuse_links(cache_dir, path)
    folder.mkdir(parents=True, exist_ok=True)
    ids, paths = split.image_ids[has_file], split.paths[has_file]
    key = fingerprint(ids, paths)
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if meta.get("key") != key or not data.exists():
        meta_path.unlink(missing_ok=True)  # the marker goes first: a crash mid-build is never mistaken for done
        ok = _decode_all(data, paths, size, progress, workers)
        meta = {"key": key, "n": int(len(paths)), "size": size, "unreadable": np.flatnonzero(~ok).tolist()}
        tmp = meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, meta_path)
    store = np.memmap(data, dtype=np.uint8, mode="r", shape=(meta["n"], size, size, 3))
    readable = np.ones(len(paths), dtype=bool)
    readable[meta["unreadable"]] = False
    mask = np.zeros(len(split), dtype=bool)
    mask[np.flatnonzero(has_file)[readable]] = True
    if not mask.any():
        raise IfaError(f"None of the {split.name} images could be decoded; check the files under the workspace.")
    return PixelInputs(store, np.flatnonzero(readable)), mask


def _decode_all(data: Path, paths: np.ndarray, size: int, progress: Progress, workers: int | None) -> np.ndarray:
    """Decode every path into a fresh memmap at `data`; returns which decoded."""
    store = np.memmap(data, dtype=np.uint8, mode="w+", shape=(len(paths), size, size, 3))
    ok = np.zeros(len(paths), dtype=bool)
    chunks = [(start, paths[start:start + CHUNK].tolist()) for start in range(0, len(paths), CHUNK)]
    workers = workers or os.cpu_count() or 1
    with progress.task(f"decoding images at {size} px", total=len(paths)) as task:
        if len(paths) < PARALLEL_FROM or workers < 2:
            for start, block, good in (_decode_chunk(c, size) for c in chunks):
                store[start:start + len(block)] = block
                ok[start:start + len(block)] = good
                task.advance(len(block))
        else:
            # fork on Linux: the workers only run PIL, never torch (whose thread pools do not
            # survive a fork), and spawn would re-run a caller's script lacking a main guard.
            # executors.process_pool: workers die with this process and leave Ctrl-C to it.
            pool = executors.process_pool(workers)
            try:
                for start, block, good in pool.map(_decode_chunk, chunks, [size] * len(chunks)):
                    store[start:start + len(block)] = block
                    ok[start:start + len(block)] = good
                    task.advance(len(block))
            finally:
                pool.shutdown(wait=True, cancel_futures=True)  # Ctrl-C: only the chunks in flight finish
    store.flush()
    del store
    return ok


def _decode_chunk(chunk: tuple[int, list[str]], size: int) -> tuple[int, np.ndarray, np.ndarray]:
    start, paths = chunk
    out = np.zeros((len(paths), size, size, 3), dtype=np.uint8)
    ok = np.zeros(len(paths), dtype=bool)
    for i, path in enumerate(paths):
        pixels = decode(path, size)
        if pixels is not None:
            out[i], ok[i] = pixels, True
    return start, out, ok


# ---- precomputed embeddings ------------------------------------------------------------------------
def read_features(path: Path, image_ids: np.ndarray) -> tuple[FeatureInputs, np.ndarray]:
    """Embeddings for `image_ids` from a Parquet file: image_id plus either one list
    column (the vector) or several numeric columns (one per dimension); a `sha256` column
    (what `ifa model embed` keeps to resume) is ignored.

    Returns (inputs for the ids the file has, bool mask over `image_ids`). Raises IfaError
    for a missing or malformed file, or when it covers none of the images."""
    path = Path(path)
    table = open_parquet(path, "Features file").read()
    if "image_id" not in table.column_names:
        raise IfaError(f"{path} has no image_id column; features are image_id plus a vector per image.")
    ids = pd.Index(table.column("image_id").to_pandas().astype(str))
    if ids.has_duplicates:
        raise IfaError(f"{path} lists some image ids twice, e.g. {ids[ids.duplicated()][0]!r}.")
    rest = [c for c in table.column_names if c not in ("image_id", "sha256")]
    if len(rest) == 1 and pa.types.is_list(table.schema.field(rest[0]).type) or \
            len(rest) == 1 and pa.types.is_fixed_size_list(table.schema.field(rest[0]).type):
        col = table.column(rest[0]).combine_chunks()
        lengths = col.value_lengths().to_numpy(zero_copy_only=False) if hasattr(col, "value_lengths") else None
        dim = int(lengths[0]) if lengths is not None and len(lengths) else col.type.list_size
        if lengths is not None and (lengths != dim).any():
            raise IfaError(f"{path}: every vector must have the same length.")
        matrix = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(ids), dim)
    else:
        bad = [c for c in rest if not pa.types.is_floating(table.schema.field(c).type)
               and not pa.types.is_integer(table.schema.field(c).type)]
        if not rest or bad:
            raise IfaError(f"{path}: besides image_id there must be one list column or numeric columns only "
                           f"({', '.join(bad[:3]) or 'none found'}).")
        matrix = np.column_stack([table.column(c).to_numpy().astype(np.float32) for c in rest])
    if not np.isfinite(matrix).all():
        raise IfaError(f"{path}: some feature values are NaN or infinite.")
    rows = ids.get_indexer(pd.Index(np.asarray(image_ids, dtype=str)))
    mask = rows >= 0
    if not mask.any():
        raise IfaError(f"{path} has features for none of the {len(image_ids):,} images asked for; "
                       "its image_id values must match the workspace's.")
    return FeatureInputs(matrix[rows[mask]]), mask
