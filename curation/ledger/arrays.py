"""Reading a million images' labels as numpy arrays, for checks that run vectorised.

`Ledger.labels_frame` builds one Python row per label with the image id string: at the
full dataset's 5.8M labels it took 19.5 s and 2.7 GB (1M synthetic images, this 2-core
machine). Here SQLite packs each label row into one integer and concatenates them into a
text chunk that numpy parses in C, and images are keyed by their integer pk; strings are
fetched only for the images a caller asks about (`image_rows`). Same labels: 1.5-1.8 s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ...progress import SILENT, Progress
from .core import Ledger
from .schema import SPLITS

if TYPE_CHECKING:  # pandas loads inside the functions that build frames: `ifa stats` never needs it
    import pandas as pd

LABEL_STATUSES = ("active", "dropped", "quarantined")
# label ids in [0, 2**20) are packed as pk << 22 | label << 2 | status; anything else (an
# unknown id kept from a bad import) is read row by row, which is rare.
_LABEL_BITS, _STATUS_BITS = 20, 2
_CHUNK_PKS = 100_000  # ~600K labels, a ~6 MB text per chunk


@dataclass(frozen=True)
class LabelArrays:
    """Images and their labels as parallel arrays.

    image_pk: (N,) int64, sorted; the images' ledger keys.
    split:    (N,) int8, index into SPLITS.
    row_image: (R,) int64, for each label row the position of its image in `image_pk`;
              rows are sorted by image, then label id.
    label_id: (R,) int64.
    status:   (R,) int8, index into LABEL_STATUSES.
    """

    image_pk: np.ndarray
    split: np.ndarray
    row_image: np.ndarray
    label_id: np.ndarray
    status: np.ndarray

    @property
    def n_images(self) -> int:
        return len(self.image_pk)

    def subset(self, images: np.ndarray) -> "LabelArrays":
        """Only the images at the (sorted) positions `images`, renumbered."""
        images = np.asarray(images, dtype=np.int64)
        keep = np.zeros(self.n_images, dtype=bool)
        keep[images] = True
        rows = keep[self.row_image]
        new_pos = np.cumsum(keep) - 1
        return LabelArrays(self.image_pk[images], self.split[images], new_pos[self.row_image[rows]],
                           self.label_id[rows], self.status[rows])


def label_arrays(ledger: Ledger, splits: Sequence[str] | None = None, image_status: str | None = "active",
                 label_statuses: Sequence[str] = ("active", "quarantined"), sources: Sequence[str] | None = None,
                 progress: Progress = SILENT) -> LabelArrays:
    """Every image (of `splits`, with `image_status`; None for any) and its labels whose
    status is in `label_statuses` (and whose source is in `sources`, when given). Images
    without labels are included (they have no rows). Images and labels are read in one
    snapshot of the ledger, so a commit meanwhile never mixes two states.
    Raises ValueError for an unknown split or status."""
    for s in splits or ():
        if s not in SPLITS:
            raise ValueError(f"unknown split {s!r}")
    for s in label_statuses:
        if s not in LABEL_STATUSES:
            raise ValueError(f"unknown label status {s!r}")
    with ledger.snapshot():
        image_pk, split = _image_keys(ledger, splits, image_status)
        pk, label_id, status, in_order = _label_rows(ledger, int(image_pk[-1]) if len(image_pk) else 0,
                                                     label_statuses, sources, progress)
    pos = np.minimum(np.searchsorted(image_pk, pk), max(len(image_pk) - 1, 0))
    keep = image_pk[pos] == pk if len(image_pk) else np.zeros(len(pk), dtype=bool)
    if not keep.all():  # drops labels of images outside the selection
        pos, label_id, status = pos[keep], label_id[keep], status[keep]
    if not in_order:
        order = np.lexsort((label_id, pos))
        pos, label_id, status = pos[order], label_id[order], status[order]
    return LabelArrays(image_pk, split, pos, label_id, status)


def _image_keys(ledger: Ledger, splits: Sequence[str] | None, image_status: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The selected images' pks (sorted, int64) and split codes (int8)."""
    where, params = [], []
    if splits:
        where.append(f"split IN ({','.join('?' * len(splits))})")
        params += list(splits)
    if image_status is not None:
        where.append("status = ?")
        params.append(image_status)
    case = " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(SPLITS))
    text = ledger.query(f"SELECT group_concat((pk << 2) | (CASE split {case} END)) FROM images "
                        f"{'WHERE ' + ' AND '.join(where) if where else ''}", params)[0][0]
    packed_images = np.fromstring(text, dtype=np.int64, sep=",") if text else np.zeros(0, dtype=np.int64)
    packed_images.sort()
    return packed_images >> 2, (packed_images & 3).astype(np.int8)


def _label_rows(ledger: Ledger, top: int, label_statuses: Sequence[str], sources: Sequence[str] | None,
                progress: Progress) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """(image pk, label id, status code) of every label row of an image pk up to `top`,
    and whether they came sorted by (pk, label id)."""
    status_case = " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(LABEL_STATUSES))
    fits = f"label_id >= 0 AND label_id < {1 << _LABEL_BITS}"
    sql = (f"SELECT group_concat(CASE WHEN {fits} THEN (image_pk << {_LABEL_BITS + _STATUS_BITS}) | "
           f"(label_id << {_STATUS_BITS}) | (CASE status {status_case} END) END), "
           f"group_concat(CASE WHEN NOT ({fits}) THEN image_pk || ',' || label_id || ',' || (CASE status {status_case} END) END) "
           f"FROM labels WHERE image_pk > ? AND image_pk <= ? AND status IN ({','.join('?' * len(label_statuses))})"
           + (f" AND source IN ({','.join('?' * len(sources))})" if sources else ""))
    chunks, odd = [], []
    with progress.task("reading labels", total=top) as task:
        for lo in range(0, top, _CHUNK_PKS):
            packed_text, odd_text = ledger.query(sql, (lo, lo + _CHUNK_PKS, *label_statuses, *(sources or ())))[0]
            if packed_text:
                chunks.append(np.fromstring(packed_text, dtype=np.int64, sep=","))
            if odd_text:
                odd.append(np.fromstring(odd_text, dtype=np.int64, sep=",").reshape(-1, 3))
            task.advance(min(_CHUNK_PKS, top - lo))
    packed = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)
    # The primary key (image_pk, label_id) scan yields rows in order; sort only if not.
    in_order = not odd and bool(np.all(packed[1:] >= packed[:-1]))
    pk = packed >> (_LABEL_BITS + _STATUS_BITS)
    label_id = (packed >> _STATUS_BITS) & ((1 << _LABEL_BITS) - 1)
    status = (packed & ((1 << _STATUS_BITS) - 1)).astype(np.int8)
    if odd:
        extra = np.concatenate(odd)
        pk, label_id = np.concatenate([pk, extra[:, 0]]), np.concatenate([label_id, extra[:, 1]])
        status = np.concatenate([status, extra[:, 2].astype(np.int8)])
    return pk, label_id, status, in_order


def image_rows(ledger: Ledger, pks: np.ndarray) -> pd.DataFrame:
    """image_id, split, path and status of the images with these pks, in the order given
    (a pk the ledger lacks gives a row of None)."""
    import pandas as pd

    pks = np.asarray(pks, dtype=np.int64)
    cols = ("pk", "image_id", "split", "path", "status")
    # The pks travel as one JSON array and each column comes back as one JSON array: 0.8-1.2 s
    # for 243k hit images of 1M, against 1.5-1.9 s for IN lists of 30k bound keys and a
    # Python tuple per row (loaded 2-core machine).
    (row,) = ledger.query(
        f"SELECT {', '.join(f'json_group_array({c})' for c in cols)} FROM (SELECT {', '.join(cols)} FROM images "
        "WHERE pk IN (SELECT value FROM json_each(?)) ORDER BY pk)", (json.dumps(np.unique(pks).tolist()),))
    found = {c: np.array(json.loads(v), dtype=np.int64 if c == "pk" else object) for c, v in zip(cols, row)}
    pos = np.minimum(np.searchsorted(found["pk"], pks), max(len(found["pk"]) - 1, 0))
    hit = found["pk"][pos] == pks if len(found["pk"]) else np.zeros(len(pks), dtype=bool)
    out = {"pk": pks}
    for c in cols[1:]:
        column = found[c][pos] if len(found["pk"]) else np.full(len(pks), None, dtype=object)
        if not hit.all():
            column = np.where(hit, column, None)
        out[c] = column
    return pd.DataFrame(out)


@dataclass
class LabelTable:
    """Labels as arrays, with the images' ids and sources, for stats and export.

    images: one row per image (pk, image_id, split, status, url, path), ordered by pk.
    image_index: for each label row, the position of its image in `images`.
    label_id: the label of each row; rows are grouped by image, ids ascending within one.
    """

    images: pd.DataFrame
    image_index: np.ndarray
    label_id: np.ndarray


def label_table(ledger: Ledger, splits: Sequence[str] | None = None, image_status: str | None = "active",
                label_statuses: Sequence[str] = ("active",), as_imported: bool = False) -> LabelTable:
    """`label_arrays` plus each image's id, split, status, url and path; by default the
    active labels of active images. Every matching image is listed, with or without labels.

    as_imported=True ignores today's statuses and gives the dataset as it was imported:
    every image but those the import itself set aside, and the imported labels that were
    not quarantined (the "before" of a datasheet)."""
    with ledger.snapshot():  # the images' rows must be those the arrays were read with
        arrays, images = _table_parts(ledger, splits, image_status, label_statuses, as_imported)
    image_index, label_id = arrays.row_image, arrays.label_id
    if as_imported:  # images set aside by the import never were part of the dataset
        kept = (images["status_rule"] != "import").to_numpy()
        arrays = arrays.subset(np.flatnonzero(kept))
        images = images[kept].reset_index(drop=True)
        image_index, label_id = arrays.row_image, arrays.label_id
    return LabelTable(images.drop(columns="status_rule"), image_index, label_id)


def _table_parts(ledger: Ledger, splits: Sequence[str] | None, image_status: str | None,
                 label_statuses: Sequence[str], as_imported: bool) -> tuple[LabelArrays, "pd.DataFrame"]:
    """`label_table`'s arrays and its frame of image rows (with status_rule), read as they are."""
    if as_imported:
        arrays = label_arrays(ledger, splits, None, ("active", "dropped"), sources=("import",))
    else:
        arrays = label_arrays(ledger, splits, image_status, label_statuses)
    cols = ("pk", "image_id", "split", "status", "url", "path", "status_rule")
    where = [f"split IN ({','.join('?' * len(splits))})"] if splits else []
    if image_status is not None and not as_imported:
        where.append("status = ?")
    params = [*(splits or ()), *([image_status] if image_status is not None and not as_imported else [])]
    # One JSON array per column instead of a Python tuple per row: 0.3 s for 1M image ids.
    (row,) = ledger.query(
        f"SELECT {', '.join(f'json_group_array({c})' for c in cols)} FROM (SELECT {', '.join(cols)} FROM images "
        f"{'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY pk)", params)
    import pandas as pd

    images = pd.DataFrame({c: json.loads(v) for c, v in zip(cols, row)}, columns=list(cols))
    images["pk"] = images["pk"].astype(np.int64)
    return arrays, images
