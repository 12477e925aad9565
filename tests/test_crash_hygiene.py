"""Crash hygiene (issue 18): what a kill or a Ctrl-C leaves behind.

Each kill test runs the real code in a subprocess parked at an exact code point (a patched
function prints a line and sleeps, as tests/test_model.py's TRAIN_SCRIPT does), kills it
with SIGKILL (or sends SIGINT), and checks what is left: no live worker, no report under
its final name unless complete and true, no hidden export folder, a ledger that passes
integrity_check, and a rerun equal to an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from ifa.curation import executors, export, history, reports
from ifa.curation.attributes import check as attributes
from ifa.curation.ingest import importing
from ifa.curation.ledger import Change
from ifa.curation.workspace import Workspace
from ifa.errors import IfaError
from ifa.sample import IMAGES_DIR, split_file

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl and /proc are Linux's")

# Every script starts with this: `park(tag)` prints the tag and waits to be killed.
PRELUDE = """
import os, sys, time
from contextlib import contextmanager
from pathlib import Path
def park(tag="parked"):
    print(tag, flush=True)
    time.sleep(600)
    sys.exit(3)  # never reached: the test kills us first
def park_before_rename():
    # Reports are complete under their temp name when the rename would happen: park there.
    from ifa.curation import reports
    real = reports.atomic_path
    @contextmanager
    def parked(path):
        with real(path) as tmp:
            yield tmp
            park("written")
    reports.atomic_path = parked
"""


def start(script: str, *args: str, new_session: bool = False) -> subprocess.Popen:
    err = tempfile.TemporaryFile("w+")  # a file, not a pipe: a chatty stderr can never block the child
    proc = subprocess.Popen([sys.executable, "-c", PRELUDE + script, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=err, text=True, start_new_session=new_session)
    proc.err = err
    proc.lines = queue.Queue()  # a thread reads stdout: select() cannot see lines already buffered

    def read():
        for line in proc.stdout:
            proc.lines.put(line.strip())
        proc.lines.put(None)
    threading.Thread(target=read, daemon=True).start()
    return proc


def wait_line(proc: subprocess.Popen, timeout: float = 120) -> str:
    """The next line the subprocess prints; fails with its stderr if it ends or is silent."""
    try:
        line = proc.lines.get(timeout=timeout)
    except queue.Empty:
        line = None
    if line is None:
        proc.kill()
        raise AssertionError(f"the subprocess did not reach its parking point: {stderr(proc)[-3000:]}")
    return line


def stderr(proc: subprocess.Popen) -> str:
    proc.err.seek(0)
    return proc.err.read()


def kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def integrity_ok(ws: Workspace) -> bool:
    return ws.ledger.query("PRAGMA integrity_check") == [("ok",)]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith(".")) if Path(folder).exists() else []


def alive(pid: int) -> bool:
    """Running, not a zombie (a killed worker stays a zombie until its new parent reaps it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def problem_input(tmp_path: Path) -> Path:
    """The sample's train JSON plus problems: a conflicting repeat, an unknown label id, an
    annotation without an image, and an entry without an id."""
    doc = json.loads(split_file("train").read_text())
    first = doc["images"][0]["imageId"]
    doc["annotations"] += [{"imageId": first, "labelId": ["17"]}, {"imageId": "ghost", "labelId": ["17"]}]
    doc["annotations"][1]["labelId"] = list(doc["annotations"][1]["labelId"]) + ["999"]
    doc["images"].append({"url": "no id"})
    path = tmp_path / "train-with-problems.json"
    path.write_text(json.dumps(doc))
    return path


# ---- 1. workers die with their parent and leave Ctrl-C to it ----------------------------------------
DEDUP_SCRIPT = r"""
# The first batch a worker takes stalls until the file argv[2] appears (never, for a kill);
# the parent parks once every other batch is saved: one worker busy, the other idle.
from ifa.curation import executors
from ifa.curation.dedup import hashing, run
from ifa.curation.ledger import hashes as store
real_hash, real_save = hashing.hash_batch, store.save_fingerprints
real_chunks, real_tapered = executors.chunks, executors.tapered_chunks
release, state = Path(sys.argv[2]), {"batches": 0, "saved": 0}
def counted(make):
    def batches(*args):
        out = list(make(*args))
        state["batches"] = len(out)
        return out
    return batches
def hash_batch(batch, methods):
    try:
        os.close(os.open(f"{release}.taken", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return real_hash(batch, methods)
    while not release.exists():
        time.sleep(0.05)
    return real_hash(batch, methods)
def save_fingerprints(ledger, **kw):
    real_save(ledger, **kw)
    state["saved"] += 1
    if state["saved"] == state["batches"] - 1:
        park("one left")
executors.chunks, executors.tapered_chunks = counted(real_chunks), counted(real_tapered)
hashing.hash_batch, store.save_fingerprints = hash_batch, save_fingerprints
if sys.argv[3] == "library":
    with Workspace.open(Path(sys.argv[1])) as ws:
        run.run(ws, workers=2)
else:
    from ifa.cli.entry import main
    sys.argv = ["ifa", "curate", "dedup", "--workspace", sys.argv[1], "--workers", "2"]
    main()
"""


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@linux_only
@pytest.mark.slow
def test_kill_9_mid_hash_leaves_no_worker_alive(sample_ws, tmp_path):
    proc = start("from ifa.curation.workspace import Workspace\n" + DEDUP_SCRIPT, sample_ws.root, tmp_path / "never", "library")
    try:
        assert wait_line(proc) == "one left"
        workers = children(proc.pid)
        assert len(workers) >= 2 and all(alive(pid) for pid in workers)
        kill(proc)
    finally:
        proc.kill()
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers if alive(pid)], "pool workers outlived their killed parent"
    assert integrity_ok(sample_ws)


@linux_only
@pytest.mark.slow
def test_ctrl_c_mid_hash_prints_one_clean_line(sample_ws, tmp_path):
    release = tmp_path / "release"
    proc = start("from ifa.curation.workspace import Workspace\n" + DEDUP_SCRIPT, sample_ws.root, release, "cli",
                 new_session=True)
    try:
        assert wait_line(proc) == "one left"
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal does: the whole process group, idle worker too
        time.sleep(0.5)
        release.touch()  # the busy worker finishes its batch; the parent shuts the pool down
        proc.wait(timeout=60)
        err = stderr(proc)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "ForkProcess" not in err, err
    assert "interrupted" in err
    assert integrity_ok(sample_ws)


@linux_only
def test_a_worker_whose_parent_is_already_gone_leaves_at_once():
    # The race the initializer guards: the parent died before the worker armed PR_SET_PDEATHSIG.
    pid = os.fork()
    if pid == 0:  # the "worker", told its parent is some other (long gone) process
        try:
            executors._worker_start(parent_pid=os.getppid() + 10_000_000)
        finally:
            os._exit(7)  # reached only if _worker_start did not leave
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_pool_workers_ignore_sigint_and_still_work():
    pool = executors.process_pool(2)
    try:
        results = [pool.submit(_worker_facts).result(timeout=60) for _ in range(4)]
    finally:
        pool.shutdown()
    assert all(pid != os.getpid() and ignores for pid, ignores in results)
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN  # the parent still handles Ctrl-C


def _worker_facts():
    return os.getpid(), signal.getsignal(signal.SIGINT) == signal.SIG_IGN


# ---- 2. import: reports after the commit, atomic, rebuildable; reruns count only what they did ---------------
IMPORT_SCRIPT = """
from ifa.curation.ingest import importing
from ifa.curation.ledger import Ledger
from ifa.curation.workspace import Workspace
real = Ledger.record_import
where = sys.argv[3]
def record_import(self, **kw):
    if where == "before-commit":
        park()
    return real(self, **kw)
Ledger.record_import = record_import
if where == "report-written":
    park_before_rename()
with Workspace.open(Path(sys.argv[1]), command="import imat") as ws:
    importing.import_imat(ws, Path(sys.argv[2]), "train")
"""


@pytest.fixture
def reference_import(tmp_path):
    """An uninterrupted import of the problem input: (workspace, its report as a frame)."""
    ws = Workspace.init(tmp_path / "reference", command="import imat")
    result = importing.import_imat(ws, problem_input(tmp_path), "train")
    yield ws, pd.read_csv(result.report, keep_default_na=False)
    ws.close()


def ledger_state(ws: Workspace) -> tuple:
    images = ws.ledger.images_frame(status=None)
    labels = ws.ledger.labels_frame(image_status=None, label_status=None)
    issues = ws.ledger.query("SELECT image_id, problem, detail, action FROM import_issues ORDER BY rowid")
    return (sorted(zip(images["image_id"], images["status"])), sorted(zip(labels["image_id"], labels["label_id"],
                                                                          labels["status"])), issues)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["before-commit", "report-written"])
def test_killed_import_leaves_no_untrue_report_and_reruns_equal(ws, tmp_path, reference_import, where):
    ref, ref_report = reference_import
    source = problem_input(tmp_path)
    proc = start(IMPORT_SCRIPT, ws.root, source, where)
    try:
        assert wait_line(proc) in ("parked", "written")
        kill(proc)
    finally:
        proc.kill()
    assert integrity_ok(ws)
    assert not list(ws.reports_dir.glob("import-*.csv")), "a report under its final name for an unfinished command"
    committed = where == "report-written"
    assert ws.ledger.counts()["images"] == (ref.ledger.counts()["images"] if committed else 0)

    again = importing.import_imat(ws, source, "train")
    assert ledger_state(ws) == ledger_state(ref)  # the rerun equals an uninterrupted run
    if committed:
        assert again.nothing_new and again.report == "" and again.images_added == 0
        # The report the kill lost, rebuilt from the ledger alone: the same rows.
        rebuilt = history.report_frame(ws.ledger, history.history(ws.ledger, command="import"), ws.taxonomy)
        problems = rebuilt[rebuilt["change"] == "import problem"]
        got = sorted(zip(problems["image_id"], problems["old"], problems["reason"], problems["action"]))
        assert got == sorted(zip(*[ref_report[c] for c in ("image_id", "problem", "detail", "action")]))
    else:
        assert not again.nothing_new
        assert pd.read_csv(again.report, keep_default_na=False).equals(ref_report)
    importing.import_imat(ws, split_file("test"), "test")  # any later report sweeps the dead writer's temp
    assert leftovers(ws.reports_dir) == []


def test_rerun_of_a_completed_import_records_nothing(ws, tmp_path, cli):
    source = problem_input(tmp_path)
    first = importing.import_imat(ws, source, "train")
    assert first.set_aside == 1 and first.problems and first.import_id == 1
    counts = (len(ws.ledger.imports_frame()), len(ws.ledger.events_frame()),
              ws.ledger.query("SELECT count(*) FROM import_issues")[0][0])
    again = importing.import_imat(ws, source, "train")
    assert again.nothing_new and again.import_id is None and again.report == ""
    assert (again.images_added, again.labels_added, again.set_aside, again.quarantined_labels) == (0, 0, 0, 0)
    assert again.problems == {}
    assert (len(ws.ledger.imports_frame()), len(ws.ledger.events_frame()),
            ws.ledger.query("SELECT count(*) FROM import_issues")[0][0]) == counts
    result = cli("import", "imat", str(source), "--split", "train", "--workspace", str(ws.root))
    assert result.exit_code == 0 and "nothing new" in result.output


def test_a_rerun_that_adds_some_counts_only_those(ws, write_json):
    doc = {"images": [{"imageId": i, "url": f"http://x/{i}.jpg"} for i in "abc"],
           "annotations": [{"imageId": "a", "labelId": [17]}, {"imageId": "a", "labelId": [19]},  # a: set aside
                           {"imageId": "b", "labelId": [17]}, {"imageId": "c", "labelId": [17]}]}
    first = importing.import_imat(ws, write_json("one.json", doc), "train")
    doc["images"].append({"imageId": "d", "url": "http://x/d.jpg"})
    doc["annotations"].append({"imageId": "d", "labelId": [18, 999]})
    more = importing.import_imat(ws, write_json("two.json", doc), "train")
    assert (first.images_added, first.set_aside) == (3, 1)
    # Only d is new: a's conflict was the first import's; d's unknown label is this one's.
    assert (more.images_added, more.images_existing, more.set_aside, more.quarantined_labels) == (1, 3, 0, 1)
    assert more.problems == {"unknown-label": 1}
    assert list(pd.read_csv(more.report)["image_id"]) == ["d"]


# ---- check-attributes: before and after the commit -----------------------------------------------------------
CHECK_SCRIPT = """
from ifa.curation.attributes import check
from ifa.curation.ledger import Ledger
from ifa.curation.workspace import Workspace
if sys.argv[2] == "before-commit":
    Ledger.apply_changes = lambda self, changes, command=None: park()
else:
    park_before_rename()
with Workspace.open(Path(sys.argv[1]), command="curate check-attributes") as ws:
    check.run(ws, apply=True)
"""


def applied_state(ws: Workspace) -> tuple:
    images = ws.ledger.images_frame(status=None)
    labels = ws.ledger.labels_frame(image_status=None, label_status=None)
    return sorted(zip(images["image_id"], images["status"], images["status_rule"].fillna(""))), \
        sorted(zip(labels["image_id"], labels["label_id"], labels["status"]))


@pytest.mark.slow
@pytest.mark.parametrize("where", ["before-commit", "report-written"])
def test_killed_check_attributes_report_is_absent_or_whole_and_rebuildable(sample_ws, tmp_path, where, cli):
    ws = sample_ws
    reference = Workspace.init(tmp_path / "reference", command="curate check-attributes")
    for split in ("train", "validation", "test"):
        importing.import_imat(reference, split_file(split), split, images_dir=IMAGES_DIR)
    expected = attributes.run(reference, apply=True)
    assert expected.changes["set_aside"] > 0

    proc = start(CHECK_SCRIPT, ws.root, where)
    try:
        assert wait_line(proc) in ("parked", "written")
        kill(proc)
    finally:
        proc.kill()
    assert integrity_ok(ws)
    assert not list(ws.reports_dir.glob("check-attributes-*")), "a report under its final name that is not whole"
    if where == "report-written":  # committed: the ledger alone says what the apply did
        assert applied_state(ws) == applied_state(reference)
        rebuilt = history.report_frame(ws.ledger, history.history(ws.ledger, command="check-attributes"), ws.taxonomy)
        ref_csv = pd.read_csv(expected.report_csv, keep_default_na=False)
        set_aside_rules = {r.id for r in expected.rules.values() if r.action == "set-aside"}
        hits = ref_csv[ref_csv["rule"].isin(set_aside_rules)]
        got = rebuilt[rebuilt["change"] == "set aside"]
        assert len(got) and set(zip(got["image_id"], got["rule"])) == set(zip(hits["image_id"], hits["rule"]))
        assert cli("history", "--command", "check-attributes", "--csv", str(tmp_path / "r.csv"),
                   "--workspace", str(ws.root)).exit_code == 0
        assert len(pd.read_csv(tmp_path / "r.csv")) == len(rebuilt)
    else:
        assert applied_state(ws) != applied_state(reference)
        again = attributes.run(ws, apply=True)  # the rerun does it all, and reports it whole
        assert applied_state(ws) == applied_state(reference)
        assert pd.read_csv(again.report_csv).equals(pd.read_csv(expected.report_csv))
    attributes.run(ws)  # a later report sweeps what the killed writer left
    assert leftovers(ws.reports_dir) == []
    reference.close()


# ---- 3. export: leftovers of a killed export, an interrupted overwrite ----------------------------------------
EXPORT_SCRIPT = """
from ifa.curation import export
from ifa.curation.workspace import Workspace
import os as real_os, types
if sys.argv[3] == "mid-write":
    export.datasheet = lambda *a, **k: park()
else:  # park between --overwrite's two renames
    calls = []
    def replace(src, dst):
        real_os.replace(src, dst)
        calls.append(dst)
        if len(calls) == 1:
            park()
    export.os = types.SimpleNamespace(**{k: getattr(real_os, k) for k in dir(real_os) if not k.startswith("__")})
    export.os.replace = replace
with Workspace.open(Path(sys.argv[1])) as ws:
    export.export(ws, Path(sys.argv[2]), overwrite=True)
"""


@pytest.mark.slow
def test_killed_export_leaves_nothing_the_next_one_keeps(sample_ws):
    ws = sample_ws
    target = ws.exports_dir / "killed"
    proc = start(EXPORT_SCRIPT, ws.root, target, "mid-write")
    try:
        assert wait_line(proc) == "parked"
        assert leftovers(ws.exports_dir) == [f".killed.tmp-{proc.pid}"]
        kill(proc)
    finally:
        proc.kill()
    result = export.export(ws, ws.exports_dir / "next")
    assert leftovers(ws.exports_dir) == [] and not target.exists()
    assert Path(result.datasheet).exists()


@pytest.mark.slow
def test_interrupted_overwrite_is_finished_by_the_next_export(sample_ws):
    ws = sample_ws
    target = ws.exports_dir / "ovr"
    export.export(ws, target)
    gone = ws.ledger.images_frame(["train"])["image_id"].iloc[0]
    ws.ledger.apply_changes([Change("set_aside", gone, reason="test", rule="test")])
    proc = start(EXPORT_SCRIPT, ws.root, target, "mid-overwrite")
    try:
        assert wait_line(proc) == "parked"
        kill(proc)
    finally:
        proc.kill()
    pid = proc.pid
    assert not target.exists() and leftovers(ws.exports_dir) == [f".ovr.old-{pid}", f".ovr.tmp-{pid}"]
    export.export(ws, ws.exports_dir / "other")
    assert leftovers(ws.exports_dir) == []
    doc = json.loads((target / "train.json").read_text())  # the complete new one won
    assert gone not in {i["imageId"] for i in doc["images"]} and (target / "DATASHEET.md").exists()
    # A rerun of the same overwrite works on the recovered folder.
    export.export(ws, target, overwrite=True)
    assert leftovers(ws.exports_dir) == [] and (target / "DATASHEET.md").exists()


def test_recovery_leaves_live_exports_alone_and_puts_back_a_lone_old_one(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "exports"
    (out / f".busy.tmp-{os.getppid()}").mkdir(parents=True)  # pytest's parent: alive, at work
    (out / f".lone.old-{dead.pid}").mkdir()  # moved aside, and the new one never got written
    (out / f".lone.old-{dead.pid}" / "DATASHEET.md").write_text("old")
    (out / f".partial.tmp-{dead.pid}").mkdir()
    (out / f".partial.tmp-{dead.pid}" / export.IN_PROGRESS).touch()
    (out / f".notours.tmp-{dead.pid}").mkdir()  # not an export's: no mark, no datasheet
    done = export.recover_interrupted(out)
    assert len(done) == 2
    assert sorted(p.name for p in out.iterdir()) == [f".busy.tmp-{os.getppid()}", f".notours.tmp-{dead.pid}", "lone"]
    assert (out / "lone" / "DATASHEET.md").read_text() == "old"


# ---- 4. Ctrl-C while the command line loads ------------------------------------------------------------------
STARTUP_SCRIPT = """
import importlib.abc
class Stall(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "typer":  # the first heavy import of the command line
            park("loading")
        return None
sys.meta_path.insert(0, Stall())
from ifa.cli.entry import main
sys.argv = ["ifa", "--help"]
main()
"""


@linux_only
def test_ctrl_c_while_the_cli_loads_prints_one_line():
    proc = start(STARTUP_SCRIPT)
    try:
        assert wait_line(proc) == "loading"
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
        err = stderr(proc)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "Traceback" not in err and err.strip().count("\n") == 0 and "interrupted" in err, err


def test_entry_imports_only_the_standard_library():
    code = ("import sys; before = set(sys.modules); import ifa.cli.entry; "
            "print(sorted(m for m in set(sys.modules) - before if not m.startswith('ifa')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = eval(out)
    assert all(m.split(".")[0] in sys.stdlib_module_names for m in loaded), loaded


def test_python_dash_m_ifa_runs_the_cli():
    done = subprocess.run([sys.executable, "-m", "ifa", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "history" in done.stdout


# ---- reports and history ----------------------------------------------------------------------------------------
def test_report_writes_are_atomic_and_sweep_dead_writers(tmp_path):
    folder = tmp_path / "reports"  # a workspace's reports folder: only there are temps swept
    folder.mkdir()
    (tmp_path / "ifa.db").touch()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / f".old-report.csv.tmp-{dead.pid}").write_text("half")
    (folder / f".busy.csv.tmp-{os.getppid()}").write_text("someone's")
    with pytest.raises(RuntimeError):
        with reports.open_text(folder / "r.csv") as fh:
            fh.write("partial")
            raise RuntimeError("killed halfway")
    assert not (folder / "r.csv").exists()
    assert sorted(p.name for p in folder.iterdir()) == [f".busy.csv.tmp-{os.getppid()}"]
    reports.write_text(folder / "r.csv", "whole\n")
    assert (folder / "r.csv").read_text() == "whole\n"


def test_history_filters_and_errors(sample_ws, tmp_path, cli):
    ws = sample_ws
    image = ws.ledger.images_frame(["train"])["image_id"].iloc[0]
    label = int(ws.ledger.image_labels(image)["label_id"].iloc[0])
    ws.ledger.apply_changes([Change("drop_label", image, label, reason="why", rule="my-rule")])
    full = history.history(ws.ledger)
    assert [a.command for a in full.applies].count("test") == 4  # three imports and the drop
    mine = history.history(ws.ledger, rule="my-rule")
    assert len(mine.applies) == 1 and mine.applies[0].changes == {"label_dropped": 1}
    imports = history.history(ws.ledger, rule="import")
    assert [a.import_counts["images_added"] for a in imports.applies] == [220, 45, 45]
    assert history.history(ws.ledger, since="2999-01-01").applies == []
    assert len(history.history(ws.ledger, apply=mine.applies[0].apply).applies) == 1
    with pytest.raises(IfaError, match="--since"):
        history.history(ws.ledger, since="yesterday")
    result = cli("history", "--rule", "my-rule", "--json", "--workspace", str(ws.root))
    assert result.exit_code == 0 and json.loads(result.output)["applies"][0]["rules"] == {"my-rule": 1}


@pytest.mark.slow  # loads torch
def test_model_decoding_uses_the_same_worker_pool(tmp_path, monkeypatch):
    # The model's pixel cache decodes through executors.process_pool above PARALLEL_FROM
    # images; force that path on a few real photos and compare with the in-process path.
    import numpy as np

    from ifa.curation.noise.model import data

    paths = np.array(sorted(str(p) for p in IMAGES_DIR.glob("*.jpg"))[:12] + [str(tmp_path / "missing.jpg")])
    monkeypatch.setattr(data, "CHUNK", 4)
    serial = data._decode_all(tmp_path / "serial.u8", paths, 24, data.SILENT, workers=1)
    monkeypatch.setattr(data, "PARALLEL_FROM", 1)
    pooled = data._decode_all(tmp_path / "pooled.u8", paths, 24, data.SILENT, workers=2)
    assert pooled.tolist() == serial.tolist() == [True] * 12 + [False]
    assert (tmp_path / "serial.u8").read_bytes() == (tmp_path / "pooled.u8").read_bytes()
