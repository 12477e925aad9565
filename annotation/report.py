"""`ifa review report`: one HTML page (and PNGs) a lead reads to see who is careless.

What it shows, from the ledger (no server): per annotator progress, gold accuracy,
agreement with co-annotators and accuracy against the final decisions, with anyone far
below the pool flagged; the annotator-by-annotator agreement matrix; the most confused
label pairs per group with example thumbnails; answers per hour per annotator.
"""

from __future__ import annotations

import html
import statistics
import textwrap
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np

from ..curation.ledger.review import ReviewStore
from ..curation import reports
from ..curation.reports.html import thumbnail_uri
from ..curation.workspace import Workspace
from . import aggregation, quality, state

# An annotator is flagged when a rate is this far below the pool's median: the gap a
# random answerer leaves on the sample (gold accuracy ~0.0 vs ~0.8, agreement ~0.05 vs
# ~0.6); ordinary differences between careful people stay well inside it.
FLAG_GAP = 0.25
THUMBS = 4


@dataclass
class ReportResult:
    """html: the page; pngs: the plots; annotators: `quality.annotators` rows with
    accuracy_vs_final added; flagged: {email: reasons}."""

    round: str
    html: str
    pngs: list[str] = field(default_factory=list)
    annotators: list[dict] = field(default_factory=list)
    flagged: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0
    undecided: dict[str, list[str]] = field(default_factory=dict)  # far below, too few answers to tell

    def to_dict(self) -> dict:
        return asdict(self)


def _flags(rows: list[dict], gap: float, min_answers: int) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """({email: reasons} flagged, {email: notes} undecided). Flagged: an annotator whose gold
    accuracy or overall agreement has a 95% interval lying wholly below the pool's median
    (annotator roles only; the median of the interval centres, so that three right answers
    out of three do not make a perfect yardstick). Undecided: a rate `gap` or more below the
    median whose interval still holds it, with how many more answers would tell. A rate
    over fewer than `min_answers` answers is not judged."""
    flagged: dict[str, list[str]] = {}
    pending: dict[str, list[str]] = {}
    people = [r for r in rows if not r["role"].startswith("tiebreak")]
    for label, get in (("gold accuracy", lambda r: (r["gold"]["accuracy"], r["gold"]["answered"])),
                       ("agreement", lambda r: (r["agreement"]["overall"], r["agreement"]["compared"]))):
        rates = {r["email"]: get(r) for r in people if get(r)[0] is not None and get(r)[1] >= min_answers}
        if len(rates) < 3:  # a median of two says nothing about who is off
            continue
        bounds = {e: aggregation.wilson(np.array(v * n), np.array(n)) for e, (v, n) in rates.items()}
        median = statistics.median((lo + hi) / 2 for _, lo, hi in bounds.values())
        for email, (v, n) in rates.items():
            _, low, high = bounds[email]
            if high < median:
                flagged.setdefault(email, []).append(f"{label} {v:.2f} over {n} (95% up to {float(high):.2f}) "
                                                     f"vs pool median {median:.2f}")
            elif v <= median - gap:
                more = aggregation.answers_to_tell(v, median, n)
                pending.setdefault(email, []).append(f"{label} {v:.2f} over {n}: {more} more answers would tell")
    return flagged, pending


def report(ws: Workspace, round_name: str | None = None, top_pairs: int = 5) -> ReportResult:
    """Write `reports/review-<round>-<time>.html` and its PNGs; returns what it found.
    Raises IfaError when there is no such round."""
    import time

    start = time.perf_counter()
    store = ReviewStore(ws.ledger)
    view = state.load(store, round_name)
    taxonomy = ws.taxonomy
    rows = quality.annotators(view, taxonomy)
    vs_final = quality.accuracy_vs_decisions(view, store.decisions(view.round_id))
    for r in rows:
        r["accuracy_vs_final"] = vs_final.get(r["email"], {"answered": 0, "accuracy": None})
    flagged, notes = _flags(rows, FLAG_GAP, 3)
    matrix, shared = quality.agreement_matrix(view)
    confused = quality.confused_by_group(view, taxonomy, top=top_pairs)
    through = quality.throughput(view)

    path = ws.report_path(f"review-{view.name}", "html")
    stem = path.with_suffix("")
    pngs = [_plot_matrix(matrix, shared, Path(f"{stem}-agreement.png")),
            _plot_accuracy(rows, flagged, Path(f"{stem}-accuracy.png")),
            _plot_throughput(through, Path(f"{stem}-throughput.png"))]
    paths = store.image_sources(view.round_id).set_index("image_id")["path"].to_dict()
    reports.write_text(path, _page(view, rows, flagged, matrix, shared, confused, pngs, paths, ws.root, notes))
    return ReportResult(view.name, str(path), [str(p) for p in pngs], rows, flagged, time.perf_counter() - start, notes)


# ---- plots --------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")  # no display: write files only
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> None:
    """Write the figure as PNG atomically: a reader never sees half a plot."""
    with reports.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")


def _plot_matrix(matrix, shared, path: Path) -> Path:
    plt = _plt()
    n = len(matrix)
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * max(n, 2), 0.8 + 0.6 * max(n, 2)))
    im = ax.imshow(matrix.to_numpy(dtype=float), vmin=0, vmax=1, cmap="RdYlGn")
    ax.set_xticks(range(n), [e.split("@")[0] for e in matrix.columns], rotation=45, ha="right")
    ax.set_yticks(range(n), [e.split("@")[0] for e in matrix.index])
    for i in range(n):
        for j in range(n):
            v = matrix.iat[i, j]
            if v == v:
                ax.text(j, i, f"{v:.2f}\n({shared.iat[i, j]})", ha="center", va="center", fontsize=7)
    _title(ax, fig, "agreement (share of shared images with the same answer)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def _plot_accuracy(rows: list[dict], flagged: dict, path: Path) -> Path:
    plt = _plt()
    people = [r for r in rows if not r["role"].startswith("tiebreak")]
    names = [r["email"].split("@")[0] + (" (!)" if r["email"] in flagged else "") for r in people]
    series = [("gold accuracy", [r["gold"]["accuracy"] for r in people]),
              ("agreement", [r["agreement"]["overall"] for r in people]),
              ("accuracy vs final", [r["accuracy_vs_final"]["accuracy"] for r in people])]
    fig, ax = plt.subplots(figsize=(2 + 0.9 * max(len(people), 2), 3.5))
    width = 0.27
    for k, (label, values) in enumerate(series):
        xs = [i + (k - 1) * width for i in range(len(people))]
        # A zero keeps a sliver of a bar and its value, so it reads as 0, not as missing.
        bars = ax.bar(xs, [max(v, 0.01) if v is not None else 0 for v in values], width, label=label)
        ax.bar_label(bars, ["n/a" if v is None else f"{v:.2f}" for v in values], fontsize=6, padding=1)
    ax.set_xticks(range(len(people)), names, rotation=45, ha="right")
    ax.set_ylim(0, 1.3)  # room above the bars for the legend
    ax.legend(fontsize=7, loc="upper right", ncols=3)
    _title(ax, fig, "per annotator ((!) = flagged)")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def _plot_throughput(through, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for email, part in through.groupby("email"):
        part = part.sort_values("hour")
        ax.step(part["hour"], part["answers"].cumsum(), where="post", marker=".", label=email.split("@")[0])
    ax.set_ylabel("answers (cumulative)")
    _title(ax, fig, "throughput over the round's time span (UTC)")
    if len(through):
        # The round's own span: a single time per annotator otherwise autoscales to years.
        first, last = through["hour"].min(), through["hour"].max()
        pad = max((last - first) * 0.05, timedelta(minutes=5))
        ax.set_xlim(first - pad, last + pad)
        ax.legend(fontsize=7)
    fig.autofmt_xdate()
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def _title(ax, fig, text: str) -> None:
    """A title wrapped to the figure's width, so a narrow figure does not cut it off."""
    chars = max(20, int(fig.get_figwidth() * 10))
    ax.set_title("\n".join(textwrap.wrap(text, chars)), fontsize=10)


# ---- page ---------------------------------------------------------------------------------------
def _mode(view) -> str:
    """The round's mode; for a short check, also the groups it asks and on how many images."""
    mode = str(view.round.get("mode") or "blind")
    if not view.check_groups:
        return mode
    counts = Counter(g for gs in view.check_groups.values() for g in gs)
    return f"{mode} (a short check asking only {', '.join(f'{g} on {n:,} images' for g, n in counts.items())})"


def _flag_lines(flagged: dict[str, list[str]], notes: dict[str, list[str]]) -> str:
    """The page's verdict: who is flagged (or that no one stands out), and whose rate is far
    below the pool but rests on too few answers to tell."""
    def listing(d):
        return "; ".join(f"{html.escape(k)} ({html.escape(', '.join(v))})" for k, v in d.items())
    out = f"<p><b>Flagged:</b> {listing(flagged)}</p>" if flagged else "<p>No annotator stands out from the pool.</p>"
    return out + (f"<p><b>Too few answers to tell:</b> {listing(notes)}</p>" if notes else "")


def _pct(v) -> str:
    return "n/a" if v is None else f"{v:.0%}"


def _page(view, rows, flagged, matrix, shared, confused, pngs, paths, root: Path, notes: dict | None = None) -> str:
    e = html.escape
    css = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222} table{border-collapse:collapse;margin:1em 0}"
           "td,th{border:1px solid #ddd;padding:4px 8px;font-size:13px;text-align:right} th{background:#f4f4f4}"
           "td.l,th.l{text-align:left} tr.flag td{background:#fde2e2} .thumbs img{max-height:96px;margin:2px}"
           "h2{border-bottom:1px solid #ddd;margin-top:2em}")
    sim = " — SIMULATED annotators" if view.round.get("simulated") else ""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>review {e(view.name)}</title>"
             f"<style>{css}</style></head><body><h1>Review round {e(view.name)}{sim}</h1>",
             f"<p>{len(view.images):,} images of the {e(str(view.round['split']))} split, {len(view.gold):,} gold "
             f"images, {len(view.annotator_roles)} annotators, {len(view.tiebreak_roles)} tie-break projects; "
             f"{e(_mode(view))} mode.</p>"]
    parts.append(_flag_lines(flagged, notes or {}))
    parts += _annotator_tables(rows, flagged, _asked_groups(view))
    parts.append(f"<img src='{e(pngs[1].name)}' alt='accuracy per annotator'>")
    parts += _matrix_table(matrix, shared, pngs[0])
    parts += _confused_table(confused, paths, root)
    parts.append("<h2>Throughput</h2>" f"<img src='{e(pngs[2].name)}' alt='throughput'>")
    parts.append("</body></html>")
    return "".join(parts)


def _asked_groups(view) -> set[str] | None:
    """The groups a short check asked (its other groups were not answered); None for any other round."""
    return {g for gs in view.check_groups.values() for g in gs} if view.check_groups else None


def _annotator_tables(rows, flagged, asked: set[str] | None = None) -> list[str]:
    e = html.escape
    parts = ["<h2>Annotators</h2><table><tr><th class='l'>annotator</th><th class='l'>role</th><th>assigned</th>"
             "<th>done</th><th>gold answered</th><th>gold accuracy</th><th>agreement</th><th>accuracy vs final</th>"
             "<th>median s/task</th></tr>"]
    for r in rows:
        cls = " class='flag'" if r["email"] in flagged else ""
        med = "" if r["median_seconds"] is None else f"{r['median_seconds']:.0f}"
        parts.append(f"<tr{cls}><td class='l'>{e(r['email'])}</td><td class='l'>{e(r['role'])}</td>"
                     f"<td>{r['assigned']:,}</td><td>{r['done']:,}</td><td>{r['gold']['answered']}</td>"
                     f"<td>{_pct(r['gold']['accuracy'])}</td><td>{_pct(r['agreement']['overall'])}</td>"
                     f"<td>{_pct(r['accuracy_vs_final']['accuracy'])}</td><td>{med}</td></tr>")
    parts.append("</table>")
    groups = [g for g in view_groups(rows) if asked is None or g in asked]
    parts.append("<h3>Per group: gold accuracy / agreement</h3><table><tr><th class='l'>annotator</th>"
                 + "".join(f"<th>{e(g)}</th>" for g in groups) + "</tr>")
    for r in rows:
        if r["role"].startswith("tiebreak"):
            continue
        cells = "".join(f"<td>{_pct(r['gold']['groups'].get(g))} / {_pct(r['agreement'].get(g))}</td>" for g in groups)
        parts.append(f"<tr><td class='l'>{e(r['email'])}</td>{cells}</tr>")
    parts.append("</table>")
    return parts


def _matrix_table(matrix, shared, png: Path) -> list[str]:
    e = html.escape
    parts = ["<h2>Agreement matrix</h2><p>Share of the images two annotators both answered where their answers "
             "are the same (same labels, or both discard); images shared in brackets.</p>",
             f"<img src='{e(png.name)}' alt='agreement matrix'><table><tr><th></th>"
             + "".join(f"<th>{e(c)}</th>" for c in matrix.columns) + "</tr>"]
    for i, email in enumerate(matrix.index):
        cells = "".join("<td></td>" if matrix.iat[i, j] != matrix.iat[i, j] else
                        f"<td>{matrix.iat[i, j]:.2f} ({shared.iat[i, j]})</td>" for j in range(len(matrix.columns)))
        parts.append(f"<tr><th class='l'>{e(email)}</th>{cells}</tr>")
    parts.append("</table>")
    return parts


def _confused_table(confused, paths, root: Path) -> list[str]:
    e = html.escape
    parts = ["<h2>Most confused label pairs per group</h2>"]
    if confused.empty:
        return parts + ["<p>No two answers swap labels yet.</p>"]
    parts.append("<table><tr><th class='l'>group</th><th class='l'>label</th><th class='l'>label</th>"
                 "<th>images</th><th class='l'>examples</th></tr>")
    for c in confused.itertuples():
        thumbs = []
        for image_id in c.examples[:THUMBS]:
            p = paths.get(image_id)
            p = None if not isinstance(p, str) or not p else (p if Path(p).is_absolute() else str(root / p))
            uri = thumbnail_uri(p, 96)
            thumbs.append(f"<img src='{uri}' title='{e(image_id)}' alt='{e(image_id)}'>" if uri else e(image_id))
        parts.append(f"<tr><td class='l'>{e(c.group)}</td><td class='l'>{e(c.label_a)}</td>"
                     f"<td class='l'>{e(c.label_b)}</td><td>{c.images}</td>"
                     f"<td class='l thumbs'>{' '.join(thumbs)}</td></tr>")
    parts.append("</table>")
    return parts


def view_groups(rows: list[dict]) -> list[str]:
    for r in rows:
        return list(r["gold"]["groups"])
    return []
