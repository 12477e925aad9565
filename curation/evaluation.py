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
from .ledger import Ledger

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


def read_predictions(path: Path) -> pd.DataFrame:
    """Load predictions as a long frame (image_id, label_id, rank), rank 0 = best.

    Accepts a long CSV `image_id,label_id,score`; the challenge submission CSV
    `image_id,label_id` with space-separated ids in rank order; or a Parquet of
    probabilities (image_id plus one column per label id), as `ifa model predict` writes.
    Raises IfaError for a file in none of these shapes."""
    path = Path(path)
    if not path.exists():
        raise IfaError(f"{path} does not exist.")
    if path.is_dir():
        raise IfaError(f"{path} is a folder; give the predictions file (CSV or Parquet).")
    if path.suffix.lower() == ".parquet":
        return _read_probabilities(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise IfaError(f"{path} is not a readable CSV: {exc}") from None
    cols = [c.strip() for c in frame.columns]
    frame.columns = cols
    if {"image_id", "label_id"} - set(cols):
        raise IfaError(f"{path} needs the columns image_id,label_id[,score]; it has {', '.join(cols)}.")
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


def _read_probabilities(path: Path) -> pd.DataFrame:
    """The Parquet of probabilities as the long top-k frame; IfaError for a file that is no
    Parquet, a column that is not a label id or holds no numbers, or a missing score."""
    import pyarrow as pa

    try:
        wide = pd.read_parquet(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise IfaError(f"{path} is not a readable Parquet file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                       "give the Parquet `ifa model predict` writes, or a CSV.") from None
    if "image_id" not in wide.columns:
        raise IfaError(f"{path} has no image_id column.")
    label_cols = [c for c in wide.columns if c != "image_id"]
    try:
        ids = np.array([int(c) for c in label_cols])
    except ValueError:
        raise IfaError(f"{path}: every column but image_id must be a label id.") from None
    text = [c for c in label_cols if not (pd.api.types.is_numeric_dtype(wide[c]) and not pd.api.types.is_bool_dtype(wide[c]))]
    if text:
        raise IfaError(f"{path}: the scores of label {text[0]} are {wide[text[0]].dtype}, not numbers "
                       f"({len(text)} such columns); every column but image_id must hold probabilities.")
    probs = wide[label_cols].to_numpy(dtype=np.float32)
    missing = np.isnan(probs)
    if missing.any():
        rows = int(missing.any(axis=1).sum())
        raise IfaError(f"{path}: some scores are not numbers (NaN or missing in {rows:,} rows, first image "
                       f"{wide['image_id'].iloc[int(np.flatnonzero(missing.any(axis=1))[0])]!r}).")
    return top_k_frame(wide["image_id"].astype(str).to_numpy(), ids, probs)


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


def evaluate(ledger: Ledger, taxonomy: Taxonomy, predictions: pd.DataFrame, split: str = "validation") -> EvalResult:
    """Score `predictions` (image_id, label_id, rank) against the split's active labels."""
    truth = ledger.labels_frame([split])[["image_id", "label_id"]]
    images = set(ledger.images_frame([split])["image_id"])
    if not images:
        raise IfaError(f"The workspace has no active {split} images to evaluate against.")
    pred = predictions[predictions["rank"] < TOP_K]
    pred = pred.drop_duplicates(["image_id", "label_id"])
    known = pred["image_id"].isin(images)
    unknown_images = int(pred.loc[~known, "image_id"].nunique())
    pred = pred[known]

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
