"""Import, stats and a Parquet export at scale, against a pandas peer.

    python -m benchmarks.import_scale                 # N = 100k and 1M
    python -m benchmarks.import_scale --n 100000

For each N: writes a synthetic challenge JSON (Table 1 group frequencies, ~5.8 labels per
image, benchmarks/synthetic.py), then times, each in a fresh process so peak RSS is its own:
  ifa import   `ifa import imat` into a new workspace (one transaction, all checks)
  ifa stats    `ifa stats --json`
  ifa export   `ifa export --format parquet`: one row per image with its list of label
               ids, plus changes.csv, the datasheet (stats before and after) and plots
  peer         what a user would write by hand: pandas json_normalize + explode + to_sql
               (no validation, no quarantine, no idempotence)
Target (issue 2): N = 1,000,000 imports in <= 90 s with peak RSS <= 3 GiB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

STEPS = {
    "ifa import": """
from ifa.curation.workspace import Workspace
from ifa.curation.ingest import importing
with Workspace.init(WS) as ws:
    r = importing.import_imat(ws, SRC, "train")
    assert r.images_added == N, r
""",
    "ifa stats": """
from ifa.curation.workspace import Workspace
from ifa.curation import stats
with Workspace.open(WS) as ws:
    s = stats.compute(ws.ledger, ws.taxonomy)
    assert s.splits["train"].images == N
""",
    "ifa export parquet": """
from ifa.curation.workspace import Workspace
from ifa.curation import export
with Workspace.open(WS) as ws:
    r = export.export(ws, OUT, fmt="parquet")
    assert r.splits["train"]["images"] == N
""",
    "peer: pandas to_sql": """
import json, sqlite3, pandas as pd
doc = json.load(open(SRC))
images = pd.json_normalize(doc["images"])
ann = pd.json_normalize(doc["annotations"]).explode("labelId")
con = sqlite3.connect(PEER_DB)
images.to_sql("images", con, index=False)
ann.to_sql("labels", con, index=False, chunksize=100_000)
con.commit()
""",
}

RUNNER = """
import resource, sys, time
{assign}
t = time.perf_counter()
{body}
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def run_step(body: str, **values) -> tuple[float, float]:
    assign = "\n".join(f"{k} = {v!r}" for k, v in values.items())
    out = subprocess.run([sys.executable, "-c", RUNNER.format(assign=assign, body=body)],
                         capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(out.stderr)
    seconds, rss_kb = out.stdout.split()[-2:]
    return float(seconds), int(rss_kb) / 2**20  # GiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, action="append", help="image counts (default 100k and 1M)")
    args = parser.parse_args()
    sizes = args.n or [100_000, 1_000_000]
    from benchmarks.synthetic import write_challenge

    table = Table(title="import at scale (seconds, peak RSS GiB)")
    for col in ("N", "step", "seconds", "peak RSS GiB", "target"):
        table.add_column(col, justify="right")
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            t = time.perf_counter()
            src = write_challenge(tmp / "train.json", n, seed=0)
            print(f"N={n:,}: wrote {src.stat().st_size / 2**20:.0f} MiB of JSON in {time.perf_counter() - t:.1f}s", flush=True)
            values = {"WS": str(tmp / "ws"), "SRC": str(src), "N": n, "OUT": str(tmp / "export"),
                      "PEER_DB": str(tmp / "peer.db")}
            for name, body in STEPS.items():
                seconds, rss = run_step(body, **values)
                target = "<= 90 s, <= 3 GiB" if name == "ifa import" and n >= 1_000_000 else ""
                table.add_row(f"{n:,}", name, f"{seconds:.1f}", f"{rss:.2f}", target)
                print(f"  {name}: {seconds:.1f}s, {rss:.2f} GiB", flush=True)
    Console().print(table)


if __name__ == "__main__":
    main()
