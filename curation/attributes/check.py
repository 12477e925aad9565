"""`ifa curate check-attributes`: every image's labels against the attribute rules.

The paper's first cleaning step: images whose attributes contradict each other or the
label space are set aside (or lose the labels that broke a rule, or are queued for a
person to review). The ledger is read once into arrays (`ledger.arrays.label_arrays`),
every rule runs over the whole table at once (`rules.py`), and all actions go to the
ledger in one transaction through `Ledger.apply_changes`, each change carrying the rule
id so `ifa curate restore --rule ID` undoes it.

What counts as "already handled", so a rerun after --apply finds nothing new to do: a
set-aside image is no longer checked (only active images are), a dropped label is no
longer looked at, and an image queued for review by a rule (pending, sent or done) is not
hit again by that rule unless restore cancelled the queueing. Report-only rules list the
same images every run: they describe the data and change nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from ...progress import SILENT, Progress
from ...taxonomy import Taxonomy
from ..ledger import SPLITS, Change, Ledger, check_splits
from ..ledger.arrays import image_rows, label_arrays
from ..ledger.review_queue import enqueue_review, review_queue
from .. import reports
from ..reports.html import Card, Section, write_page
from .rules import LabelView, Rule, RuleSet, load_rules
from ..workspace import Workspace

REPORT_NAME = "check-attributes"
CSV_COLUMNS = ["image_id", "split", "rule", "label_ids", "labels", "action", "decision"]
# A drop-labels hit is judged by the model only when it finds one side more likely than not: with
# both sides under this it believes neither (planted wrong categories, benchmarks.flag_noise_judgements).
MIN_EVIDENCE = 0.5
CARDS_PER_RULE = 12  # thumbnails per rule in the HTML report: enough to see the pattern
_JSON_ESCAPE = re.compile(r'[\x00-\x1f\\"]')  # what json.dumps escapes with ensure_ascii=False


@dataclass
class RuleResult:
    """What one rule found. `images`: images hit; `by_split`: the same per split;
    `changes`: the changes its action makes (or would make): images set aside, labels
    dropped or images queued, 0 for report-only rules."""

    id: str
    kind: str
    description: str
    severity: str
    action: str
    images: int = 0
    by_split: dict[str, int] = field(default_factory=dict)
    changes: int = 0
    details: list[str] = field(default_factory=list)


@dataclass
class CheckResult:
    """The outcome of a check.

    rules:   rule id -> RuleResult, in the rules' order.
    hits:    one row per (rule, image): image_id, split, rule, label_ids (space-separated),
             labels (names, '; '-separated), action, path (local file or None), culprits (names
             of the labels that broke the rule: what drop-labels drops).
    applied: whether the actions were applied (False: a dry run).
    changes: set_aside / drop_label / review -> how many took (or would take) effect.
    """

    rules: dict[str, RuleResult]
    hits: pd.DataFrame
    applied: bool = False
    images_checked: int = 0
    splits: list[str] = field(default_factory=list)
    changes: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    report_csv: str = ""
    report_html: str = ""
    review_files: dict[str, str] = field(default_factory=dict)

    def flagged(self) -> list[dict]:
        """Every image hit by at least one rule: image_id, split and the rules, in ledger order."""
        image_id, split, combo, combos = self._flagged_arrays()
        rules = [list(c) for c in combos]
        return [{"image_id": i, "split": s, "rules": list(rules[c])} for i, s, c in
                zip(image_id.tolist(), split.tolist(), combo.tolist())]

    def to_dict(self) -> dict:
        """The `--json` shape: {"rules": {id: {"images", "action"}}, "flagged": [...], "applied"}."""
        return {"rules": {r.id: {"images": r.images, "action": r.action} for r in self.rules.values()},
                "flagged": self.flagged(), "applied": self.applied}

    def json_chunks(self, chunk: int = 50_000) -> Iterator[str]:
        """`json.dumps(self.to_dict(), indent=2, ensure_ascii=False)`, the same text, in pieces
        of `chunk` flagged images, built from arrays. At 1M synthetic images (243k flagged)
        the dicts of `to_dict` cost 8 s to group with pandas and 12 s more to encode; here the
        rule lists are encoded once per distinct combination of rules (a few dozen) and every
        image's entry is one join over interleaved pieces: under a second in all."""
        marker = "\x00flagged\x00"
        head = {"rules": {r.id: {"images": r.images, "action": r.action} for r in self.rules.values()},
                "flagged": marker, "applied": self.applied}
        before, _, after = json.dumps(head, indent=2, ensure_ascii=False).partition(json.dumps(marker))
        image_id, split, combo, combos = self._flagged_arrays()
        if not len(image_id):
            yield before + "[]" + after
            return
        # json.dumps escapes only quotes, backslashes and control characters (ensure_ascii=False)
        if _JSON_ESCAPE.search("".join(image_id.tolist())):  # rare: escape each id the slow way
            image_id = np.array([json.dumps(x, ensure_ascii=False)[1:-1] for x in image_id.tolist()], dtype=object)
        # one rule list per combination, indented as json.dumps puts it at depth 3
        combo_json = np.array([json.dumps(list(c), indent=2, ensure_ascii=False).replace("\n", "\n      ")
                               for c in combos], dtype=object)
        pieces = np.empty((len(image_id), 8), dtype=object)
        pieces[:, 0] = '    {\n      "image_id": "'
        pieces[:, 1] = image_id
        pieces[:, 2] = '",\n      "split": "'
        pieces[:, 3] = split
        pieces[:, 4] = '",\n      "rules": '
        pieces[:, 5] = combo_json[combo]
        pieces[:, 6] = "\n    }"
        pieces[:, 7] = ",\n"
        pieces[-1, 7] = ""
        yield before + "[\n"
        for start in range(0, len(pieces), chunk):
            yield "".join(pieces[start:start + chunk].ravel().tolist())
        yield "\n  ]" + after

    def _flagged_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[str, ...]]]:
        """The flagged images in ledger order: image_id (F,) and split (F,) object arrays,
        combo (F,) int index into `combos`, each a tuple of rule ids in the rules' order.
        The hit rows are grouped once; an image's rules are a bit set (63 rules per int64 word)."""
        hits = self.hits
        if not len(hits):
            empty = np.zeros(0, dtype=object)
            return empty, empty, np.zeros(0, dtype=np.int64), []
        image, rule = hits["_image"].to_numpy(np.int64), hits["_rule"].to_numpy(np.int64)
        order = np.lexsort((rule, image))
        image, rule = image[order], rule[order]
        starts = np.flatnonzero(np.r_[True, image[1:] != image[:-1]])
        words = int(rule.max()) // 63 + 1
        bits = np.empty((len(starts), words), dtype=np.int64)
        for w in range(words):  # an image hits a rule at most once, so a sum of its bits is their union
            bits[:, w] = np.add.reduceat(np.where(rule // 63 == w, np.left_shift(1, rule % 63), 0), starts)
        uniq, combo = np.unique(bits, axis=0, return_inverse=True)
        names = list(self.rules)
        combos = [tuple(names[w * 63 + b] for w in range(words) for b in range(63) if int(u[w]) >> b & 1)
                  for u in uniq]
        first = order[starts]
        return (hits["image_id"].to_numpy(dtype=object)[first], hits["split"].to_numpy(dtype=object)[first],
                combo.reshape(-1), combos)


def check(ledger: Ledger, taxonomy: Taxonomy, rules: RuleSet | Sequence[Rule] | None = None, *,
          splits: Sequence[str] | None = None, apply: bool = False, probs: Evidence | None = None,
          progress: Progress = SILENT) -> CheckResult:
    """Run `rules` (default: the shipped rules) over the active images of `splits` (default
    all) and, with `apply`, carry out each rule's action in one transaction.

    Inputs: the ledger and its taxonomy; rules from `load_rules`. Statistical rules compare
    against their reference split even when `splits` leaves it out. probs: out-of-sample
    probabilities (flag-noise's cross-fit): a drop-labels rule drops the side of a hit the
    model finds less likely; on an image without them, a hit whose culprits are not fewer
    than the labels kept goes to review instead (`_sides`).
    Returns a CheckResult; writes no files (see `write_reports` and `run`).
    Raises IfaError for an unknown split; WorkspaceBusy if another command holds the ledger.
    """
    ruleset = rules if isinstance(rules, RuleSet) else RuleSet(list(rules)) if rules is not None else load_rules(None, taxonomy)
    check_splits(splits)
    chosen = list(splits) if splits else list(SPLITS)

    arrays = label_arrays(ledger, image_status="active", label_statuses=("active", "quarantined"), progress=progress)
    view = LabelView(arrays, taxonomy)
    queued = _queued(ledger, view, [r.id for r in ruleset if r.action in ("review", "drop-labels")])
    rows = find_hits(view, ruleset, chosen, queued, progress)
    with progress.task("listing hit images"):
        hits = _per_image(rows, ruleset, view, ledger)

    result = CheckResult({r.id: RuleResult(r.id, r.kind, r.description, r.severity, r.action,
                                           details=r.finder.describe()) for r in ruleset},
                         hits, images_checked=int(np.isin(arrays.split, [SPLITS.index(s) for s in chosen]).sum()),
                         splits=chosen, notes=list(ruleset.notes) + view.notes)
    for n, rule in enumerate(ruleset):
        mine = hits[hits["_rule"] == n]
        res = result.rules[rule.id]
        res.images = len(mine)
        counts = mine["split"].value_counts()
        res.by_split = {s: int(counts[s]) for s in SPLITS if s in counts.index}
    plan = _plan(rows, hits, ruleset, taxonomy, probs)
    result.hits["decision"] = plan.decisions
    for n, picked in plan.picked.items():
        result.rules[list(ruleset)[n].id].changes = len(picked)
    result.changes = plan.counts()
    if apply:
        changes, reviews = plan.changes()
        with ledger.transaction():
            done = ledger.apply_changes(changes)
            queued_now = enqueue_review(ledger, reviews)
        result.changes = {"set_aside": done["set_aside"], "drop_label": done["drop_label"], "review": queued_now}
        result.applied = True
    return result


def run(ws: Workspace, rules_file: Path | None = None, splits: Sequence[str] | None = None, apply: bool = False,
        progress: Progress = SILENT) -> CheckResult:
    """What `ifa curate check-attributes` does: load the rules (defaults extended by
    `rules_file`), check, apply when asked, and write the reports. The demo calls this:
    `attributes.run(ws, apply=True)`. Raises IfaError for a bad rules file or split."""
    rules = load_rules(rules_file, ws.taxonomy)
    result = check(ws.ledger, ws.taxonomy, rules, splits=splits, apply=apply, probs=Evidence.of(ws), progress=progress)
    with progress.task("writing reports"):
        write_reports(result, ws)
    return result


def write_reports(result: CheckResult, ws: Workspace, cards_per_rule: int = CARDS_PER_RULE) -> CheckResult:
    """Write `reports/check-attributes-<time>.csv` (one row per image and rule), an HTML page
    with thumbnails of a sample of hit images per rule, and, after an applied check with
    review rules, `check-attributes-review-<split>-<time>.txt` (ids pending review, one per
    line, for `ifa review create --images-from`). Fills the paths into `result`."""
    csv_path = ws.report_path(REPORT_NAME, "csv")
    reports.write_csv(csv_path, result.hits[CSV_COLUMNS])
    result.report_csv = str(csv_path)
    html_path = csv_path.with_suffix(".html")
    write_page(html_path, "Attribute check", _sections(result, cards_per_rule), _intro(result))
    result.report_html = str(html_path)
    review_rules = [r.id for r in result.rules.values() if r.action in ("review", "drop-labels")]
    if result.applied and review_rules:
        pending = review_queue(ws.ledger, rules=review_rules, statuses=("pending",))
        for split, ids in pending.groupby("split", sort=False)["image_id"]:
            path = ws.report_path(f"{REPORT_NAME}-review-{split}", "txt")
            reports.write_text(path, "".join(f"{i}\n" for i in ids.drop_duplicates()))
            result.review_files[str(split)] = str(path)
    return result


# ---- steps ----------------------------------------------------------------------------------------
def find_hits(view: LabelView, ruleset: RuleSet | Sequence[Rule], splits: Sequence[str] = SPLITS,
              queued: dict[str, np.ndarray] | None = None, progress: Progress = SILENT) -> pd.DataFrame:
    """Run every rule over the label table at once; the core of `check`, without the ledger.

    view: the label table (LabelView over LabelArrays). splits: images of other splits are
    not hit (statistical rules still count their reference split). queued: rule id -> (N,)
    bool of images that rule already queued for review, left out of its hits.
    Returns one row per (rule, image, label involved), sorted: _rule (index into the rules),
    _image (position in the view), label (-1: none), culprit, status.
    """
    queued = queued or {}
    parts = []
    with progress.task("checking rules", total=len(ruleset)) as task:
        for n, rule in enumerate(ruleset):
            hits = rule.find(view)
            target = view.split_mask([s for s in rule.splits if s in splits])
            if rule.id in queued:
                target &= ~queued[rule.id]
            keep = target[hits.image]
            parts.append(pd.DataFrame({"_rule": np.full(int(keep.sum()), n), "_image": hits.image[keep],
                                       "label": hits.label[keep], "culprit": hits.culprit[keep],
                                       "status": hits.status[keep]}))
            task.advance()
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["_rule", "_image", "label", "culprit", "status"])
    return _dedupe(rows)


def _queued(ledger: Ledger, view: LabelView, rule_ids: list[str]) -> dict[str, np.ndarray]:
    """rule id -> (N,) bool: images that rule already queued (and restore did not cancel)."""
    if not rule_ids:
        return {}
    q = review_queue(ledger, rules=rule_ids, statuses=("pending", "sent", "done"))
    out = {}
    image_pk = view.arrays.image_pk
    for rule_id, pks in q.groupby("rule")["image_pk"]:
        pks = pks.to_numpy(np.int64)
        pos = np.minimum(np.searchsorted(image_pk, pks), max(view.n_images - 1, 0))
        mask = np.zeros(view.n_images, dtype=bool)
        if view.n_images:
            mask[pos[image_pk[pos] == pks]] = True  # queued images that are no longer active drop out
        out[rule_id] = mask
    return out


def _dedupe(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (rule, image, label), sorted; a label is a culprit if any hit says so
    (two pairs of one rule can name the same label)."""
    r, i, l = (rows[c].to_numpy(np.int64) for c in ("_rule", "_image", "label"))
    c, st = rows["culprit"].to_numpy(bool), rows["status"].to_numpy(np.int8)
    order = np.lexsort((l, i, r))
    r, i, l, c, st = r[order], i[order], l[order], c[order], st[order]
    if not len(r):
        return pd.DataFrame({"_rule": r, "_image": i, "label": l, "culprit": c, "status": st})
    new = np.r_[True, (r[1:] != r[:-1]) | (i[1:] != i[:-1]) | (l[1:] != l[:-1])]
    starts = np.flatnonzero(new)
    return pd.DataFrame({"_rule": r[starts], "_image": i[starts], "label": l[starts],
                         "culprit": np.logical_or.reduceat(c, starts), "status": st[starts]})


def _per_image(rows: pd.DataFrame, ruleset: RuleSet, view: LabelView, ledger: Ledger) -> pd.DataFrame:
    """Collapse label rows to one row per (rule, image) with the labels involved, and
    fetch the image ids and paths (only of hit images: strings for a million images are
    never built)."""
    columns = [*CSV_COLUMNS, "path", "culprits", "_rule", "_image", "_start", "_stop"]
    if not len(rows):
        return pd.DataFrame(columns=columns)
    r, i = rows["_rule"].to_numpy(), rows["_image"].to_numpy()
    starts = np.flatnonzero(np.r_[True, (r[1:] != r[:-1]) | (i[1:] != i[:-1])])
    stops = np.r_[starts[1:], len(r)]
    labels = rows["label"].to_numpy()
    valid = labels >= 0
    known = {int(k): v.name for k, v in view.taxonomy.labels.items()}
    uniq, code = np.unique(labels, return_inverse=True)  # a few hundred distinct labels: strings made once each
    id_text = np.array([str(int(k)) for k in uniq], dtype=object)
    name_text = np.array([known.get(int(k), f"<unknown {int(k)}>") for k in uniq], dtype=object)
    group = np.repeat(np.arange(len(starts)), stops - starts)
    label_ids = _join_groups(id_text, " ", code, valid, group, len(starts))
    label_names = _join_groups(name_text, "; ", code, valid, group, len(starts))
    culprits = _join_groups(name_text, "; ", code, valid & rows["culprit"].to_numpy(bool), group, len(starts))
    images = image_rows(ledger, view.arrays.image_pk[i[starts]])
    actions = np.array([rule.action for rule in ruleset], dtype=object)
    rule_ids = np.array([rule.id for rule in ruleset], dtype=object)
    return pd.DataFrame({
        "image_id": images["image_id"].to_numpy(), "split": images["split"].to_numpy(),
        "rule": rule_ids[r[starts]], "label_ids": label_ids, "labels": label_names, "action": actions[r[starts]],
        "path": images["path"].to_numpy(), "culprits": culprits, "_rule": r[starts], "_image": i[starts], "_start": starts, "_stop": stops,
    })


def _join_groups(text: np.ndarray, sep: str, code: np.ndarray, keep: np.ndarray, group: np.ndarray,
                 n_groups: int) -> np.ndarray:
    """`sep.join(text[code[k]] for the rows k of each group where keep[k])`, for every group
    at once: (n_groups,) object array ("" for a group with no kept rows).

    text: (U,) strings; code, keep, group: (R,) per row, rows of a group contiguous. The first
    kept row of a group contributes its text, the others sep + text, and np.add.reduceat
    concatenates each group's pieces in C: 0.2 s for 2M rows, where a join per group in
    Python took 1.7 s at 1M images."""
    out = np.full(n_groups, "", dtype=object)
    rows = np.flatnonzero(keep)
    if not len(rows):
        return out
    g = group[rows]
    first = np.r_[True, g[1:] != g[:-1]]
    with_sep = np.array([sep + t for t in text.tolist()], dtype=object)
    pieces = np.where(first, text[code[rows]], with_sep[code[rows]])
    seg = np.flatnonzero(first)
    out[g[seg]] = np.add.reduceat(pieces, seg)
    return out


@dataclass
class Evidence:
    """Out-of-sample probabilities (a Parquet of image_id + one column per label id, as
    flag-noise's cross-fit writes them), the evidence a drop-labels rule weighs. Only the
    rows and columns a check asks about are read, so a million-image file costs little."""

    path: Path

    @classmethod
    def of(cls, ws: Workspace) -> "Evidence | None":
        """The workspace's cross-fitted probabilities (`ifa curate flag-noise` without --probs
        writes them), or None when there are none."""
        from ..noise.model.probs import cross_fitted

        path = cross_fitted(ws.root)
        return cls(path) if path.is_file() else None

    def at(self, image_ids: np.ndarray, label_ids: np.ndarray) -> np.ndarray:
        """float (R,): the probability of each (image, label); NaN where the file has none
        (or cannot be read: the evidence is then absent, not an error)."""
        import pyarrow.parquet as pq

        out = np.full(len(image_ids), np.nan)
        wanted = sorted({str(int(l)) for l in label_ids})
        try:
            names = set(pq.ParquetFile(self.path).schema_arrow.names)
            cols = [c for c in wanted if c in names]
            table = pq.read_table(self.path, columns=["image_id", *cols],
                                  filters=[("image_id", "in", sorted(set(map(str, image_ids))))]).to_pandas()
        except Exception:  # noqa: BLE001 - a damaged or foreign file is no evidence; the count rule decides
            return out
        if not len(table) or "image_id" not in names:
            return out
        frame = table.drop_duplicates("image_id").set_index("image_id")
        row = frame.index.get_indexer(np.asarray(image_ids, dtype=str))
        col = pd.Index(frame.columns).get_indexer([str(int(l)) for l in label_ids])
        ok = (row >= 0) & (col >= 0)
        out[ok] = frame.to_numpy(dtype=np.float64)[row[ok], col[ok]]
        return out


@dataclass
class _Plan:
    """What the rules' actions select, as positions: for each rule with an action, the hits
    (rows of `hits`) it sets aside or queues, or the label rows (of `rows`) it drops.
    Counting works on these arrays; Change objects are made only to apply them."""

    rows: pd.DataFrame
    hits: pd.DataFrame
    ruleset: RuleSet
    picked: dict[int, np.ndarray] = field(default_factory=dict)  # rule index -> hits or label rows
    queued: dict[int, np.ndarray] = field(default_factory=dict)  # drop-labels rule index -> hits sent to review
    decisions: np.ndarray | None = None  # per hit: what its rule does there and why

    def counts(self) -> dict[str, int]:
        """set_aside: distinct images; drop_label: distinct (image, label); review: (image, rule) items."""
        rules = list(self.ruleset)
        image = self.hits["_image"].to_numpy(np.int64)
        aside = [self.picked[n] for n in self.picked if rules[n].action == "set-aside"]
        review = [self.picked[n] for n in self.picked if rules[n].action == "review"] + list(self.queued.values())
        dropped = [self.picked[n] for n in self.picked if rules[n].action == "drop-labels"]
        pairs = np.zeros((0, 2), dtype=np.int64)
        if dropped:
            sel = np.concatenate(dropped)
            pairs = np.stack([image[self._hit_of_row()[sel]], self.rows["label"].to_numpy(np.int64)[sel]], axis=1)
        return {"set_aside": len(np.unique(image[np.concatenate(aside)])) if aside else 0,
                "drop_label": len(np.unique(pairs, axis=0)) if len(pairs) else 0,
                "review": int(sum(len(x) for x in review))}

    def _hit_of_row(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.hits)), (self.hits["_stop"] - self.hits["_start"]).to_numpy())

    def changes(self) -> tuple[list[Change], pd.DataFrame]:
        """The ledger changes and the review-queue items (image_id, rule, reason)."""
        changes: list[Change] = []
        reviews = []
        hits, rules = self.hits, list(self.ruleset)
        if not len(hits):
            return changes, pd.DataFrame(columns=["image_id", "rule", "reason"])
        descriptions = np.array([r.description for r in rules], dtype=object)[hits["_rule"].to_numpy()]
        labels = hits["labels"].to_numpy(dtype=object)
        reason = np.where(labels != "", descriptions + " (" + labels + ")", descriptions)
        reason = np.where(self.decisions != hits["action"].to_numpy(dtype=object), reason + ": " + self.decisions, reason)
        image_id = hits["image_id"].to_numpy(dtype=object)
        hit_of_row, label = self._hit_of_row(), self.rows["label"].to_numpy()
        for n, sel in self.picked.items():
            rule = rules[n]
            if rule.action == "set-aside":
                changes += [Change("set_aside", iid, reason=why, rule=rule.id)
                            for iid, why in zip(image_id[sel].tolist(), reason[sel].tolist())]
            elif rule.action == "review":
                reviews.append(pd.DataFrame({"image_id": image_id[sel], "rule": rule.id, "reason": reason[sel]}))
            else:
                h = hit_of_row[sel]
                changes += [Change("drop_label", iid, lab, reason=why, rule=rule.id) for iid, lab, why in
                            zip(image_id[h].tolist(), label[sel].tolist(), reason[h].tolist())]
        for n, sel in self.queued.items():
            reviews.append(pd.DataFrame({"image_id": image_id[sel], "rule": rules[n].id, "reason": reason[sel]}))
        review_items = pd.concat(reviews, ignore_index=True) if reviews else pd.DataFrame(columns=["image_id", "rule", "reason"])
        return changes, review_items


def _plan(rows: pd.DataFrame, hits: pd.DataFrame, ruleset: RuleSet, taxonomy: Taxonomy,
          probs: Evidence | None = None) -> _Plan:
    """What the rules' actions call for: the hits each set-aside or review rule acts on, and
    the label rows each drop-labels rule drops (or the hits it sends to review, `_sides`)."""
    plan = _Plan(rows, hits, ruleset, decisions=hits["action"].to_numpy(dtype=object).copy())
    if not len(hits):
        return plan
    rule_of_hit, rule_of_row = hits["_rule"].to_numpy(), rows["_rule"].to_numpy()
    hit_of_row = plan._hit_of_row()
    for n, rule in enumerate(ruleset):
        if rule.action in ("set-aside", "review"):
            plan.picked[n] = np.flatnonzero(rule_of_hit == n)
        elif rule.action == "drop-labels":
            # Only active labels: a quarantined one is already out of use, and restore would
            # bring it back as active rather than quarantined.
            usable = np.flatnonzero((rule_of_row == n) & (rows["label"].to_numpy() >= 0) & (rows["status"].to_numpy() == 0))
            sides = _sides(rows.iloc[usable], hit_of_row[usable], hits, taxonomy, probs)
            plan.picked[n], plan.queued[n] = usable[sides.drop], sides.review
            plan.decisions[sides.hits] = sides.why
    return plan


@dataclass
class _Sides:
    drop: np.ndarray  # positions (into the rows given) of the labels to drop
    review: np.ndarray  # hits to send to review instead
    hits: np.ndarray  # the hits decided
    why: np.ndarray  # per decided hit: which side goes, and why


def _sides(rows: pd.DataFrame, hit: np.ndarray, hits: pd.DataFrame, taxonomy: Taxonomy,
           probs: Evidence | None) -> _Sides:
    """Which side of each drop-labels hit goes: the culprits (the rule's b side) or the
    context (a side, e.g. the category), whichever the model finds less likely (the larger
    probability of each side's labels; only when one side reaches MIN_EVIDENCE); without
    probabilities for the image (or that evidence), the culprits
    only when they are fewer than the labels kept: otherwise (a tie included) the image goes
    to review rather than lose them.

    rows: the hit's active label rows (label, culprit); hit: (R,) the hit of each row."""
    culprit, label = rows["culprit"].to_numpy(bool), rows["label"].to_numpy(np.int64)
    decided, local = np.unique(hit, return_inverse=True)
    m = len(decided)
    image_id = hits["image_id"].to_numpy(dtype=object)[decided]
    p = probs.at(image_id[local], label) if probs is not None and len(label) else np.full(len(label), np.nan)
    p_b, p_a = np.full(m, -np.inf), np.full(m, -np.inf)
    np.maximum.at(p_b, local[culprit], np.nan_to_num(p[culprit], nan=-np.inf))
    np.maximum.at(p_a, local[~culprit], np.nan_to_num(p[~culprit], nan=-np.inf))
    n_b, n_a = np.bincount(local[culprit], minlength=m), np.bincount(local[~culprit], minlength=m)
    judged = np.isfinite(p_a) & np.isfinite(p_b) & (np.maximum(p_a, p_b) >= MIN_EVIDENCE)
    drop_a = judged & (p_a < p_b)
    review = ~judged & (n_b >= n_a)  # a tie is no evidence either way: a person decides
    go = np.where(culprit, ~drop_a[local] & ~review[local], drop_a[local])
    names = taxonomy.names(label)
    side_b = [[] for _ in range(m)]
    side_a = [[] for _ in range(m)]
    for k, name, c in zip(local.tolist(), names, culprit.tolist()):
        (side_b if c else side_a)[k].append(name)
    why = np.array([_why(", ".join(b), ", ".join(a), pb, pa, r, da, j) for b, a, pb, pa, r, da, j in
                    zip(side_b, side_a, p_b, p_a, review, drop_a, judged)], dtype=object)
    return _Sides(np.flatnonzero(go), decided[review], decided, why)


def _why(b: str, a: str, p_b: float, p_a: float, review: bool, drop_a: bool, judged: bool) -> str:
    if review:
        return (f"to review: dropping {b} would remove as many labels as it keeps ({a}) or more, and no "
                f"cross-fitted probability says which side is wrong")
    if drop_a:
        return f"drops {a}: the model finds it less likely (p {p_a:.2f}) than {b} (p {p_b:.2f})"
    if judged:
        return f"drops {b}: the model finds it less likely (p {p_b:.2f}) than {a} (p {p_a:.2f})"
    return f"drops {b}: fewer labels than the side kept ({a}), and no cross-fitted probability says which is wrong"


# ---- the HTML page -------------------------------------------------------------------------------
def _intro(result: CheckResult) -> str:
    flagged = result.hits["image_id"].nunique() if len(result.hits) else 0
    state = "Applied." if result.applied else "Dry run: nothing was changed (rerun with --apply)."
    text = (f"{result.images_checked:,} active images ({', '.join(result.splits)}) checked against "
            f"{len(result.rules)} rules; {flagged:,} flagged. {state}")
    return text + (" Notes: " + " ".join(result.notes) if result.notes else "")


def _sections(result: CheckResult, cards_per_rule: int) -> list[Section]:
    sections = []
    for n, res in enumerate(result.rules.values()):
        mine = result.hits[result.hits["_rule"] == n]
        split_text = ", ".join(f"{s} {c:,}" for s, c in res.by_split.items()) or "none"
        text = (f"{res.description}. Severity {res.severity}; action {res.action}. "
                f"Images hit: {res.images:,} ({split_text}). " + " ".join(d.rstrip(".") + "." for d in res.details))
        section = Section(f"{res.id}: {res.images:,} images", text)
        if len(mine):
            # An even spread over the hits, not just the first ones in ledger order.
            pick = np.unique(np.linspace(0, len(mine) - 1, min(cards_per_rule, len(mine))).astype(int))
            sample = mine.iloc[pick]
            cards = [Card(iid, path if isinstance(path, str) else None, [split, labels or "(no labels)", decision])
                     for iid, split, labels, path, decision in
                     zip(sample["image_id"], sample["split"], sample["labels"], sample["path"], sample["decision"])]
            section.rows = [cards[k:k + 6] for k in range(0, len(cards), 6)]
        sections.append(section)
    return sections
