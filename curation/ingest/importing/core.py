"""The one import pipeline every source (imat.py, csvfile.py, folder.py) goes through.

A source yields `Entry` rows (and `Issue`s it found on its own) in its order; `stage` puts them
chunk by chunk into TEMP tables of the ledger's connection (ledger/staging.py), where the
checks that need the whole input run as SQL (an id seen before, ids already in another split);
`finish` resolves labels, counts and words the problems, and records the import in one
transaction. Bad input never crashes an import: each problem is counted and written to
`reports/import-<time>.csv`; with on_error="skip" (the default) the problem is quarantined or
skipped as PROBLEMS says, and with on_error="fail" nothing is written.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from ....errors import IfaError, UnknownLabel
from ....progress import Progress
from ....taxonomy import Taxonomy
from ... import reports
from ...ledger import check_splits
from ...ledger.raw_labels import storable_id
from ...workspace import Workspace

if TYPE_CHECKING:
    from ...ledger.staging import ImportStaging

ON_ERROR = ("skip", "fail")

# problem -> what on_error="skip" does about it
# (a problem may say what it did itself, when that differs: a missing file of an image with
# a URL leaves the image active, since `ifa fetch` can still get it)
PROBLEMS = {
    "malformed-entry": "skipped",
    "ragged-row": "skipped",  # a CSV row with more or fewer fields than the header
    "unknown-label": "label quarantined",
    "duplicate-entry": "merged",  # listed twice with the same labels: harmless
    "conflicting-entries": "image set aside",
    "conflicting-sources": "first source kept",
    "other-split": "skipped",
    "missing-file": "image set aside",
    "unsupported-url": "image set aside",
    "unreadable-path": "skipped",  # a symlink loop or a link to nothing
    "link-outside": "skipped, no path stored",  # a link whose real file is outside the imported folder
    "bad-id": "skipped",  # an id with a NUL character, or longer than LIMITS allow
    "bad-url": "skipped",  # a url with a NUL character, or longer than LIMITS allow
    "annotation-without-image": "skipped",
}
HARMLESS = {"duplicate-entry"}
KEPT_ACTIVE = "kept active: `ifa fetch` can download it from its URL"
REPORT_COLUMNS = ("image_id", "problem", "detail", "action")
_INTEGER = re.compile(r"^[+-]?\d+$")

# Entries staged per SQL statement. A chunk of annotations holds its entries' label strings as
# ijson made them: 20k-entry chunks peak at half the memory of 100k for the same CPU
# (benchmarks/import_scale.py). A module constant so tests can stage in tiny chunks.
STAGE_CHUNK = 20_000


@dataclass(frozen=True)
class Limit:
    most: int
    why: str


# The most each part of an input may hold; more is a problem naming its entry (a label is
# quarantined, an entry skipped), found before it is staged, so a huge value is read once and
# never copied per step. A JSON file nested deeper is refused before it is parsed.
LIMITS = {
    "id": Limit(1024, "characters: 4x the 255-byte file name limit of common file systems (ids name files on export)"),
    "label": Limit(256, "characters (digits for a numeric id): 10x the longest taxonomy name"),
    "url": Limit(8192, "characters: the request-line limit of common web servers, so a longer URL cannot be fetched"),
    "depth": Limit(64, "levels of JSON nesting: the challenge format needs 4, and the parser's memory grows with depth"),
}


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem: the image it concerns (None when the entry has no id), its kind (a key
    of PROBLEMS), what exactly was wrong, and the action taken when it differs from the kind's."""

    image_id: str | None
    problem: str
    detail: str
    action: str | None = None


@dataclass(slots=True)  # one per image read: slots make it cheaper to build
class Entry:
    """One image as a source names it, before staging."""

    n: int  # the entry's place in its source (list index, CSV line, sorted file position)
    image_id: str
    url: object = None  # text; JSON's other values are reported and dropped by the imat source
    path: str | None = None  # the local file (real path)
    where: str | None = None  # what the source named (a CSV cell, a file path), for repeats' wording
    labels: tuple | None = None  # raw label values; None when the source gives no labels here
    split: str | None = None  # this entry's split when the source names one per entry
    problems: tuple[Issue, ...] = ()  # problems of the entry's own source cell, reported once per id
    set_aside: str | None = None  # why the image is set aside, when its own cell says so


@dataclass(frozen=True)
class Staged:
    """The first staged entry of an id: its place, url text and kind, and what its source named."""

    n: int
    url: str | None
    kind: int
    where: str | None

    @property
    def url_value(self) -> object:
        return json.loads(self.url) if self.kind == 2 else self.url


@dataclass
class Issues:
    """The problems an import found, in the order they are reported, and the images it sets aside."""

    found: list[Issue] = field(default_factory=list)
    set_aside: dict[str, str] = field(default_factory=dict)  # image_id -> reason

    def add(self, image_id: str | None, problem: str, detail: str, action: str | None = None) -> None:
        self.found.append(Issue(image_id, problem, detail, action))


# A repeat's wording: (the repeated entry, the first, whether its labels equal the first's or
# None when it has none) -> (its issues, why the image is set aside or None).
Repeat = Callable[[Entry, Staged, "bool | None"], tuple[list[Issue], "str | None"]]


@dataclass
class ImportResult:
    """What this import did (a rerun counts only what it added). `problems` counts each
    problem kind; `report` is the CSV listing every problem with its image and the action
    taken ("" when there was none). When nothing was new, nothing was recorded, and the
    report lists what was skipped: ids in another split, and when none of the input was
    already imported, every problem."""

    format: str
    source: str
    split: str
    images_read: int
    images_added: int
    images_existing: int
    labels_added: int
    set_aside: int
    quarantined_labels: int
    problems: dict[str, int] = field(default_factory=dict)
    report: str = ""
    import_id: int | None = None  # the import's row in the ledger; None when nothing was new
    nothing_new: bool = False  # a rerun that found everything already imported: nothing recorded
    actions: dict[str, str] = field(default_factory=dict)  # problem -> what was done, with counts when mixed
    splits: dict[str, int] = field(default_factory=dict)  # images read per split, with a split column

    def to_dict(self) -> dict:
        out = asdict(self)
        if not self.splits:
            del out["splits"]
        return out


@dataclass(frozen=True)
class Source:
    """What an import reads and how it records it."""

    format: str  # imat | csv | folder
    path: Path
    split: str  # the split of every entry that names none
    on_error: str
    key_style: str | None = None  # imat only: camel or snake keys
    int_ids: bool = False  # imat only: every id was an integer


def check_args(split: str, on_error: str) -> None:
    check_splits(split)
    if on_error not in ON_ERROR:
        raise IfaError(f"--on-error must be 'skip' or 'fail', not {on_error!r}.")


def text_problem(kind: str, value) -> str | None:
    """What is wrong with an id or url (a NUL character, or over its limit in LIMITS), or None."""
    if not isinstance(value, str):
        return None
    most = LIMITS[kind].most
    if len(value) > most:
        return f"its {kind} is {len(value):,} characters, over the limit of {most:,}"
    if "\x00" in value:
        return f"its {kind} {clip(value)!r} contains a NUL character"
    return None


def clip(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


# ---- labels --------------------------------------------------------------------------------
class LabelCodes:
    """A code per distinct raw label value (as json_label gives it): `values[code]` is the
    value. Staged annotations hold codes, so each value is one Python object however often
    it is used."""

    def __init__(self) -> None:
        self.values: list = []
        self.codes: dict[object, int] = {}  # raw value -> code
        self.keyed: dict[tuple[type, object], int] = {}  # (type, JSON value) -> code

    def code(self, x) -> int:
        """The code of one label value; TypeError when it cannot be one (a list)."""
        key = (type(x), x)
        code = self.keyed.get(key)
        if code is None:
            value = json_label(x)
            code = self.codes.get(value)
            if code is None:
                code = self.codes[value] = len(self.values)
                self.values.append(value)
            self.keyed[key] = code
        return code

    def of(self, raw: Iterable) -> tuple[int, ...]:
        """The distinct codes of raw values, in their order."""
        return tuple(dict.fromkeys(self.code(x) for x in raw))


def json_label(value):
    """A label value from JSON as ids and names are compared: true, null and 1.5 as their
    JSON text, so a set of labels never merges true with 1 or 1.0 (they hash alike)."""
    return json.dumps(value) if isinstance(value, (bool, float)) or value is None else value


class LabelResolver:
    """Raw label value -> a taxonomy id, or (what is wrong, the value kept quarantined).

    A value is an id or a name, or (group, text) for a column read in one group only.
    `mapping` maps (group, source text) to a label name or id, for sources that name labels
    their own way; a value of no group is mapped when exactly one group maps its text."""

    def __init__(self, taxonomy: Taxonomy, mapping: dict[tuple[str, str], str] | None = None) -> None:
        self.taxonomy = taxonomy
        self.mapping = {(g, _fold(s)): label for (g, s), label in (mapping or {}).items()}
        anywhere: dict[str, set] = {}
        for (g, s), label in self.mapping.items():
            anywhere.setdefault(s, set()).add((g, label))
        self.anywhere = {s: next(iter(hits)) for s, hits in anywhere.items() if len(hits) == 1}

    def __call__(self, raw) -> int | tuple[str, int | str]:
        group = None
        if isinstance(raw, tuple):
            group, raw = raw
        wrong = _label_problem(raw)
        if wrong:
            return wrong
        if isinstance(raw, str) and self.mapping:
            hit = (group, self.mapping.get((group, _fold(raw)))) if group else self.anywhere.get(_fold(raw))
            if hit is not None and hit[1] is not None:
                group, raw = hit
        if isinstance(raw, str) and _INTEGER.match(raw.strip()):
            raw = int(raw.strip())
        if isinstance(raw, int):
            return self._by_id(raw, group)
        return self._by_name(unicodedata.normalize("NFC", str(raw).strip()), group)

    def _by_id(self, raw: int, group: str | None) -> int | tuple[str, int | str]:
        if not storable_id(raw):
            return f"Unknown label id {raw}: outside the range of label ids; kept as text.", str(raw)
        try:
            label = self.taxonomy.by_id(raw)
        except UnknownLabel as exc:
            return str(exc), raw
        if group and label.group != group:
            return f"Label id {raw} is a {label.group} label, not {group}.", raw
        return label.id

    def _by_name(self, name: str, group: str | None) -> int | tuple[str, int | str]:
        try:
            return self.taxonomy.by_name(f"{group}:{name}" if group else name).id
        except UnknownLabel as exc:
            message = f"Unknown {group} label {name!r}." if group else str(exc)
            return message, name


def _label_problem(raw) -> tuple[str, str] | None:
    """(what is wrong, the text kept quarantined) for a label value over the label limit or
    with a NUL character (SQLite text ends at a NUL), else None."""
    most = LIMITS["label"].most
    if isinstance(raw, int) and not isinstance(raw, bool) and raw.bit_length() > most * 3.32:  # over `most` digits
        text = str(raw)  # the imat source reads numbers of up to LONGEST_NUMBER digits
        return f"Label id {clip(text)} has {len(text):,} digits, over the limit of {most}.", clip(text)
    if isinstance(raw, str) and len(raw) > most:
        return f"Label {clip(raw)!r} is {len(raw):,} characters, over the limit of {most}.", clip(raw)
    if isinstance(raw, str) and "\x00" in raw:
        return f"Label {clip(raw)!r} contains a NUL character.", raw.replace("\x00", "\ufffd")
    return None


def _fold(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", str(text)).split()).casefold()


def same_labels(image_id: str, where: str) -> Issue:
    return Issue(image_id, "duplicate-entry", f"{where} repeats the image with the same labels")


def different_labels(image_id: str, where: str) -> Issue:
    return Issue(image_id, "conflicting-entries", f"{where} lists the image again with different labels")


DIFFERENT_LABELS = "import: listed twice with different labels"


# ---- staging -------------------------------------------------------------------------------
def _row(entry: Entry) -> list:
    url = entry.url
    if url is None:
        return [entry.n, entry.image_id, None, 0, 0, entry.where, entry.split]
    if isinstance(url, str):
        return [entry.n, entry.image_id, url, 1, int(bool(url)), entry.where, entry.split]
    return [entry.n, entry.image_id, json.dumps(url), 2, int(bool(url)), entry.where, entry.split]


class Stager:
    """Stages a source's entries in `staged`, STAGE_CHUNK at a time, reporting in source order:
    standalone issues, each new entry's own problems, and repeats as `repeat` words them
    (labels of a repeat that differ are united and the image set aside)."""

    def __init__(self, staged: ImportStaging, issues: Issues, repeat: Repeat, codes: LabelCodes | None = None):
        self.staged, self.issues, self.repeat = staged, issues, repeat
        self.codes = codes or LabelCodes()
        self.odd_urls: list[int] = []  # positions of first entries whose url is not text
        self.pending: list[Entry | Issue] = []
        self.entries = 0

    def run(self, items: Iterable[Entry | Issue], chunk: int | None = None) -> "Stager":
        chunk = chunk or STAGE_CHUNK
        for item in items:
            self.pending.append(item)
            if isinstance(item, Entry):
                self.entries = item.n + 1
            if len(self.pending) >= chunk:
                self.flush()
        self.flush()
        return self

    def flush(self) -> None:
        staged = self.staged
        entries = [e for e in self.pending if isinstance(e, Entry)]
        repeats = staged.add_images([_row(e) for e in entries], self.entries)
        staged.add_paths([(e.n, e.path) for e in entries if e.path is not None and e.n not in repeats])
        rows: list[list] = []  # [position, n, codes] of images first labelled in this chunk
        row_of: dict[int, list] = {}
        for item in self.pending:
            if isinstance(item, Issue):
                self.issues.found.append(item)
            elif item.n in repeats:
                self._repeated(item, row_of)
            else:
                self._first(item, rows, row_of)
        staged.add_annotations(rows)
        self.pending.clear()

    def _first(self, entry: Entry, rows: list, row_of: dict) -> None:
        self.issues.found.extend(entry.problems)
        if entry.set_aside:
            self.issues.set_aside[entry.image_id] = entry.set_aside
        if entry.url is not None and not isinstance(entry.url, str):
            self.odd_urls.append(entry.n)
        if entry.labels is not None:
            row_of[entry.n] = row = [entry.n, entry.n, list(self.codes.of(entry.labels))]
            rows.append(row)

    def _repeated(self, entry: Entry, row_of: dict) -> None:
        first = Staged(*self.staged.first(entry.image_id))
        same = None
        if entry.labels is not None:
            codes = self.codes.of(entry.labels)
            row = row_of.get(first.n)
            before = tuple(row[2]) if row is not None else self.staged.codes(first.n)
            same = set(codes) == set(before)
            if not same:
                united = list(dict.fromkeys(before + codes))
                if row is not None:
                    row[2] = united
                else:
                    self.staged.set_codes(first.n, united)
        found, reason = self.repeat(entry, first, same)
        self.issues.found.extend(found)
        if reason:
            self.issues.set_aside[entry.image_id] = reason


# ---- finishing -----------------------------------------------------------------------------
def finish(ws: Workspace, source: Source, issues: Issues, staged: ImportStaging, values: list, progress: Progress,
           resolver: LabelResolver | None = None) -> ImportResult:
    """Check, resolve and record an import staged in `staged` (label values by code in
    `values`): ids in another split are skipped, unknown labels quarantined, then the import
    is refused (on_error="fail") or recorded, and its report written."""
    images_read = staged.images_read
    elsewhere = dict(staged.splits(source.split, same=False))
    for iid in sorted(elsewhere):
        issues.add(iid, "other-split", f"already imported into {elsewhere[iid]}")
    staged.remove(list(elsewhere))  # skipped: neither the image nor its labels are written
    quarantined = _resolve_labels(issues, staged, values, resolver or LabelResolver(ws.taxonomy))
    asked = list(dict.fromkeys(issue.image_id for issue in issues.found if issue.image_id is not None))
    already = {iid for iid, _ in staged.splits(source.split, same=True, image_ids=asked)}
    staged.set_aside({iid: reason for iid, reason in issues.set_aside.items() if iid not in elsewhere})
    # Problems with images this split already holds were handled by the import that added
    # them: a rerun neither records nor reports them again (it did nothing about them).
    found = [issue for issue in issues.found if issue.image_id not in already]
    return _conclude(ws, source, found, staged, quarantined, images_read, progress)


def _resolve_labels(issues: Issues, staged: ImportStaging, values: list, resolve: LabelResolver) -> list:
    """Resolve each distinct raw value (`values`, by code) once; known codes are staged as
    label ids, and the unknown ones are reported and returned as quarantined (image_id, id or
    raw text, reason), in the order images were first labelled and each image's values in
    their order."""
    known: dict[int, int] = {}
    unknown: dict[int, tuple[str, int | str]] = {}
    for code, raw in enumerate(values):
        hit = resolve(raw)
        if isinstance(hit, int):
            known[code] = hit
        else:
            unknown[code] = hit
    staged.set_label_ids(known)
    quarantined = []
    if unknown:
        for iid, codes in staged.annotated_with(list(unknown)):
            for code in codes:
                hit = unknown.get(code)
                if hit is not None:
                    message, kept = hit
                    issues.add(iid, "unknown-label", message)
                    quarantined.append((iid, kept, "unknown-label"))
    return quarantined


def _actions(rows: list[tuple]) -> dict[str, str]:
    """problem -> what was done (with counts when it varied per image)."""
    taken: dict[str, Counter] = {}
    for _, problem, _, action in rows:
        taken.setdefault(problem, Counter())[action] += 1
    return {p: next(iter(c)) if len(c) == 1 else ", ".join(f"{n:,} {a}" for a, n in sorted(c.items()))
            for p, c in taken.items()}


def _conclude(ws: Workspace, source: Source, found: list[Issue], staged: ImportStaging, quarantined: list,
              images_read: int, progress: Progress) -> ImportResult:
    """Refuse (on_error="fail") or record the import, then write the report."""
    skip = source.on_error == "skip"
    rows = [(i.image_id, i.problem, i.detail, (i.action or PROBLEMS[i.problem]) if skip else "import refused")
            for i in found]
    counts = dict(Counter(problem for _, problem, _, _ in rows))
    serious = {k: v for k, v in counts.items() if k not in HARMLESS}
    if not skip and serious:
        report = _write_report(ws, rows)  # nothing is written to the ledger: the report is all there is
        listed = ", ".join(f"{v} {k}" for k, v in sorted(serious.items()))
        raise IfaError(f"Import refused, nothing was written: {listed}. Each is listed in {report}; "
                       "fix the input or rerun with --on-error skip to quarantine them.")
    with progress.task(f"writing {staged.offered:,} images to the ledger") as task:
        written = ws.ledger.record_import(
            staging=staged, format=source.format, source=str(Path(source.path).resolve()), split=source.split,
            quarantined=quarantined, issues=rows, key_style=source.key_style, int_ids=source.int_ids,
            summary={"problems": counts})
        task.advance()
    nothing_new = written["import_id"] is None
    if nothing_new and written["images_existing"]:  # a rerun: its other problems were reported the first time
        rows = [row for row in rows if row[1] == "other-split"]
        counts = dict(Counter(problem for _, problem, _, _ in rows))
    # The report is written after the commit (a kill before it leaves no report of an import
    # that never happened) and atomically; `ifa history --csv` rebuilds it from the ledger.
    if not rows:  # no problems, no report file; still sweep what killed report writers left
        reports.sweep_dead_temps(ws.reports_dir)
    report = str(_write_report(ws, rows)) if rows else ""
    return ImportResult(
        format=source.format, source=str(source.path), split=source.split, images_read=images_read,
        images_added=written["images_added"], images_existing=written["images_existing"],
        labels_added=written["labels_added"], set_aside=written["set_aside"],
        quarantined_labels=written["quarantined_added"], problems=counts, report=report,
        import_id=written["import_id"], nothing_new=nothing_new, actions=_actions(rows),
        splits=staged.split_counts(source.split),
    )


def _write_report(ws: Workspace, rows: list[tuple]) -> Path:
    # The csv module (reports.open_csv), not pandas: +85 MB RSS on top of the import's peak.
    path = ws.report_path("import", "csv")
    with reports.open_csv(path) as writer:
        writer.writerow(REPORT_COLUMNS)
        writer.writerows(rows)
    return Path(path)
