"""CPU seconds and peak RSS of `ifa import imat` and `ifa import csv` under two versions of ifa.

    python -m benchmarks.import_versions --old /tmp/oldpath --new /work/wtpath/import [--n 200000]

Each PATH is a PYTHONPATH whose `ifa` is the version to run. Writes a synthetic challenge JSON
(benchmarks/synthetic.py) and a CSV of the same images (URL, labels joined by '|'), then runs
each import as a fresh `python -m ifa.cli.app ... --json` process into a new workspace, twice
per version (first to last), and prints user+system CPU seconds and peak RSS of each run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.synthetic import write_challenge


def _write_csv(doc_path: Path, out: Path) -> None:
    doc = json.loads(doc_path.read_text())
    labels = {a.get("imageId"): a.get("labelId", []) for a in doc.get("annotations", [])}
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "labels", "id"])
        for image in doc["images"]:
            iid = image["imageId"]
            writer.writerow([image["url"], "|".join(map(str, labels.get(iid, []))), iid])


def _run(pythonpath: str, argv: list[str], ws: Path) -> tuple[float, float]:
    """(CPU seconds, peak RSS GiB) of one CLI import into the new workspace `ws`."""
    env = {**os.environ, "PYTHONPATH": pythonpath}
    subprocess.run([sys.executable, "-m", "ifa.cli.app", "init", "-w", str(ws)], env=env, check=True, capture_output=True)
    script = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True); "
              "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
              "print(p.returncode, u.ru_utime + u.ru_stime, u.ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", script, sys.executable, "-m", "ifa.cli.app", *argv, "-w", str(ws), "--json"],
                          env=env, capture_output=True, text=True, check=True)
    rc, cpu, rss = done.stdout.split()
    if rc != "0":
        raise SystemExit(f"{argv} failed under {pythonpath}")
    return float(cpu), int(rss) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True)
    ap.add_argument("--new", required=True)
    ap.add_argument("--n", type=int, default=200_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="import-versions-") as tmp:
        root = Path(tmp)
        doc = write_challenge(root / "train.json", args.n, seed=3)
        _write_csv(doc, root / "train.csv")
        commands = {"imat": ["import", "imat", str(doc), "--split", "train"],
                    "csv": ["import", "csv", str(root / "train.csv"), "--split", "train", "--image-col", "image",
                            "--labels-col", "labels", "--id-col", "id"]}
        for name, argv in commands.items():
            for rep in range(2):
                for tag, path in (("old", args.old), ("new", args.new)):
                    cpu, gib = _run(path, argv, root / f"ws-{name}-{tag}-{rep}")
                    print(f"{name:5} {tag}  run {rep + 1}: {cpu:6.1f} s CPU  {gib:5.2f} GiB peak  (load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
