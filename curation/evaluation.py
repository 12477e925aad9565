"""The paper's metric (eq. 1): per image the 8 highest-scoring labels are the prediction;
micro precision = correct / predicted, micro recall = correct / ground truth, summed over
all images and classes; F1 = 2PR / (P + R). Also per taxonomy group."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import IfaError
from ..taxonomy import Taxonomy
from .ledger import Ledger, id_list

TOP_K = 8  # paper, Sec. 4: "we take the 8 highest-scoring labels as the prediction"


@dataclass
class Scores:
    precision: float
    recall: float
    f1: float
    correct: int
    predicted: int
    ground_truth: int


@dataclass
class EvalResult:
    precision: float
    recall: float
    f1: float
    images: int  # ground-truth images scored
    correct: int
    predicted: int
    ground_truth: int
    groups: dict[str, Scores] = field(default_factory=dict)
    unknown_images: int = 0  # predictions for images not in the split: reported, not counted
    images_without_prediction: int = 0
    unknown_labels: int = 0  # predicted ids the taxonomy lacks: count as wrong

    def to_dict(self) -> dict:
        return asdict(self)


# CSV rows read at a time: the reader's peak follows this and the split, not the file's size.
CSV_CHUNK_ROWS = 200_000


@dataclass
class _Read:
    """Predictions of the kept images (image_id, label_id, rank) and how many distinct other
    images the file predicts."""

    frame: pd.DataFrame
    other_images: int = 0


def read_predictions(path: Path) -> pd.DataFrame:
    """Load predictions as a long frame (image_id, label_id, rank), rank 0 = best.

    Accepts a long CSV `image_id,label_id,score`; the challenge submission CSV
    `image_id,label_id` with space-separated ids in rank order; or a Parquet of
    probabilities (image_id plus one column per label id), as `ifa model predict` writes.
    Raises IfaError for a file in none of these shapes, and for an image on more than one
    row (a label on more than one row of its image, in the long CSV), naming the first."""
    return _read(Path(path), None).frame


def _read(path: Path, keep: set[str] | None) -> _Read:
    """The predictions of the images in `keep` (all when None), read in chunks."""
    if not path.exists():
        raise IfaError(f"{path} does not exist.")
    if path.is_dir():
        raise IfaError(f"{path} is a folder; give the predictions file (CSV or Parquet).")
    return _read_parquet(path, keep) if path.suffix.lower() == ".parquet" else _read_csv(path, keep)


class _Others:
    """Counts distinct image ids without keeping them: 8 bytes of hash per image (Python's
    own hash: pandas' hash_array took +42 MB for 150,000 ids)."""

    def __init__(self):
        self.hashes = np.zeros(0, dtype=np.int64)

    def add(self, ids) -> None:
        if len(ids):
            self.hashes = np.union1d(self.hashes, np.fromiter(map(hash, ids), np.int64, len(ids)))

    def __len__(self) -> int:
        return len(self.hashes)


def _read_csv(path: Path, keep: set[str] | None) -> _Read:
    others, parts, cols = _Others(), [], []
    try:
        for chunk in pd.read_csv(path, dtype=str, keep_default_na=False, chunksize=CSV_CHUNK_ROWS):
            chunk.columns = cols = [c.strip() for c in chunk.columns]
            if {"image_id", "label_id"} - set(cols):
                break
            if keep is not None:
                mine = chunk["image_id"].isin(keep).to_numpy()
                others.add(chunk["image_id"].to_numpy()[~mine])
                chunk = chunk[mine]
            parts.append(chunk)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise IfaError(f"{path} is not a readable CSV: {exc}") from None
    if {"image_id", "label_id"} - set(cols):
        raise IfaError(f"{path} needs the columns image_id,label_id[,score]; it has {', '.join(cols)}.")
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols, dtype=str)
    _refuse_repeats(path, frame, ["image_id", "label_id"] if "score" in cols else ["image_id"])
    return _Read(_ranked_csv(path, frame, cols), len(others))


def _ranked_csv(path: Path, frame: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """The long frame of a CSV's rows: by score, or in the submission's order."""
    if "score" in cols:
        frame["score"] = pd.to_numeric(frame["score"], errors="coerce")
        if frame["score"].isna().any():
            raise IfaError(f"{path}: some scores are not numbers.")
        frame = frame.sort_values(["image_id", "score"], ascending=[True, False], kind="stable")
        frame["rank"] = frame.groupby("image_id").cumcount()
    else:
        frame["label_id"] = frame["label_id"].str.split()
        frame = frame.explode("label_id").dropna(subset=["label_id"])
        frame["rank"] = frame.groupby("image_id").cumcount()
    try:
        frame["label_id"] = frame["label_id"].astype(np.int64)
    except (ValueError, TypeError):
        raise IfaError(f"{path}: label_id values must be integers.") from None
    return frame[["image_id", "label_id", "rank"]].astype({"image_id": str})


def _refuse_repeats(path: Path, frame: pd.DataFrame, key: list[str]) -> None:
    """IfaError naming the first images with more than one row for `key`: a repeated row
    would count as more predictions (recall doubles when every image is given twice)."""
    repeated = frame.duplicated(key, keep="first")
    if repeated.any():
        ids = list(dict.fromkeys(frame.loc[repeated, "image_id"].astype(str)))
        what = "images have more than one row" if key == ["image_id"] else "images give a label on more than one row"
        raise IfaError(f"{path}: {len(ids):,} {what} (first: {id_list(ids)}); give each image "
                       + ("one row." if key == ["image_id"] else "each label once."))


def _read_parquet(path: Path, keep: set[str] | None) -> _Read:
    """The Parquet of probabilities as the long top-k frame; IfaError for a file that is no
    Parquet, a column that is not a label id or holds no numbers, or a missing score."""
    import pyarrow as pa

    try:
        rows = _parquet_rows(path, keep)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise IfaError(f"{path} is not a readable Parquet file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                       "give the Parquet `ifa model predict` writes, or a CSV.") from None
    if rows.missing:
        raise IfaError(f"{path}: some scores are not numbers (NaN or missing in {rows.missing:,} rows, first image "
                       f"{rows.first_missing!r}).")
    _refuse_repeats(path, pd.DataFrame({"image_id": rows.image_ids}), ["image_id"])
    return _Read(top_k_frame(rows.image_ids.astype(str), rows.label_ids, rows.probs), rows.others)


@dataclass
class _ParquetRows:
    """The kept rows of a probabilities Parquet: their image ids, the label ids of the
    columns, probabilities (rows, labels) float32; the distinct other images, and the rows
    of the whole file with a NaN or missing score (and the first such row's image)."""

    image_ids: np.ndarray
    label_ids: np.ndarray
    probs: np.ndarray
    others: int
    missing: int
    first_missing: str | None


def _parquet_rows(path: Path, keep: set[str] | None) -> _ParquetRows:
    """Read one column of one row group at a time, keeping only the kept rows: pyarrow's
    batch reader holds whole row groups (a 150,000-row file written as one group peaked at
    881 MB read whole, 145 MB this way; tests/test_eval.py)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path, pre_buffer=False)
    label_cols, label_ids = _label_columns(path, parquet.schema_arrow)
    wanted = pa.array(sorted(keep), pa.string()) if keep is not None else None
    others, id_parts, prob_parts, missing, first_missing = _Others(), [], [], 0, None
    for group in range(parquet.metadata.num_row_groups):
        image_ids = pc.cast(parquet.read_row_group(group, columns=["image_id"]).column(0), pa.string())
        image_ids = image_ids.to_numpy(zero_copy_only=False)
        rows = slice(None)
        if wanted is not None:
            mine = pc.is_in(pa.array(image_ids, pa.string()), value_set=wanted).to_numpy(zero_copy_only=False)
            others.add(image_ids[~mine])
            rows = np.flatnonzero(mine)
        bad = np.zeros(len(image_ids), dtype=bool)
        kept = []
        for c in label_cols:  # every score is checked, also those of rows not kept
            values = parquet.read_row_group(group, columns=[c]).column(0).to_numpy(zero_copy_only=False).astype(np.float32)
            bad |= np.isnan(values)
            kept.append(values[rows])
        if bad.any():
            missing += int(bad.sum())
            first_missing = first_missing or str(image_ids[int(np.flatnonzero(bad)[0])])
        id_parts.append(image_ids[rows])
        prob_parts.append(np.column_stack(kept) if kept else np.zeros((len(id_parts[-1]), 0), np.float32))
    image_ids = np.concatenate(id_parts) if id_parts else np.zeros(0, dtype=object)
    probs = np.concatenate(prob_parts) if prob_parts else np.zeros((0, len(label_ids)), np.float32)
    return _ParquetRows(image_ids, label_ids, probs, len(others), missing, first_missing)


def _label_columns(path: Path, schema) -> tuple[list[str], np.ndarray]:
    """The label columns of a probabilities Parquet and their label ids."""
    import pyarrow as pa

    if "image_id" not in schema.names:
        raise IfaError(f"{path} has no image_id column.")
    label_cols = [c for c in schema.names if c != "image_id"]
    try:
        ids = np.array([int(c) for c in label_cols], dtype=np.int64)
    except ValueError:
        raise IfaError(f"{path}: every column but image_id must be a label id.") from None
    types = {c: schema.field(c).type for c in label_cols}
    text = [c for c, t in types.items() if not (pa.types.is_integer(t) or pa.types.is_floating(t))]
    if text:
        raise IfaError(f"{path}: the scores of label {text[0]} are {types[text[0]]}, not numbers "
                       f"({len(text)} such columns); every column but image_id must hold probabilities.")
    return label_cols, ids


def top_k_frame(image_ids: np.ndarray, label_ids: np.ndarray, probs: np.ndarray, k: int = TOP_K) -> pd.DataFrame:
    """The long (image_id, label_id, rank) frame `evaluate` scores, from a probability
    matrix: rows follow `image_ids`, columns follow `label_ids`; the k best per row."""
    k = min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return pd.DataFrame({
        "image_id": np.repeat(np.asarray(image_ids).astype(str), k),
        "label_id": np.asarray(label_ids)[top].ravel(),
        "rank": np.tile(np.arange(k), len(probs)),
    })


def evaluate(ledger: Ledger, taxonomy: Taxonomy, predictions: pd.DataFrame | Path, split: str = "validation") -> EvalResult:
    """Score `predictions` against the split's active labels: a frame (image_id, label_id,
    rank), or a predictions file (see `read_predictions`), of which only the split's
    images are kept as it is read in chunks, so memory follows the split, not the file.
    Raises IfaError for a split without active images or a file `read_predictions` refuses."""
    with ledger.snapshot():
        truth = ledger.labels_frame([split])[["image_id", "label_id"]]
        images = set(ledger.images_frame([split])["image_id"])
    if not images:
        raise IfaError(f"The workspace has no active {split} images to evaluate against.")
    if isinstance(predictions, pd.DataFrame):
        known = predictions["image_id"].isin(images)
        read = _Read(predictions[known], int(predictions.loc[~known, "image_id"].nunique()))
    else:
        read = _read(Path(predictions), images)
    pred = read.frame[read.frame["rank"] < TOP_K].drop_duplicates(["image_id", "label_id"])
    unknown_images = read.other_images

    hit = pred.merge(truth.assign(hit=True), on=["image_id", "label_id"], how="left")["hit"].fillna(False).to_numpy(bool)
    pred_group = pred["label_id"].map({i: l.group for i, l in taxonomy.labels.items()})
    truth_group = truth["label_id"].map({i: l.group for i, l in taxonomy.labels.items()})

    overall = _scores(int(hit.sum()), len(pred), len(truth))
    groups = {
        g: _scores(int(hit[(pred_group == g).to_numpy()].sum()), int((pred_group == g).sum()), int((truth_group == g).sum()))
        for g in taxonomy.group_names
    }
    return EvalResult(
        precision=overall.precision, recall=overall.recall, f1=overall.f1, images=len(images),
        correct=overall.correct, predicted=overall.predicted, ground_truth=overall.ground_truth, groups=groups,
        unknown_images=unknown_images,
        images_without_prediction=len(images - set(pred["image_id"])),
        unknown_labels=int(pred_group.isna().sum()),
    )


def _scores(correct: int, predicted: int, truth: int) -> Scores:
    p = correct / predicted if predicted else 0.0
    r = correct / truth if truth else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return Scores(p, r, f1, correct, predicted, truth)
