"""How long `ifa` takes to answer, against a bare `python -c "import typer, rich"`.

    python -m benchmarks.cli_startup              # from the repo root, with the venv's python
    python -m benchmarks.cli_startup --runs 9

Each command runs as a user runs it (the console script, a fresh process each time); the
table shows the median of --runs wall times and the ratio to the baseline measured in the
same run, interleaved so a busy machine slows both alike.

Targets: `ifa --help` <= 2x the baseline; `ifa show ID` on a small workspace
<= 3x; `ifa stats` on the 310-image sample <= 4x.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ifa.sample import IMAGES_DIR, split_file

IFA = str(Path(sys.executable).with_name("ifa"))


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = str(Path(tmp) / "ws")
        subprocess.run([IFA, "init", "-w", ws], check=True, capture_output=True)
        for split in ("train", "validation", "test"):
            subprocess.run([IFA, "import", "imat", str(split_file(split)), "--split", split, "--images", str(IMAGES_DIR),
                            "-w", ws], check=True, capture_output=True)
        image = json.loads(split_file("train").read_text())["images"][0]["imageId"]
        commands = {
            "baseline: python -c 'import typer, rich'": ([sys.executable, "-c", "import typer, rich"], None),
            "ifa --help": ([IFA, "--help"], 2.0),
            "ifa show ID (310 images)": ([IFA, "show", image, "-w", ws], 3.0),
            "ifa stats (310 images)": ([IFA, "stats", "-w", ws], 4.0),
            "ifa stats --json (310 images)": ([IFA, "stats", "--json", "-w", ws], None),
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, (cmd, _) in commands.items():
                times[name].append(wall(cmd))
    base = statistics.median(next(iter(times.values())))
    print(f"{'command':<42} {'median s':>9} {'x baseline':>11} {'target':>7}")
    for name, (_, target) in commands.items():
        med = statistics.median(times[name])
        ok = "" if target is None else ("ok" if med / base <= target else "MISSED")
        print(f"{name:<42} {med:>9.3f} {med / base:>11.2f} {'' if target is None else f'<= {target:.0f}x':>7} {ok}")


if __name__ == "__main__":
    main()
