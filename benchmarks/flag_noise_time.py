"""`ifa curate flag-noise` end to end with its defaults, timed: is 3,000 photos <= 5 min on
2 CPU cores?

Imports every photo of a shared dataset (../shared/data/myntra-products or clothing-cc0:
3,000 photos each, their real labels mapped to the taxonomy) as the train split of a fresh
workspace, then runs `python -m ifa.cli.app curate flag-noise --workspace WS` as a subprocess,
with no other option: the small CNN's cross-fit (defaults.FLAG_NOISE_*), the ranking, the
reports. Prints the child's wall and CPU seconds (user + system, from the kernel's rusage of
children) beside the time the command itself stated once its first batches were timed
(`expected_seconds` of its --json, against the `seconds` it took: the target is within
35%), the rate formula of defaults.expected_cross_fit_seconds (2 free cores), the 5-minute
target, and the load average before and after (the machine this was measured on is shared:
a load over 2 means the command had less than its 2 cores). With --busy a busy loop runs on
one core for the whole run, so the stated time is checked on a loaded machine too. The
flags are judged as benchmarks.flag_noise_judgements does (suggestions giving a second
label in a single-label group, or Male and Female).

    python -m benchmarks.flag_noise_time                       # myntra-products
    python -m benchmarks.flag_noise_time --dataset myntra clothing
    python -m benchmarks.flag_noise_time --busy --json out.json

The workspace goes to benchmarks/out/time-<dataset>/ (git-ignored) and is replaced each run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ifa.curation.ingest import importing
from ifa.curation.noise import defaults
from ifa.curation.workspace import Workspace
from ifa.taxonomy import Taxonomy

from . import noise_data
from .flag_noise_judgements import judge_flags

OUT = Path(__file__).resolve().parent / "out"
TARGET_SECONDS = 300.0  # 3,000 photos in <= 5 min on 2 cores
REPO = Path(__file__).resolve().parents[1]


def fresh_workspace(dataset: str, root: Path) -> tuple[Path, int, float]:
    """Import every photo of `dataset` with its labels as the train split of a new workspace
    under `root` (replaced); (workspace path, images, import seconds)."""
    tax = Taxonomy.default()
    ds = noise_data.load(dataset, tax)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    start = time.perf_counter()
    ws = Workspace.init(root / "ws")
    noise_data.write_json(root / "train.json", ds.image_ids, ds.labels, tax)
    with ws:
        importing.import_imat(ws, root / "train.json", "train", images_dir=Path(ds.paths[0]).parent)
    return root / "ws", len(ds), time.perf_counter() - start


def _load() -> tuple[float, float, float]:
    return os.getloadavg()


def time_flag_noise(workspace: Path, options: list[str] = ()) -> dict:
    """Run `ifa curate flag-noise` (its defaults, or `options` added) on `workspace` in a
    child process; its wall and CPU seconds, exit code, the expected time it stated, and
    the tail of its output."""
    env = os.environ | {"COLUMNS": "200"}  # one line per progress note, so the stated time can be read back
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ifa.cli.app", "curate", "flag-noise", "--workspace", str(workspace),
                           *options, "--json"],
                          capture_output=True, text=True, cwd=REPO, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    data = json.loads(proc.stdout) if proc.returncode == 0 else {}
    judged = judge_flags(data["flags"], workspace, Taxonomy.default()) if data else {}
    return {"rc": proc.returncode, "wall_s": round(wall, 1),
            "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1),
            "stated_s": data.get("expected_seconds"), "took_s": data.get("seconds"), "judged": judged,
            "output_tail": proc.stderr[-1500:]}


def _busy() -> subprocess.Popen:
    """A busy loop on one core, the load the stated time must hold under."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", nargs="+", default=["myntra"], choices=list(noise_data.DATASETS))
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--busy", action="store_true", help="run a busy loop on one core meanwhile")
    ap.add_argument("--options", default="", help='other flag-noise options, e.g. "--epochs 10 --image-size 64 --folds 5" '
                    "(the earlier defaults), to check the rate behind the stated time")
    args = ap.parse_args()
    rows = []
    for name in args.dataset:
        ws, images, import_s = fresh_workspace(name, OUT / f"time-{name}")
        opts = args.options.split()
        setting = {k: int(opts[opts.index(f"--{k}") + 1]) if f"--{k}" in opts else v
                   for k, v in (("epochs", defaults.FLAG_NOISE_EPOCHS), ("folds", defaults.FLAG_NOISE_FOLDS),
                                ("image-size", defaults.FLAG_NOISE_IMAGE_SIZE))}
        formula = defaults.expected_cross_fit_seconds(images, setting["epochs"], setting["folds"], setting["image-size"])
        load_before = _load()
        busy = _busy() if args.busy else None
        try:
            run = time_flag_noise(ws, opts)
        finally:
            if busy:
                busy.kill()
                busy.wait()
        run |= {"dataset": noise_data.DATASETS[name], "images": images, "import_s": round(import_s, 1), "busy": args.busy,
                "expected_s": round(formula, 1), "load_before": [round(x, 2) for x in load_before],
                "load_after": [round(x, 2) for x in _load()]}
        if run["rc"]:
            print(run["output_tail"], file=sys.stderr)
        rows.append(run)
    print(f"\n`ifa curate flag-noise {args.options}` ({setting['folds']} folds x {setting['epochs']} "
          f"epochs of the small CNN at {setting['image-size']} px, min-score {defaults.DEFAULT_MIN_SCORE}), "
          f"fresh workspace, one run each; {os.cpu_count()} CPUs here")
    print(f"{'dataset':<17}{'busy':<6}{'images':>7}{'wall s':>8}{'CPU s':>8}{'took s':>8}{'stated s':>9}{'error':>7}"
          f"{'formula s':>10}  {'<= 5 min':<9}{'load 1-min before/after':>24}")
    for r in rows:
        error = (f"{r['stated_s'] / r['took_s'] - 1:+.0%}" if r["stated_s"] and r["took_s"] else "-")
        print(f"{r['dataset']:<17}{str(r['busy']):<6}{r['images']:>7,}{r['wall_s']:>8.1f}{r['cpu_s']:>8.1f}"
              f"{r['took_s'] or 0:>8.1f}{r['stated_s'] or 0:>9.1f}{error:>7}{r['expected_s']:>10.1f}  "
              f"{'yes' if r['rc'] == 0 and r['wall_s'] <= TARGET_SECONDS else 'NO':<9}"
              f"{r['load_before'][0]:>12.2f} / {r['load_after'][0]:.2f}")
        print(f"  flags: {r['judged']}")
    if any(r["load_before"][0] > 2 or r["load_after"][0] > 2 for r in rows):
        print("Load over 2: other work shared the cores, so the command had less than 2 of them.")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
