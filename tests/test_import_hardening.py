"""Hostile and odd inputs at import: links out of the folder, NUL ids, deep JSON, huge values,
ids that all live in another split, and imports with nothing to report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ifa.curation.ingest import importing
from ifa.sample import IMAGES_DIR

PHOTO = sorted(IMAGES_DIR.glob("*.jpg"))[0]


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ifa.cli.app", *argv], capture_output=True, text=True)


def _paths(ws) -> list[str]:
    return [p for (p,) in ws.ledger.conn.execute("SELECT path FROM images WHERE path IS NOT NULL")]


@pytest.fixture
def linked(tmp_path: Path) -> Path:
    """A folder with a real photo, a link to a photo inside it, and a link to /etc/passwd."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(PHOTO, folder / "real.jpg")
    os.symlink(folder / "real.jpg", folder / "sub" / "alias.jpg")
    os.symlink("/etc/passwd", folder / "passwd.jpg")
    return folder


def test_folder_import_refuses_a_link_out_of_the_folder(tmp_path, linked):
    ws = tmp_path / "ws"
    assert _cli("init", "-w", str(ws)).returncode == 0
    done = _cli("import", "folder", str(linked), "--split", "test", "-w", str(ws), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["problems"] == {"link-outside": 1} and result["images_added"] == 2
    from ifa.curation.workspace import Workspace
    with Workspace.open(ws) as w:
        paths = _paths(w)
        assert "/etc/passwd" not in paths and w.ledger.image("passwd") is None
        assert w.ledger.image("alias")["path"] == str((linked / "real.jpg").resolve())  # links inside: resolved
    report = Path(result["report"]).read_text()
    assert "passwd.jpg resolves to /etc/passwd" in report and "link-outside" in report


def test_csv_and_imat_images_refuse_a_link_out_of_their_folder(ws, linked, write_json):
    (linked / "l.csv").write_text("file,tags\nreal.jpg,Dresses\npasswd.jpg,Jeans\n")
    r = importing.import_csv(ws, linked / "l.csv", "train", "file", "tags")
    assert r.problems == {"link-outside": 1} and r.actions == {"link-outside": "image set aside, no path stored"}
    assert ws.ledger.image("passwd")["path"] is None and ws.ledger.image("passwd")["status"] == "set_aside"
    os.symlink("/etc/passwd", linked / "sub" / "pw.jpg")
    doc = write_json("t.json", {"images": [{"imageId": "pw", "url": "http://x/p.jpg"}, {"imageId": "alias"}]})
    r = importing.import_imat(ws, doc, "validation", images_dir=linked / "sub")
    # sub/alias.jpg resolves to in/real.jpg: inside the CSV's folder, outside the --images folder
    assert r.problems == {"link-outside": 2, "missing-file": 2}
    assert ws.ledger.image("pw")["path"] is None and ws.ledger.image("alias")["path"] is None
    assert "/etc/passwd" not in _paths(ws)


def test_nul_in_an_id_is_a_problem_naming_the_entry_and_other_characters_are_kept(ws, write_json, tmp_path):
    ids = ["nul\u0000byte", "nul\u0000bite", "cr\rid", "lf\nid", "tab\tid", "quote\"id", "=formula"]
    r = importing.import_imat(ws, write_json("n.json", {"images": [{"imageId": i, "url": f"http://x/{k}.jpg"}
                                                                   for k, i in enumerate(ids)],
                                                        "annotations": [{"imageId": "cr\rid", "labelId": ["a\u0000b", 17]}]}),
                              "train")
    assert r.problems == {"bad-id": 2, "unknown-label": 1} and r.images_added == 5
    assert ws.ledger.image_labels("cr\rid").set_index("label_id")["status"].value_counts().to_dict() == \
        {"active": 1, "quarantined": 1}  # the NUL label is kept quarantined, not cut at the NUL
    stored = {i for (i,) in ws.ledger.conn.execute("SELECT image_id FROM images")}
    assert stored == set(ids[2:])
    report = Path(r.report).read_text()
    assert "images[0]: its id 'nul\\x00byte' contains a NUL character" in report and "images[1]" in report
    assert "contains a NUL character" in report.splitlines()[-1]  # the label's problem
    (tmp_path / "n.csv").write_text("file,tags,id\nhttp://x/a.jpg,Dresses,a\u0000b\nhttp://x/c.jpg,Dresses,c\r\n")
    r = importing.import_csv(ws, tmp_path / "n.csv", "validation", "file", "tags", id_col="id")
    assert r.problems == {"bad-id": 1} and "line 2" in Path(r.report).read_text() and ws.ledger.image("c")


# The child reports its own peak (VmHWM) as it exits: RUSAGE_CHILDREN's ru_maxrss is the
# largest of every child this test process ever waited for, so it depended on test order.
_MEASURED = """
import atexit, sys
def _peak():
    hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
    sys.stderr.write(f"\\npeak-kib {hwm}\\n")
atexit.register(_peak)
sys.argv = ["ifa", *sys.argv[1:]]
from ifa.cli.app import main
main()
"""


def _run_measured(*argv: str) -> tuple[subprocess.CompletedProcess, float]:
    """Run the CLI in a child and return it with the child's own peak RSS in MiB."""
    done = subprocess.run([sys.executable, "-c", _MEASURED, *argv], capture_output=True, text=True)
    peak = next(int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("peak-kib "))
    return done, peak / 1024


def test_deep_json_is_refused_in_one_line_in_bounded_memory(tmp_path):
    ws = tmp_path / "ws"
    assert _cli("init", "-w", str(ws)).returncode == 0
    deep = tmp_path / "deep.json"
    deep.write_text('{"images": [{"imageId": "a", "url": ' + "[" * 20_000 + "]" * 20_000 + "}]}")
    done, peak = _run_measured("import", "imat", str(deep), "--split", "train", "-w", str(ws))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "images[0] is nested more than 64 levels deep" in done.stdout + done.stderr
    assert peak < 400, f"peak {peak:.0f} MiB"


def test_huge_label_ids_and_long_values_are_problems(ws, write_json):
    doc = {"images": [{"imageId": "a", "url": "http://x/a.jpg"}, {"imageId": "b", "url": "http://x/" + "u" * 20_000_000},
                      {"imageId": "c" * 5_000_000, "url": "http://x/c.jpg"}],
           "annotations": [{"imageId": "a", "labelId": [17, "Banana" * 100]}]}
    text = json.dumps(doc).replace('"labelId": [17,', '"labelId": [' + "9" * 5000 + ", 17,")
    r = importing.import_imat(ws, write_json("big.json", text), "train")
    assert r.problems == {"bad-url": 1, "bad-id": 1, "unknown-label": 2} and r.images_added == 1
    assert set(ws.ledger.image_labels("a").set_index("label_id")["status"]) == {"active", "quarantined"}
    report = Path(r.report).read_text()
    assert "5,000 digits, over the limit of 256" in report and "images[1]: its url is 20,000,009 characters" in report
    assert max(len(line) for line in report.splitlines()) < 400  # the report names the values, clipped


def test_ids_all_in_another_split_say_so_with_a_report(tmp_path, write_json):
    ws = tmp_path / "ws"
    assert _cli("init", "-w", str(ws)).returncode == 0
    doc = write_json("v.json", {"images": [{"imageId": "a", "url": "http://x/a.jpg"}, {"imageId": "b", "url": "http://x/b.jpg"}]})
    assert _cli("import", "imat", str(doc), "--split", "validation", "-w", str(ws)).returncode == 0
    done = _cli("import", "imat", str(doc), "--split", "train", "-w", str(ws))
    assert done.returncode == 0 and "nothing new: 2 images skipped: already in another split" in " ".join((done.stdout + done.stderr).split())
    result = json.loads(_cli("import", "imat", str(doc), "--split", "train", "-w", str(ws), "--json").stdout)
    assert result["nothing_new"] and result["problems"] == {"other-split": 2} and result["import_id"] is None
    assert Path(result["report"]).read_text().count("already imported into validation") == 2


def test_an_import_without_problems_writes_no_report(ws, write_json):
    r = importing.import_imat(ws, write_json("ok.json", {"images": [{"imageId": "a", "url": "http://x/a.jpg"}]}), "train")
    assert r.problems == {} and r.report == "" and not list((ws.root / "reports").glob("import-*"))


def test_a_file_whose_every_entry_is_refused_reports_them(ws, write_json):
    doc = write_json("bad.json", {"images": [{"imageId": "a\u0000"}, {"imageId": "b", "url": "http://x/" + "u" * 9000}]})
    r = importing.import_imat(ws, doc, "train")
    assert r.nothing_new and r.problems == {"bad-id": 1, "bad-url": 1} and Path(r.report).is_file()
