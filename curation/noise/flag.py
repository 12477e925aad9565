"""`ifa curate flag-noise`: rank the training labels most likely wrong or missing, from
out-of-sample probabilities, and hand them to people (CSV, HTML), to `--apply` (drop the
wrong ones, reversibly) or to a review round.

The ledger is read once at the edge (the train split's active labels); the ranking itself is
`noise.rank_label_issues` over arrays.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import IfaError
from ...progress import SILENT, Progress
from . import ranking as noise
from ..reports import html as report_html
from .. import reports
from ..attributes.rules import RuleSet, load_rules
from ..ledger import Change
from .model import crossfit
from .model.data import read_split
from .model.probs import read_probs
from . import defaults
from .defaults import DEFAULT_MIN_SCORE, DEFAULT_RUN
from .model.config import TrainConfig
from .suggestions import rank_within_rules
from ..workspace import Workspace

RULE = "flag-noise"  # `ifa curate restore --rule flag-noise` undoes --apply
HTML_IMAGES = 200  # the report shows the most suspicious images; the CSV has every flag
# What flag-noise cross-fits without --probs and --features (see defaults.py for why).
DEFAULT_CONFIG = TrainConfig(epochs=defaults.FLAG_NOISE_EPOCHS, image_size=defaults.FLAG_NOISE_IMAGE_SIZE,
                             lr=defaults.FLAG_NOISE_LR)


@dataclass
class ReviewRequest:
    """Send the flagged images to a review round (the review commands' annotators)."""

    annotators: list[str]
    tiebreaker: str | None = None


@dataclass
class FlagNoiseResult:
    flags: pd.DataFrame  # image_id, label_id, label, group, kind, score, prob; most likely error first
    images_flagged: int
    probs: str  # the out-of-sample probabilities used (Parquet)
    csv: str
    html: str
    images_assessed: int
    estimated_errors: int  # confident learning's count over all pairs, before --min-score/--top
    cross_fit: dict = field(default_factory=dict)
    applied: bool = False
    labels_dropped: int = 0
    rule: str = RULE
    review: dict | None = None
    seconds: float = 0.0
    # Classes the model could not judge (ranking's separability gate): never flagged. Frame of
    # label_id, label, group, images (labelled train images), lift (mean p labelled / unlabelled).
    unjudged: pd.DataFrame | None = None
    unjudged_csv: str = ""
    suggestions_dropped: dict = field(default_factory=dict)  # rule id -> suggestions that would break it

    def unjudged_list(self) -> list[dict]:
        if self.unjudged is None:
            return []
        return [{"label": int(r.label_id), "name": r.label, "group": r.group, "images": int(r.images),
                 "lift": None if not np.isfinite(r.lift) else round(float(r.lift), 3)}
                for r in self.unjudged.itertuples(index=False)]

    def to_dict(self) -> dict:
        """The `--json` shape: flags (image_id, label = the label id, kind, score), most
        likely error first; how many images they touch; the probabilities file used; the
        classes the model could not judge; suggestions left out per rule they would break."""
        flags = [{"image_id": i, "label": int(l), "kind": k, "score": round(float(s), 6)}
                 for i, l, k, s in zip(self.flags["image_id"], self.flags["label_id"], self.flags["kind"], self.flags["score"])]
        return {"flags": flags, "images_flagged": int(self.images_flagged), "probs": self.probs,
                "unjudged_classes": self.unjudged_list(), "suggestions_dropped": dict(self.suggestions_dropped)}


def flag_noise(ws: Workspace, *, probs: Path | None = None, config: TrainConfig | None = None,
               folds: int = defaults.FLAG_NOISE_FOLDS,
               run: str = DEFAULT_RUN, device: str = "cpu", top: int | None = None,
               min_score: float | None = None, apply: bool = False, review: ReviewRequest | None = None,
               rules: RuleSet | None = None, progress: Progress = SILENT) -> FlagNoiseResult:
    """Flag the train split's likely label errors.

    probs: a Parquet of OUT-OF-SAMPLE probabilities (image_id + one column per label id);
    without it, `folds` models are cross-fitted with `config` (default DEFAULT_CONFIG;
    checkpointed under `models/<run>/`, so a crash resumes); a small-CNN cross-fit first
    notes its expected time through `progress` (also in `cross_fit["expected_seconds"]`).
    top / min_score limit the flags; without either, min_score is DEFAULT_MIN_SCORE (with top
    alone, the best `top` whatever their score). apply drops the flagged wrong labels (rule
    "flag-noise"); review sends the flagged images to a review round.
    rules: the attribute rules (default: the shipped ones); a suggested missing label that
    would break one on its image is not flagged (`suggestions.rank_within_rules`). Classes the
    model cannot separate are listed in the result (`unjudged`) and the reports.

    Raises IfaError for bad arguments, a probabilities file that does not fit the
    workspace, or a workspace without train images."""
    start = time.perf_counter()
    if top is not None and top < 1:
        raise IfaError("--top must be at least 1.")
    if min_score is not None and not 0 <= min_score <= 1:
        raise IfaError("--min-score is a probability of error, between 0 and 1.")
    if apply and review:
        raise IfaError("Choose --apply (drop the flagged labels now) or --review (let people decide), not both.")
    if review is not None and len(review.annotators) != 2:
        raise IfaError("--review needs exactly two --annotators (and a --tiebreaker).")
    if min_score is None and top is None:
        min_score = DEFAULT_MIN_SCORE
    tax = ws.taxonomy
    cross_fit: dict = {}
    split = read_split(ws.ledger, tax, "train")
    if not len(split):
        raise IfaError("The workspace has no active train images to flag.")
    if probs is not None:
        ids, matrix = read_probs(Path(probs), tax.label_ids)
        probs_path = str(probs)
    else:
        config = config or DEFAULT_CONFIG
        expected = _announce(config, folds, int((split.paths != "").sum()), device, progress)
        cf = crossfit.out_of_sample(ws, config, folds, run, device, progress)
        ids, matrix, probs_path = cf.image_ids, cf.probs, cf.path
        cross_fit = {"folds": folds, "seconds": cf.seconds, "images_skipped": cf.images_skipped,
                     "val_f1": [h[-1]["val_f1"] if h else None for h in cf.histories], "expected_seconds": expected}

    rows = pd.Index(ids).get_indexer(split.image_ids)
    covered = rows >= 0
    if not covered.any():
        raise IfaError(f"{probs_path} has probabilities for none of the workspace's active train images.")
    if (~covered).any():
        progress.note(f"{int((~covered).sum()):,} active train images have no probabilities: not assessed.")
    image_ids, labels = split.image_ids[covered], split.labels[covered]
    matrix = matrix[rows[covered]]
    single = np.array([g.single for g in tax.groups])
    with progress.task("ranking label issues", total=1) as task:
        rates = noise.estimate_rates(labels, matrix, tax.group_index, single)
        rules = load_rules(None, tax) if rules is None else rules
        ranked, dropped = rank_within_rules(labels, matrix, tax, rules, rates=rates, top=top, min_score=min_score)
        task.advance()
    flags = _describe(ranked, image_ids, tax)
    unjudged = _unjudged(rates, tax)
    result = FlagNoiseResult(flags, int(flags["image_id"].nunique()), probs_path, "", "",
                             len(image_ids), rates.estimated_errors, cross_fit, unjudged=unjudged,
                             suggestions_dropped=dropped)
    if apply:
        wrong = flags[flags["kind"] == "wrong"]
        changes = [Change("drop_label", i, int(l), reason=f"flag-noise: likely wrong (score {s:.2f}, model p={p:.3f})",
                          rule=RULE) for i, l, s, p in zip(wrong["image_id"], wrong["label_id"], wrong["score"], wrong["prob"])]
        done = ws.ledger.apply_changes(changes)
        result.applied, result.labels_dropped = True, done["drop_label"]
    # Reports after the apply they describe, each written whole or not at all.
    result.csv = str(reports.write_csv(ws.report_path("flag-noise", "csv"), flags))
    result.unjudged_csv = str(reports.write_csv(ws.report_path("flag-noise-unjudged", "csv"), unjudged))
    result.html = str(_write_html(ws, flags, labels, image_ids, matrix, len(image_ids), probs_path, unjudged, dropped))
    if review is not None:
        result.review = send_to_review(ws, list(dict.fromkeys(flags["image_id"])), review, progress)
    result.seconds = round(time.perf_counter() - start, 2)
    return result


def _announce(config: TrainConfig, folds: int, images: int, device: str, progress: Progress) -> float | None:
    """Say, before training starts, how long the small CNN's cross-fit should take on 2 CPU
    cores (images x epochs x folds at the measured rate); None for other backbones, for
    --features and off the CPU, where no rate was measured."""
    if config.features or config.backbone != "small-cnn" or device != "cpu" or not images:
        return None
    seconds = defaults.expected_cross_fit_seconds(images, config.epochs, folds, config.image_size)
    progress.note(f"Cross-fitting {folds} small CNNs ({config.epochs} epochs, {config.image_size} px) on {images:,} "
                  f"train photos: expected {defaults.describe_seconds(seconds)} on 2 free CPU cores (measured "
                  f"{defaults.CNN_RATE_AT_32PX:.0f} image-epochs/s at 32 px); busy cores take up to 5x longer, "
                  f"more cores go faster."
                  + (f" {defaults.MILLION_HINT}" if seconds > 3600 else ""))
    return round(seconds, 1)


def _describe(ranked: pd.DataFrame, image_ids: np.ndarray, tax) -> pd.DataFrame:
    label_ids = tax.label_ids[ranked["column"].to_numpy()]
    return pd.DataFrame({
        "image_id": image_ids[ranked["row"].to_numpy()],
        "label_id": label_ids,
        "label": tax.names(label_ids),
        "group": [tax.labels[int(i)].group for i in label_ids],
        "kind": ranked["kind"].to_numpy(),
        "score": ranked["score"].to_numpy(),
        "prob": ranked["prob"].to_numpy(),
    })


def _unjudged(rates: noise.NoiseRates, tax) -> pd.DataFrame:
    """The classes with labelled train images the model gives no evidence about
    (`NoiseRates.skilled`: the same probability on every image, or a lift under
    ranking.MIN_LIFT): none of their labels is flagged. Most images first."""
    cols = np.flatnonzero((rates.n_pos > 0) & ~rates.skilled)
    label_ids = tax.label_ids[cols]
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = rates.t_pos[cols] / rates.t_neg[cols]
    frame = pd.DataFrame({"label_id": label_ids.astype(int), "label": tax.names(label_ids),
                          "group": [tax.labels[int(i)].group for i in label_ids],
                          "images": rates.n_pos[cols].astype(int), "lift": lift.astype(float)})
    return frame.sort_values(["images", "label_id"], ascending=[False, True], ignore_index=True)


def _write_html(ws: Workspace, flags: pd.DataFrame, labels: np.ndarray, image_ids: np.ndarray, probs: np.ndarray,
                assessed: int, probs_path: str, unjudged: pd.DataFrame | None = None,
                dropped: dict | None = None) -> Path:
    """One card per flagged image (most suspicious first): given labels, the ones flagged
    wrong, and the suggested (likely missing) labels, each with the model's probability."""
    tax = ws.taxonomy
    path = ws.report_path("flag-noise", "html")
    order = list(dict.fromkeys(flags["image_id"]))[:HTML_IMAGES]
    row_of = pd.Index(image_ids).get_indexer(order)
    paths = ws.ledger.images_frame(["train"], status=None).set_index("image_id")["path"]
    by_image = {i: g for i, g in flags[flags["image_id"].isin(order)].groupby("image_id", sort=False)}
    cards = []
    for iid, r in zip(order, row_of):
        f = by_image[iid]
        wrong = set(f.loc[f["kind"] == "wrong", "label_id"].astype(int))
        given = tax.label_ids[np.flatnonzero(labels[r])]
        lines = ["given: " + (", ".join(f"{'✗ ' if int(l) in wrong else ''}{tax.names([l])[0]} "
                                        f"({probs[r, tax.column_of([l])[0]]:.2f})" for l in given) or "none")]
        missing = f[f["kind"] == "missing"]
        if len(missing):
            lines.append("suggested: " + ", ".join(f"{n} ({p:.2f})" for n, p in zip(missing["label"], missing["prob"])))
        lines.append(f"max score {f['score'].max():.2f}")
        p = paths.get(iid)
        cards.append(report_html.Card(str(iid), None if p is None or pd.isna(p) else str(p), lines))
    rows = [cards[i:i + 5] for i in range(0, len(cards), 5)]
    intro = (f"{len(flags):,} likely label errors on {flags['image_id'].nunique():,} of {assessed:,} train images, "
             f"ranked by the estimated probability that the label is in error. ✗ marks a given label that is likely "
             f"wrong; suggested labels are likely missing. Numbers in brackets are the model's out-of-sample "
             f"probabilities ({probs_path}). The CSV beside this page lists every flag.")
    if dropped:
        intro += (f" {sum(dropped.values()):,} suggested labels were left out because adding them would break an "
                  f"attribute rule ({', '.join(f'{r}: {n}' for r, n in dropped.items())}).")
    sections = [report_html.Section(f"The {len(cards)} most suspicious images", rows=rows)] if cards else []
    if unjudged is not None and len(unjudged):
        listed = "; ".join(f"{r.label} ({r.group}, {r.images:,} images, lift {r.lift:.2f})"
                           for r in unjudged.itertuples(index=False))
        sections.append(report_html.Section(
            f"{len(unjudged)} classes the model could not judge",
            f"The model gives these classes the same probability on every image"
            f"{'' if noise.MIN_LIFT <= 0 else f' (or under {noise.MIN_LIFT}x on their images what it gives the others)'}"
            f", so it cannot tell their images apart and none of their labels is flagged, right or wrong: "
            f"their noise is unknown, not absent. Better features (ifa model embed) or more images help. {listed}."))
    return report_html.write_page(path, "ifa curate flag-noise", sections, intro)


def send_to_review(ws: Workspace, image_ids: list[str], review: ReviewRequest, progress: Progress = SILENT) -> dict:
    """Create a review round over the flagged train images with the review commands'
    library: `annotation.rounds.create_round(ws, split="train", annotators=[A, B],
    tiebreaker=C, image_ids=[...])` (only annotation/ talks to Label Studio). Returns the
    round's description (its `CreateResult.to_dict()`).

    Raises IfaError when there is nothing to review or the server refuses."""
    if not image_ids:
        raise IfaError("No image was flagged, so there is nothing to review; lower --min-score or use --top N.")
    if not review.tiebreaker:
        raise IfaError("--review needs a --tiebreaker, the third person who settles the annotators' disagreements.")
    from ...annotation import rounds  # only annotation/ talks to Label Studio

    created = rounds.create_round(ws, split="train", annotators=list(review.annotators), tiebreaker=review.tiebreaker,
                                  image_ids=image_ids, progress=progress)
    return created.to_dict()


# ---- the demo's step -----------------------------------------------------------------------------
# Small enough for `ifa demo` on two CPU cores: 3 folds x 12 epochs of a 32 px CNN over the
# sample's ~230 train images. So few photos teach a from-scratch CNN little (validation F1
# about 0.2), so only a few classes are separable and few planted errors can be found;
# 6 epochs separated no class at all. The benchmark shows what the ranking does on 2,500 images.
DEMO_CONFIG = TrainConfig(epochs=12, image_size=32, batch_size=32, lr=3e-3, loss="weighted-bce")
DEMO_FOLDS, DEMO_TOP = 3, 20


def demo_step(ws: Workspace, progress: Progress = SILENT) -> tuple[str, dict]:
    """Cross-fit a small CNN on the workspace's train split and list the 20 most likely
    label errors (nothing is changed). Returns (one-line summary, data for --json)."""
    result = flag_noise(ws, config=DEMO_CONFIG, folds=DEMO_FOLDS, top=DEMO_TOP, progress=progress)
    f1 = [v for v in result.cross_fit.get("val_f1", []) if v is not None]
    summary = (f"{len(result.flags)} likely label errors on {result.images_flagged} of {result.images_assessed} "
               f"train images (fold models' validation F1 {np.mean(f1):.2f}); report {result.html}"
               if f1 else f"{len(result.flags)} likely label errors; report {result.html}")
    return summary, {"flag_noise": result.to_dict() | {"csv": result.csv, "html": result.html}}
