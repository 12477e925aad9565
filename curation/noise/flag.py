"""`ifa curate flag-noise`: rank the training labels most likely wrong or missing, from
out-of-sample probabilities, and hand them to people (CSV, HTML), to `--apply` (drop the
wrong ones, reversibly) or to a review round (the CLI starts it with the review commands'
library: only annotation/ talks to Label Studio).

The ledger is read once at the edge (the train split's labels, with the ones flag-noise
dropped before counted as given, so a second apply of the same inputs decides the same and
changes nothing); the ranking itself is `noise.rank_label_issues` over arrays.
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
from .model.data import Split, read_split
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

    def check(self, apply: bool = False) -> None:
        """Raise IfaError unless the request names two annotators and a tiebreaker and comes
        without --apply: checked before any work, so a bad request costs nothing."""
        if apply:
            raise IfaError("Choose --apply (drop the flagged labels now) or --review (let people decide), not both.")
        if len(self.annotators) != 2:
            raise IfaError("--review needs exactly two --annotators (and a --tiebreaker).")
        if not self.tiebreaker:
            raise IfaError("--review needs a --tiebreaker, the third person who settles the annotators' disagreements.")


@dataclass
class FlagNoiseResult:
    # image_id, label_id, label, group, kind ('wrong' | 'missing' | 'swap'), score, prob, replaces (the
    # given label id a swap takes the place of, -1 otherwise), replaces_label; most likely error first
    flags: pd.DataFrame
    images_flagged: int
    probs: str  # the out-of-sample probabilities used (Parquet)
    csv: str
    html: str
    images_assessed: int
    estimated_errors: int  # confident learning's count over all pairs, before --min-score/--top
    min_score: float  # the cut: flags scoring at least this are acted on (--apply, --review)
    cross_fit: dict = field(default_factory=dict)
    applied: bool = False
    labels_dropped: int = 0
    rule: str = RULE
    seconds: float = 0.0
    expected_seconds: float | None = None  # stated once the cross-fit's first batches were timed
    # Classes the model could not judge (ranking's separability gate): never flagged. Frame of
    # label_id, label, group, images (labelled train images), lift (mean p labelled / unlabelled).
    unjudged: pd.DataFrame | None = None
    unjudged_csv: str = ""
    suggestions_dropped: dict = field(default_factory=dict)  # rule id -> suggestions that would break it

    @property
    def acted_on(self) -> pd.DataFrame:
        """The flags at or above the --min-score cut: what --apply and --review act on."""
        return self.flags[self.flags["score"] >= self.min_score]

    def images_to_review(self) -> list[str]:
        """The images with a flag at or above the cut, most suspicious first."""
        return list(dict.fromkeys(self.acted_on["image_id"]))

    def groups_to_review(self) -> dict[str, tuple[str, ...]]:
        """Per image with a flag at or above the cut (most suspicious first), the groups of
        its flags: what a short check asks people (the image's other groups are kept)."""
        out: dict[str, list[str]] = {}
        for image_id, group in zip(self.acted_on["image_id"], self.acted_on["group"]):
            mine = out.setdefault(image_id, [])
            if group not in mine:
                mine.append(group)
        return {i: tuple(g) for i, g in out.items()}

    def unjudged_list(self) -> list[dict]:
        if self.unjudged is None:
            return []
        return [{"label": int(r.label_id), "name": r.label, "group": r.group, "images": int(r.images),
                 "lift": None if not np.isfinite(r.lift) else round(float(r.lift), 3)}
                for r in self.unjudged.itertuples(index=False)]

    def to_dict(self) -> dict:
        """The `--json` shape: flags (image_id, label = the label id, kind, score, and for a
        swap the label id it replaces), most likely error first; how many images they
        touch; the probabilities file used; the --min-score cut; the classes the model could
        not judge; suggestions left out per rule they would break; the time expected once
        the first batches were timed (null without a cross-fit) and the time taken."""
        flags = [{"image_id": i, "label": int(l), "kind": k, "score": round(float(s), 6)}
                 | ({"replaces": int(r)} if k == "swap" else {})
                 for i, l, k, s, r in zip(self.flags["image_id"], self.flags["label_id"], self.flags["kind"],
                                          self.flags["score"], self.flags["replaces"])]
        return {"flags": flags, "images_flagged": int(self.images_flagged), "probs": self.probs,
                "min_score": self.min_score, "unjudged_classes": self.unjudged_list(),
                "suggestions_dropped": dict(self.suggestions_dropped), "expected_seconds": self.expected_seconds,
                "seconds": self.seconds}


@dataclass
class _Probs:
    image_ids: np.ndarray
    matrix: np.ndarray
    path: str
    cross_fit: dict


def flag_noise(ws: Workspace, *, probs: Path | None = None, config: TrainConfig | None = None,
               folds: int = defaults.FLAG_NOISE_FOLDS,
               run: str = DEFAULT_RUN, device: str = "cpu", top: int | None = None,
               min_score: float | None = None, apply: bool = False,
               rules: RuleSet | None = None, progress: Progress = SILENT) -> FlagNoiseResult:
    """Flag the train split's likely label errors.

    probs: a Parquet of OUT-OF-SAMPLE probabilities (image_id + one column per label id);
    without it, `folds` models are cross-fitted with `config` (default DEFAULT_CONFIG;
    checkpointed under `models/<run>/`, so a crash resumes); the cross-fit times its first
    batches and notes its expected time through `progress` (`expected_seconds`).
    top / min_score limit the flags; min_score (default DEFAULT_MIN_SCORE) is also the cut:
    with top alone the list holds the best `top` whatever their score, but only flags at or
    above the cut are acted on. apply drops the wrong labels at or above the cut (rule
    "flag-noise"); suggestions (missing labels, swaps) are never applied. The labels judged
    are the train split's as they were before flag-noise's own drops, so a second apply of
    the same command and inputs changes nothing.
    rules: the attribute rules (default: the shipped ones); a suggested label that would
    break one on its image is not flagged (`suggestions.rank_within_rules`); a suggestion in
    a single-label group beside the image's label there is a swap (`suggestions.mark_swaps`).
    Classes the model cannot separate are listed in the result (`unjudged`) and the reports.
    The caller sends `images_to_review()` to a review round when asked.

    Raises IfaError for bad arguments, a probabilities file that does not fit the
    workspace, or a workspace without train images."""
    start = time.perf_counter()
    cut = _check_limits(top, min_score)
    tax = ws.taxonomy
    split = read_split(ws.ledger, tax, "train", undo_rule=RULE)
    if not len(split):
        raise IfaError("The workspace has no active train images to flag.")
    got = _probabilities(ws, split, probs, config, folds, run, device, progress, start)
    image_ids, labels, matrix = _align(split, got, progress)
    with progress.task("ranking label issues", total=3) as task:
        rates = noise.estimate_rates(labels, matrix, tax.group_index, np.array([g.single for g in tax.groups]))
        task.advance()
        rules = load_rules(None, tax) if rules is None else rules
        listed = cut if min_score is not None or top is None else None  # --top alone lists the best whatever their score
        ranked, dropped = rank_within_rules(labels, matrix, tax, rules, rates=rates, top=top, min_score=listed)
        task.advance()
        flags, unjudged = _describe(ranked, image_ids, tax), _unjudged(rates, tax)
        task.advance()
    result = FlagNoiseResult(flags, int(flags["image_id"].nunique()), got.path, "", "", len(image_ids),
                             rates.estimated_errors, cut, got.cross_fit, unjudged=unjudged, suggestions_dropped=dropped,
                             expected_seconds=got.cross_fit.get("expected_seconds"))
    if apply:
        result.applied, result.labels_dropped = True, _apply(ws, result.acted_on)
    # Reports after the apply they describe, each written whole or not at all.
    result.csv = str(reports.write_csv(ws.report_path("flag-noise", "csv"), flags))
    result.unjudged_csv = str(reports.write_csv(ws.report_path("flag-noise-unjudged", "csv"), unjudged))
    result.html = str(_write_html(ws, result, labels, image_ids, matrix))
    result.seconds = round(time.perf_counter() - start, 2)
    return result


def _check_limits(top: int | None, min_score: float | None) -> float:
    """The --min-score cut; IfaError for a --top or --min-score out of range."""
    if top is not None and top < 1:
        raise IfaError("--top must be at least 1.")
    if min_score is not None and not 0 <= min_score <= 1:
        raise IfaError("--min-score is a probability of error, between 0 and 1.")
    return DEFAULT_MIN_SCORE if min_score is None else float(min_score)


def _probabilities(ws: Workspace, split: Split, probs: Path | None, config: TrainConfig | None, folds: int, run: str,
                   device: str, progress: Progress, start: float) -> _Probs:
    """The out-of-sample probabilities: read from `probs`, or cross-fitted on `split`."""
    if probs is not None:
        ids, matrix = read_probs(Path(probs), ws.taxonomy.label_ids)
        return _Probs(ids, matrix, str(probs), {})
    cf = crossfit.out_of_sample(ws, config or DEFAULT_CONFIG, folds, run, device, progress, split=split, started=start)
    return _Probs(cf.image_ids, cf.probs, cf.path, {
        "folds": folds, "seconds": cf.seconds, "images_skipped": cf.images_skipped,
        "val_f1": [h[-1]["val_f1"] if h else None for h in cf.histories], "expected_seconds": cf.expected_seconds})


def _align(split: Split, got: _Probs, progress: Progress) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image ids, labels, probabilities) of the train images the probabilities cover, in
    the split's order. Raises IfaError when they cover none."""
    rows = pd.Index(got.image_ids).get_indexer(split.image_ids)
    covered = rows >= 0
    if not covered.any():
        raise IfaError(f"{got.path} has probabilities for none of the workspace's active train images.")
    if (~covered).any():
        progress.note(f"{int((~covered).sum()):,} active train images have no probabilities: not assessed.")
    return split.image_ids[covered], split.labels[covered], got.matrix[rows[covered]]


def _apply(ws: Workspace, flags: pd.DataFrame) -> int:
    """Drop the given labels flagged wrong (one transaction); how many were dropped now (a
    label this rule dropped before is already gone: applying again changes nothing)."""
    wrong = flags[flags["kind"] == "wrong"]
    changes = [Change("drop_label", i, int(l), reason=f"flag-noise: likely wrong (score {s:.2f}, model p={p:.3f})",
                      rule=RULE) for i, l, s, p in zip(wrong["image_id"], wrong["label_id"], wrong["score"], wrong["prob"])]
    return ws.ledger.apply_changes(changes)["drop_label"]


def _describe(ranked: pd.DataFrame, image_ids: np.ndarray, tax) -> pd.DataFrame:
    label_ids = tax.label_ids[ranked["column"].to_numpy()]
    replaced = ranked["replaces"].to_numpy() if "replaces" in ranked else np.full(len(ranked), -1)
    replaces = np.where(replaced >= 0, tax.label_ids[np.maximum(replaced, 0)], -1).astype(np.int64)
    return pd.DataFrame({
        "image_id": image_ids[ranked["row"].to_numpy()],
        "label_id": label_ids,
        "label": tax.names(label_ids),
        "group": [tax.labels[int(i)].group for i in label_ids],
        "kind": ranked["kind"].to_numpy(),
        "score": ranked["score"].to_numpy(),
        "prob": ranked["prob"].to_numpy(),
        "replaces": replaces,
        "replaces_label": [tax.labels[int(r)].name if r >= 0 else "" for r in replaces],
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


# ---- the HTML page -------------------------------------------------------------------------------
def _write_html(ws: Workspace, result: FlagNoiseResult, labels: np.ndarray, image_ids: np.ndarray,
                probs: np.ndarray) -> Path:
    """One card per flagged image (most suspicious first): given labels, the ones flagged
    wrong, the swaps and suggested (likely missing) labels, each with the model's
    probability. Images with a flag at or above the cut come under the threshold heading;
    the rest of a --top list under "below the --min-score cut"."""
    flags, cut = result.flags, result.min_score
    above = flags.groupby("image_id", sort=False)["score"].max() >= cut if len(flags) else pd.Series(dtype=bool)
    order = list(dict.fromkeys(flags["image_id"]))[:HTML_IMAGES]
    paths = ws.ledger.images_frame(["train"], status=None).set_index("image_id")["path"]
    cards = _cards(ws.taxonomy, flags[flags["image_id"].isin(order)], order, labels, pd.Index(image_ids), probs, paths)
    acted = [c for c, iid in zip(cards, order) if above[iid]]
    below = [c for c, iid in zip(cards, order) if not above[iid]]
    n_acted = int((flags["score"] >= cut).sum())
    verb = "dropped" if result.applied else "what --apply drops (wrong labels) and --review sends to people"
    sections = [report_html.Section(
        f"{n_acted:,} likely label errors: score at or above the --min-score cut {cut:.2f}",
        f"{len(acted)} images shown, most suspicious first; {verb}. Suggestions (missing labels, swaps) are never "
        f"applied.", rows=_rows(acted))]
    if len(flags) > n_acted:
        sections.append(report_html.Section(
            f"{len(flags) - n_acted:,} flags below the --min-score cut {cut:.2f}",
            "In the --top list, but the model is less sure: not acted on; look at them before trusting them.",
            rows=_rows(below)))
    sections += _unjudged_section(result.unjudged)
    return report_html.write_page(ws.report_path("flag-noise", "html"), "ifa curate flag-noise", sections,
                                  _intro(result, len(image_ids)))


def _rows(cards: list) -> list[list]:
    return [cards[i:i + 5] for i in range(0, len(cards), 5)]


def _cards(tax, flags: pd.DataFrame, order: list, labels: np.ndarray, index: pd.Index, probs: np.ndarray,
           paths: pd.Series) -> list:
    by_image = {i: g for i, g in flags.groupby("image_id", sort=False)}
    cards = []
    for iid, r in zip(order, index.get_indexer(order)):
        f = by_image[iid]
        wrong = set(f.loc[f["kind"] == "wrong", "label_id"].astype(int))
        given = tax.label_ids[np.flatnonzero(labels[r])]
        lines = ["given: " + (", ".join(f"{'✗ ' if int(l) in wrong else ''}{tax.names([l])[0]} "
                                        f"({probs[r, tax.column_of([l])[0]]:.2f})" for l in given) or "none")]
        swaps = f[f["kind"] == "swap"]
        if len(swaps):
            lines.append("swap: " + ", ".join(f"{o} -> {n} ({p:.2f})" for o, n, p in
                                               zip(swaps["replaces_label"], swaps["label"], swaps["prob"])))
        missing = f[f["kind"] == "missing"]
        if len(missing):
            lines.append("suggested: " + ", ".join(f"{n} ({p:.2f})" for n, p in zip(missing["label"], missing["prob"])))
        lines.append(f"max score {f['score'].max():.2f}")
        p = paths.get(iid)
        cards.append(report_html.Card(str(iid), None if p is None or pd.isna(p) else str(p), lines))
    return cards


def _intro(result: FlagNoiseResult, assessed: int) -> str:
    flags, dropped = result.flags, result.suggestions_dropped
    text = (f"{len(flags):,} flags on {flags['image_id'].nunique():,} of {assessed:,} train images, ranked by the "
            f"estimated probability that the label is in error; those at or above the --min-score cut "
            f"({result.min_score:.2f}) are acted on. ✗ marks a given label that is likely wrong; a swap (old -> new) "
            f"replaces the image's label in a single-label group; suggested labels are likely missing. Numbers in "
            f"brackets are the model's out-of-sample probabilities ({result.probs}). The CSV beside this page lists "
            f"every flag.")
    if dropped:
        text += (f" {sum(dropped.values()):,} suggested labels were left out because adding them would break an "
                 f"attribute rule ({', '.join(f'{r}: {n}' for r, n in dropped.items())}).")
    return text


def _unjudged_section(unjudged: pd.DataFrame | None) -> list:
    if unjudged is None or not len(unjudged):
        return []
    listed = "; ".join(f"{r.label} ({r.group}, {r.images:,} images, lift {r.lift:.2f})"
                       for r in unjudged.itertuples(index=False))
    return [report_html.Section(
        f"{len(unjudged)} classes the model could not judge",
        f"The model gives these classes the same probability on every image"
        f"{'' if noise.MIN_LIFT <= 0 else f' (or under {noise.MIN_LIFT}x on their images what it gives the others)'}"
        f", so it cannot tell their images apart and none of their labels is flagged, right or wrong: "
        f"their noise is unknown, not absent. Better features (ifa model embed) or more images help. {listed}.")]


# ---- the demo's step -----------------------------------------------------------------------------
# Small enough for `ifa demo` on two CPU cores: 3 folds x 12 epochs of a 32 px CNN over the
# sample's ~230 train images. So few photos teach a from-scratch CNN little (validation F1
# about 0.2), so only a few classes are separable and few planted errors can be found;
# 6 epochs separated no class at all. The benchmark shows what the ranking does on 2,500 images.
DEMO_CONFIG = TrainConfig(epochs=12, image_size=32, batch_size=32, lr=3e-3, loss="weighted-bce")
DEMO_FOLDS, DEMO_TOP = 3, 20


def demo_step(ws: Workspace, progress: Progress = SILENT) -> tuple[str, dict]:
    """Cross-fit a small CNN on the workspace's train split and list the 20 most likely
    label errors, those under the --min-score cut apart (nothing is changed). Returns
    (one-line summary, data for --json)."""
    result = flag_noise(ws, config=DEMO_CONFIG, folds=DEMO_FOLDS, top=DEMO_TOP, progress=progress)
    f1 = [v for v in result.cross_fit.get("val_f1", []) if v is not None]
    sure = len(result.acted_on)
    found = (f"{sure} likely label errors (score >= {result.min_score:.2f}) and {len(result.flags) - sure} flags below "
             f"the --min-score cut on {result.images_flagged} of {result.images_assessed} train images")
    summary = (f"{found} (fold models' validation F1 {np.mean(f1):.2f}); report {result.html}"
               if f1 else f"{found}; report {result.html}")
    return summary, {"flag_noise": result.to_dict() | {"csv": result.csv, "html": result.html}}
