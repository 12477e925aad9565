"""What past commands did to the ledger, from the ledger alone: `ifa history`.

Every change (an import, an image set aside, a label dropped or added, an image queued for
review) is an event, written in the same transaction as the change. So the per-image
report of any apply can be rebuilt from the event log, also when the command was killed
after its commit and before its report file was written (measured before reports became
atomic: such a kill left `reports/check-attributes-*.csv` cut short and the rerun found
nothing new, so that apply's report was lost for good).

An *apply* is one transaction's events: consecutive events with the same time stamp and
command (`apply_changes` stamps a whole transaction with one time), an import's events
ending at its `import` event. Two applies of the same command within the same second
with no other event between them read as one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ..errors import IfaError
from ..taxonomy import Taxonomy
from . import reports
from .ledger import Ledger
from .ledger import history as ledger_history

# event kind -> what the report's `change` column says
CHANGES = {"set_aside": "set aside", "restored": "restored", "label_dropped": "label dropped",
           "label_added": "label added", "label_restored": "label restored", "import": "import",
           "review_pending": "queued for review", "review_cancelled": "review cancelled"}
REPORT_COLUMNS = ["apply", "time", "command", "change", "image_id", "label_id", "label", "old", "new", "reason",
                  "rule", "action"]


@dataclass
class Apply:
    """One transaction's changes. `apply` is its first event id (what `--apply` selects);
    `changes`: event kind -> events; `rules`: rule -> events; `import_id` for an import."""

    apply: int
    time: str
    command: str
    events: int
    images: int
    changes: dict[str, int] = field(default_factory=dict)
    rules: dict[str, int] = field(default_factory=dict)
    import_id: int | None = None
    import_counts: dict = field(default_factory=dict)


@dataclass
class History:
    """The applies that matched, oldest first, and their events (`events`: the event
    log's columns plus `apply`)."""

    applies: list[Apply]
    events: pd.DataFrame

    def to_dict(self) -> dict:
        return {"applies": [asdict(a) for a in self.applies]}


def history(ledger: Ledger, *, rule: str | None = None, command: str | None = None, since: str | None = None,
            apply: int | None = None) -> History:
    """The applies recorded in the ledger, oldest first.

    rule: only applies with an event of this rule (e.g. `duplicate`, a check-attributes
        rule id, `import`), and only those events. command: only applies of commands
        containing this text (`import`, `check-attributes`, `curate dedup`). since: only
        applies from this UTC time on (ISO: `2026-11-29` or `2026-11-29T20:00`). apply:
        only the apply with this id.
    Returns a History. Raises IfaError for a `since` that is not a date or time.
    """
    events = ledger_history.events(ledger, _since(since) if since else None)
    events["apply"] = _apply_ids(events)
    if command:
        events = events[events["command"].str.contains(command, case=False, regex=False)]
    if apply is not None:
        events = events[events["apply"] == int(apply)]
    if rule:
        is_import = events["kind"].eq("import") & events["rule"].fillna("").str.startswith("import:")
        events = events[events["rule"].eq(rule) | (is_import & (rule == "import"))]
    events = events.reset_index(drop=True)
    applies = []
    for apply_id, group in events.groupby("apply", sort=True):
        first = group.iloc[0]
        a = Apply(int(apply_id), first["time"], first["command"], len(group), int(group["image_id"].nunique()),
                  group["kind"].value_counts().to_dict(), group["rule"].fillna("").value_counts().to_dict())
        imports = group[group["kind"] == "import"]
        if len(imports):
            a.import_id = int(imports.iloc[-1]["rule"].split(":", 1)[1])
            a.import_counts = json.loads(imports.iloc[-1]["new"] or "{}")
        applies.append(a)
    return History(applies, events)


def run(ledger: Ledger, taxonomy: Taxonomy, csv: Path | None = None, **select) -> tuple[History, Path | None]:
    """What `ifa history` does: `history(ledger, **select)` and, with `csv`, its per-image
    report written there, both read in one snapshot of the ledger (an apply committed
    meanwhile is in neither or both). Returns the History and the CSV written (or None).
    Raises IfaError as `history` does."""
    with ledger.snapshot():
        result = history(ledger, **select)
        frame = report_frame(ledger, result, taxonomy) if csv else None
    return result, (reports.write_csv(Path(csv), frame) if frame is not None else None)


def report_frame(ledger: Ledger, result: History, taxonomy: Taxonomy) -> pd.DataFrame:
    """The per-image report of the applies in `result`: one row per event (change, image,
    label, old and new state, reason, rule), and for an import one row per problem it
    recorded (change `import problem`, the problem in `old`, its detail in `reason`, what
    was done in `action`: the rows of that import's `reports/import-*.csv`)."""
    ev = result.events
    names = {i: l.name for i, l in taxonomy.labels.items()}
    rows = pd.DataFrame({
        "apply": ev["apply"], "time": ev["time"], "command": ev["command"],
        "change": ev["kind"].map(lambda k: CHANGES.get(k, k)), "image_id": ev["image_id"],
        "label_id": ev["label_id"].map(lambda v: "" if pd.isna(v) else int(v)),
        "label": ev["label_id"].map(lambda v: "" if pd.isna(v) else names.get(int(v), f"<unknown {int(v)}>")),
        "old": ev["old"], "new": ev["new"], "reason": ev["reason"], "rule": ev["rule"], "action": "",
    }, columns=REPORT_COLUMNS)
    imports = {a.import_id: a for a in result.applies if a.import_id is not None}
    issues = ledger_history.import_issues(ledger, list(imports))
    if len(issues):
        of = issues["import_id"].map(imports)
        rows = pd.concat([rows, pd.DataFrame({
            "apply": of.map(lambda a: a.apply), "time": of.map(lambda a: a.time), "command": of.map(lambda a: a.command),
            "change": "import problem", "image_id": issues["image_id"], "label_id": "", "label": "",
            "old": issues["problem"], "new": "", "reason": issues["detail"],
            "rule": "import:" + issues["import_id"].astype(str), "action": issues["action"]},
            columns=REPORT_COLUMNS)], ignore_index=True).sort_values("apply", kind="stable")
    return rows.fillna("").reset_index(drop=True)


def write_report(ledger: Ledger, result: History, taxonomy: Taxonomy, path: Path) -> Path:
    """Write `report_frame` as CSV to `path` (atomically, cells neutralised for
    spreadsheets); returns the path."""
    with ledger.snapshot():
        frame = report_frame(ledger, result, taxonomy)
    return reports.write_csv(Path(path), frame)


def _apply_ids(events: pd.DataFrame) -> pd.Series:
    """Each event's apply: the first event id of its run of (time, command), a new run
    starting after every `import` event (an import's own transaction ends with it)."""
    if not len(events):
        return pd.Series([], dtype="int64")
    key = events["time"] + "\x00" + events["command"]
    starts = (key != key.shift()) | events["kind"].shift().eq("import")
    return events["event_id"].where(starts).ffill().astype("int64")


def _since(text: str) -> str:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise IfaError(f"--since {text!r} is not a date or time; use e.g. 2026-11-29 or 2026-11-29T20:00 (UTC).") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")
