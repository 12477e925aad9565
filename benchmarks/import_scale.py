"""Import, stats and a Parquet export at scale, against a pandas peer.

    python -m benchmarks.import_scale                 # N = 100k and 1M
    python -m benchmarks.import_scale --n 100000
    python -m benchmarks.import_scale --n 5000000 --commands-only   # the 5M import, as a user runs it

For each N: writes a synthetic challenge JSON (Table 1 group frequencies, ~5.8 labels per
image, benchmarks/synthetic.py, written in pieces), then times, each in a fresh process so
peak RSS is its own:
  ifa import   library: `importing.import_imat` into a new workspace (one transaction, all
               checks); command: `ifa import imat FILE --split train --json` into another
               new workspace, as a subprocess whose stdout is read to the end and parsed
  ifa stats    library: `stats.compute`; command: `ifa stats --json`
  ifa export   `export.export(fmt="parquet")` (library only): one row per image with its list
               of label ids, plus changes.csv, the datasheet (stats before and after) and plots
  peer         what a user would write by hand: pandas json_normalize + explode + to_sql
               (no validation, no quarantine, no idempotence)
Targets: N = 1,000,000 imports in <= 90 s; the import streams the JSON (ijson) so 1M and 5M
peak <= 1.5 GiB, 5M in <= 5 min, and `ifa stats --json` at 1M in <= 6 s.
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

from benchmarks.cli_timing import run_cli

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


TARGETS = {"ifa import": "1M: <= 90 s, <= 1.5 GiB; 5M: <= 300 s, <= 1.5 GiB", "ifa stats": "1M: <= 6 s (command)"}


def commands(n: int, src: Path, tmp: Path) -> dict[str, tuple[float, float]]:
    """`ifa import imat --json` into a new workspace and `ifa stats --json` on it, as a
    script runs them: name -> (seconds, peak GiB). Checks the JSON they print."""
    ws = ["--workspace", str(tmp / "ws-cli")]
    run_cli("init", *ws, expect_json=False)
    imported = run_cli("import", "imat", str(src), "--split", "train", "--json", *ws)
    assert imported.data["images_added"] == n, imported.data
    stats = run_cli("stats", "--json", *ws)
    assert stats.data["splits"]["train"]["images"] == n
    for name, r in (("ifa import", imported), ("ifa stats", stats)):
        print(f"  {name} (command): {r.seconds:.1f}s wall, {r.cpu:.1f}s cpu, {r.peak_gib:.2f} GiB", flush=True)
    return {"ifa import": (imported.seconds, imported.peak_gib), "ifa stats": (stats.seconds, stats.peak_gib)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, action="append", help="image counts (default 100k and 1M)")
    parser.add_argument("--commands-only", action="store_true",
                        help="time only the commands (ifa import, ifa stats) as subprocesses")
    parser.add_argument("--workdir", type=Path, default=None, help="where the JSON and workspaces go (default: a temp dir)")
    args = parser.parse_args()
    sizes = args.n or [100_000, 1_000_000]
    from benchmarks.synthetic import write_challenge

    table = Table(title="import at scale: library call and command (subprocess, --json), seconds and peak RSS GiB; "
                        "2 cores shared with other engineers' jobs")
    for col in ("N", "step", "library s", "library GiB", "command s", "command GiB", "target"):
        table.add_column(col, justify="right")
    for n in sizes:
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            tmp = Path(tmp)
            t = time.perf_counter()
            src = write_challenge(tmp / "train.json", n, seed=0)
            print(f"N={n:,}: wrote {src.stat().st_size / 2**20:.0f} MiB of JSON in {time.perf_counter() - t:.1f}s", flush=True)
            values = {"WS": str(tmp / "ws"), "SRC": str(src), "N": n, "OUT": str(tmp / "export"),
                      "PEER_DB": str(tmp / "peer.db")}
            library = {}
            if not args.commands_only:
                for name, body in STEPS.items():
                    library[name] = run_step(body, **values)
                    print(f"  {name} (library): {library[name][0]:.1f}s, {library[name][1]:.2f} GiB", flush=True)
            command = commands(n, src, tmp)
            for name in dict.fromkeys([*library, *command]):
                lib, cmd = library.get(name), command.get(name)
                table.add_row(f"{n:,}", name, *(f"{lib[0]:.1f}", f"{lib[1]:.2f}") if lib else ("", ""),
                              *(f"{cmd[0]:.1f}", f"{cmd[1]:.2f}") if cmd else ("", ""), TARGETS.get(name, ""))
    Console(width=180).print(table)


if __name__ == "__main__":
    main()
