"""`ifa demo`: the whole labeling process on the bundled CC0 sample, nothing to set up.

The sample is copied with known problems planted (sample/planted.py); each step is a
small function over the workspace that calls the same library function as its command
and returns a one-line result, saying how many planted problems it found. The review
step starts the embedded Label Studio and SIMULATED annotators answer through its API.
Each step imports its library when it runs: `ifa` builds every command's options at start,
and this module must not make `ifa --help` load torch or the Label Studio SDK.
"""

from __future__ import annotations

import html
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .curation import reports
from .curation.workspace import Workspace
from .errors import IfaError
from .progress import SILENT, Progress

if TYPE_CHECKING:
    from .sample.planted import Planted

DEFAULT_DEMO_WORKSPACE = Path("ifa-demo")
DEMO_MARK = "demo"


@dataclass
class StepResult:
    name: str
    summary: str
    seconds: float
    data: dict = field(default_factory=dict)


@dataclass
class DemoResult:
    workspace: str
    steps: list[StepResult] = field(default_factory=list)
    report: str = ""
    export: str = ""
    server: dict | None = None  # with keep_server: url, email, password, how to stop

    def to_dict(self) -> dict:
        return {"workspace": self.workspace, "report": self.report, "export": self.export, "server": self.server,
                "steps": [{"name": s.name, "summary": s.summary, "seconds": round(s.seconds, 2), **s.data}
                          for s in self.steps]}


@dataclass
class _Context:
    progress: Progress
    keep_server: bool
    planted: Planted | None = None
    export_dir: str = ""
    server: dict | None = None


def _found(planted_ids, hit_ids) -> str:
    planted_ids = set(planted_ids)
    return f"{len(planted_ids & set(hit_ids))} of {len(planted_ids)} planted"


# ---- steps ---------------------------------------------------------------------------------
def _import(ws: Workspace, ctx: _Context) -> tuple[str, dict]:
    source = ws.root / "demo-input"
    from .curation.ingest import importing
    from .sample.planted import plant_problems
    ctx.planted = plant_problems(source)
    counts, problems = {}, {}
    for split in ("train", "validation", "test"):
        r = importing.import_imat(ws, source / f"{split}.json", split, images_dir=source / "images", progress=ctx.progress)
        counts[split] = r.images_added + r.images_existing
        for k, v in r.problems.items():
            problems[k] = problems.get(k, 0) + v
    planted_n = {k: len(v) for k, v in ctx.planted.to_dict().items()}
    summary = (", ".join(f"{v} {k}" for k, v in counts.items()) + f" images imported, with {sum(planted_n.values())} "
               f"planted problems; the import itself flagged {sum(problems.values())} (unknown label ids)")
    return summary, {"images": counts, "planted": planted_n, "import_problems": problems}


def _stats(ws: Workspace, ctx: _Context) -> tuple[str, dict]:
    from .curation import stats
    s = stats.compute(ws.ledger, ws.taxonomy)
    train = s.splits["train"]
    return (f"train: {train.images} images, {train.labels} labels, "
            f"{train.labels_per_image['mean']:.2f} labels per image"), {"stats": s.to_dict()["splits"]}


def _check_attributes(ws: Workspace, ctx: _Context) -> tuple[str, dict]:
    from .curation.attributes import check as attributes
    r = attributes.run(ws, apply=True, progress=ctx.progress)
    p = ctx.planted
    hit = set(r.hits["image_id"]) if len(r.hits) else set()
    confused = p.two_categories + p.contradictions + p.unknown_label + p.sleeve_on_shoes
    c = r.changes
    summary = (f"{len(hit)} images hit ({_found(confused, hit)} confused images); applied: {c.get('set_aside', 0)} set "
               f"aside, {c.get('drop_label', 0)} labels dropped, {c.get('review', 0)} queued for review; report {r.report_html}")
    return summary, {"check_attributes": r.to_dict()}


def _dedup(ws: Workspace, ctx: _Context) -> tuple[str, dict]:
    from .curation.dedup import run as dedup
    r = dedup.run(ws, apply=True, workers=2, progress=ctx.progress)
    p = ctx.planted
    members = {m.image_id for c in r.clusters for m in c.members}
    copies = p.exact_duplicates + p.near_duplicates + p.leaked
    summary = (f"{len(r.clusters)} duplicate clusters ({_found(copies, members)} copies), {r.cross_split} validation/test "
               f"images had a copy in train; {len(r.set_aside)} set aside; report {r.report_html}")
    return summary, {"dedup": r.to_dict()}


class _BarsOnly:
    """Progress that shows bars but not per-epoch notes: the demo prints one line a step."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def task(self, description: str, total: int | None = None):
        return self.progress.task(description, total)

    def note(self, message: str) -> None:
        pass


def _flag_noise(ws: Workspace, ctx: _Context) -> tuple[str, dict]:
    from .curation.noise import flag as flag_noise
    summary, data = flag_noise.demo_step(ws, progress=_BarsOnly(ctx.progress))
    flagged = {(f["image_id"], f["label"]) for f in data["flag_noise"]["flags"]}
    planted = {(i, int(l)) for i, l in ctx.planted.noisy_labels}
    return f"{summary}; {len(planted & flagged)} of {len(planted)} planted label swaps among them", data


def _review(ws: Workspace, ctx: _Context) -> tuple[str, dict]:
    from .annotation.demo import review_step
    summary, data = review_step(ws, progress=ctx.progress, keep_server=ctx.keep_server)
    ctx.server = data.pop("server", None)
    return summary, data


def _export(ws: Workspace, ctx: _Context) -> tuple[str, dict]:
    from .curation import export
    r = export.export(ws, ws.exports_dir / "demo-export", fmt="imat", overwrite=True, progress=ctx.progress)
    ctx.export_dir = r.out_dir
    images = ", ".join(f"{v['images']} {k}" for k, v in r.splits.items())
    return f"{images} images exported with {r.changes} recorded changes; {r.datasheet}", {"export": r.to_dict()}


STEPS: list[tuple[str, Callable[[Workspace, _Context], tuple[str, dict]]]] = [
    ("import", _import),
    ("stats", _stats),
    ("check-attributes", _check_attributes),
    ("dedup", _dedup),
    ("flag-noise", _flag_noise),
    ("review", _review),
    ("export", _export),
]


def run_demo(root: Path = DEFAULT_DEMO_WORKSPACE, progress: Progress = SILENT, keep_server: bool = False) -> DemoResult:
    """Run every step on a fresh demo workspace at `root` (an earlier demo workspace there
    is replaced) and write `reports/demo-summary.html`. keep_server leaves the embedded
    Label Studio running and returns its login. Raises IfaError when `root` holds a
    workspace that is not a demo's, or a step fails (its message names the step)."""
    root = Path(root)
    if (root / "ifa.db").exists():
        with Workspace.open(root) as old:
            if old.ledger.get_meta(DEMO_MARK) != "1":
                raise IfaError(f"{root} holds a real workspace; the demo will not touch it. Pick another --workspace.")
        from .annotation import server

        server.stop(server.server_dir(root))  # a server kept by an earlier demo
        shutil.rmtree(root)
    result = DemoResult(str(root.resolve()))
    ctx = _Context(progress, keep_server)
    with Workspace.init(root, command="demo") as ws:
        ws.ledger.set_meta(DEMO_MARK, "1")
        for name, step in STEPS:
            progress.note(f"[bold]{name}[/] ...")
            start = time.perf_counter()
            try:
                summary, data = step(ws, ctx)
            except IfaError as exc:
                raise IfaError(f"demo step '{name}' failed: {exc}") from exc
            result.steps.append(StepResult(name, summary, time.perf_counter() - start, data))
            progress.note(f"[green]✓[/] {name} ({time.perf_counter() - start:.0f} s): {summary}")
        result.export, result.server = ctx.export_dir, ctx.server
        result.report = str(_write_summary(ws, result))
    return result


def _write_summary(ws: Workspace, result: DemoResult) -> Path:
    """One HTML page: each step's result, and a link to every report the demo wrote. Links are
    relative to the page, so they open wherever the workspace is, and from any browser."""
    out = ws.report_path("demo-summary", "html")
    written = sorted(p for p in ws.reports_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    if result.export and (Path(result.export) / "DATASHEET.md").exists():
        written.append(Path(result.export) / "DATASHEET.md")

    def href(path: Path) -> str:
        return html.escape(Path(os.path.relpath(path.resolve(), out.parent.resolve())).as_posix())

    rows = []
    for s in result.steps:
        text = html.escape(s.summary)
        for word in (w.rstrip(";,:") for w in s.summary.split()):  # a path may end a clause
            if word.endswith((".html", ".md", ".csv")) and Path(word).exists():
                text = text.replace(html.escape(word), f"<a href='{href(Path(word))}'>{html.escape(Path(word).name)}</a>")
        rows.append(f"<tr><td><b>{html.escape(s.name)}</b></td><td>{s.seconds:.0f} s</td><td>{text}</td></tr>")
    links = "".join(f"<li><a href='{href(p)}'>{html.escape(p.name)}</a></li>" for p in written)
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>ifa demo</title><style>"
            "body{font-family:system-ui,sans-serif;margin:2em}td{padding:6px 10px;vertical-align:top;border-bottom:1px solid #eee}"
            "</style></head><body><h1>ifa demo on the bundled sample</h1>"
            "<p>310 CC0 clothing photos with planted duplicates, confused attributes and noisy labels. "
            "The review round's annotators are SIMULATED.</p>"
            f"<table>{''.join(rows)}</table><p>Export: {html.escape(result.export)}</p>"
            f"<h2>Every report the demo wrote</h2><ul>{links}</ul></body></html>")
    return reports.write_text(out, page)
