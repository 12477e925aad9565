"""Timing a command the way a script runs it: `python -m ifa.cli.app ... --json` in its own
process, stdout read to the end and parsed, wall seconds and that process's peak RSS.

The library calls the other benchmarks time leave out what a user pays on top: start-up,
imports, rendering and printing the output (for check-attributes --json at 1M that was 22 of
33 s before the output was built from arrays)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class CommandRun:
    """One run: wall seconds, CPU seconds (user + system) and peak RSS (GiB) of the command's
    process, the bytes it printed on stdout, and the parsed JSON (None when it printed none).
    CPU seconds say more than wall seconds on a machine other jobs load."""

    seconds: float
    cpu: float
    peak_gib: float
    stdout_bytes: int
    data: object = None


# The command runs under this small shim, which waits for it and writes its rusage. Linux keeps
# the peak RSS of the address space a process had before exec (signal->maxrss), and Python
# starts children by vfork + exec: a command started straight from this process reported
# this process's peak when that was higher (the README's import section says by how much).
_SHIM = """
import json, os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as fh:
    json.dump([os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime, usage.ru_maxrss], fh)
"""


def run_cli(*args: str, expect_json: bool = True, env: dict | None = None) -> CommandRun:
    """Run `ifa ARGS` (as `python -m ifa.cli.app`, the interpreter and PYTHONPATH of this
    process) with stdout to a file, wait for it, read the file fully and parse it as JSON
    when `expect_json`. Raises RuntimeError with the command's stderr when it fails."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.TemporaryDirectory() as tmp:
        usage_file = Path(tmp) / "usage.json"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", _SHIM, str(usage_file), sys.executable, "-m", "ifa.cli.app", *args],
                       stdout=out, stderr=err, env={**os.environ, **(env or {})}, check=False)
        out.seek(0)
        text = out.read()
        seconds = time.perf_counter() - start  # what a script waits for: the run and reading its output
        returncode, cpu, maxrss_kib = json.loads(usage_file.read_text()) if usage_file.exists() else (-1, 0.0, 0)
        if returncode:
            err.seek(0)
            raise RuntimeError(f"ifa {' '.join(args)} failed ({returncode}): {err.read().decode()[-2000:]}")
    data = json.loads(text) if expect_json else None
    return CommandRun(seconds, cpu, maxrss_kib / 2**20, len(text), data)
