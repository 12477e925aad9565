"""`ifa demo`: the whole labeling process on the bundled CC0 sample, nothing to set up.

Each step is a small function over the workspace that returns a one-line result; the
demo runs them in order and reports each through the Progress protocol.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .curation import importing, stats
from .curation.workspace import Workspace
from .errors import IfaError
from .progress import SILENT, Progress
from .sample.planted import plant_problems

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

    def to_dict(self) -> dict:
        return {"workspace": self.workspace, "report": self.report,
                "steps": [{"name": s.name, "summary": s.summary, "seconds": round(s.seconds, 2), **s.data} for s in self.steps]}


def _import(ws: Workspace) -> tuple[str, dict]:
    source = ws.root / "demo-input"
    planted = plant_problems(source)
    counts, problems = {}, {}
    for split in ("train", "validation", "test"):
        r = importing.import_imat(ws, source / f"{split}.json", split, images_dir=source / "images")
        counts[split] = r.images_added + r.images_existing
        for k, v in r.problems.items():
            problems[k] = problems.get(k, 0) + v
    planted_n = {k: len(v) for k, v in planted.to_dict().items()}
    summary = ", ".join(f"{v} {k}" for k, v in counts.items()) + " images imported"
    summary += f" (sample plus planted problems: {sum(planted_n.values())}; import flagged {sum(problems.values())})"
    return summary, {"images": counts, "planted": planted_n, "import_problems": problems}


def _stats(ws: Workspace) -> tuple[str, dict]:
    s = stats.compute(ws.ledger, ws.taxonomy)
    train = s.splits["train"]
    return (f"train: {train.images} images, {train.labels} labels, "
            f"{train.labels_per_image['mean']:.2f} labels per image"), {"stats": s.to_dict()["splits"]}


STEPS: list[tuple[str, Callable[[Workspace], tuple[str, dict]]]] = [
    ("import", _import),
    ("stats", _stats),
]


def run_demo(root: Path = DEFAULT_DEMO_WORKSPACE, progress: Progress = SILENT) -> DemoResult:
    """Run every step on a fresh demo workspace at `root` (an earlier demo workspace there
    is replaced). Raises IfaError when `root` holds a workspace that is not a demo's."""
    root = Path(root)
    if (root / "ifa.db").exists():
        with Workspace.open(root) as old:
            if old.ledger.get_meta(DEMO_MARK) != "1":
                raise IfaError(f"{root} holds a real workspace; the demo will not touch it. Pick another --workspace.")
        shutil.rmtree(root)
    result = DemoResult(str(root.resolve()))
    with Workspace.init(root, command="demo") as ws:
        ws.ledger.set_meta(DEMO_MARK, "1")
        for name, step in STEPS:
            start = time.perf_counter()
            with progress.task(name):
                summary, data = step(ws)
            result.steps.append(StepResult(name, summary, time.perf_counter() - start, data))
            progress.note(f"[green]✓[/] {name}: {summary}")
    return result
