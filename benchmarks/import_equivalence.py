"""Do two versions of ifa import the same inputs the same way? Results, report bytes, ledger rows.

    python -m benchmarks.import_equivalence --old /tmp/oldpath --new /work/wtpath/import [--fuzz 60] [--intended]

Each PATH is a PYTHONPATH whose `ifa` is the version to run (a folder holding a link `ifa` to a
checkout). Hand-made and seeded random imat, CSV and folder inputs (bad rows, repeats, unknown
labels, ids in another split, missing files and links, reruns) are imported by each version in
a fresh process and workspace; the script prints the cases that differ and the counts.
A CSV's labels were a set in older versions, so an image's unknown labels were reported in hash
order: `--exact` counts byte-identical reports, the default also accepts that order changed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

DRIVER = r"""
import json, sqlite3, sys
from pathlib import Path
from ifa.curation.ingest import importing
from ifa.curation.workspace import Workspace
from ifa.errors import IfaError

spec = json.loads(Path(sys.argv[1]).read_text())
out = []
with Workspace.init(Path(sys.argv[2])) as ws:
    for step in spec:
        kind, args = step[0], step[1]
        try:
            if kind == "imat":
                r = importing.import_imat(ws, Path(args["file"]), args["split"], Path(args["images"]) if args.get("images") else None,
                                          args.get("on_error", "skip"))
            elif kind == "csv":
                r = importing.import_csv(ws, Path(args["file"]), args["split"], args["image_col"], args["labels_col"],
                                         args.get("sep", "|"), args.get("id_col"), args.get("on_error", "skip"))
            else:
                r = importing.import_folder(ws, Path(args["dir"]), args["split"], args.get("on_error", "skip"))
            d = r.to_dict()
            report = d.pop("report")
            d["report_bytes"] = Path(report).read_text(encoding="utf-8") if report else None
            d.pop("import_id")
            out.append({"result": d})
        except IfaError as exc:
            out.append({"error": str(exc).split(" Each is listed in ")[0]})
    conn = ws.ledger.conn
    q = lambda sql: [list(r) for r in conn.execute(sql)]
    out.append({"ledger": {
        "images": q("SELECT pk, image_id, split, url, path, status, status_reason, status_rule, status_command, import_id FROM images ORDER BY pk"),
        "labels": q("SELECT i.image_id, l.label_id, l.source, l.status, l.status_reason, l.status_rule FROM labels l JOIN images i ON i.pk = l.image_pk ORDER BY 1, 2"),
        "issues": q("SELECT import_id, image_id, problem, detail, action FROM import_issues ORDER BY rowid"),
        "imports": q("SELECT import_id, command, format, source, split, key_style, int_ids, summary FROM imports ORDER BY import_id"),
        "events": q("SELECT command, kind, image_id, label_id, old, new, reason, rule FROM events ORDER BY event_id"),
        "raw": q("SELECT seq, raw FROM raw_label_names ORDER BY seq"),
    }})
print(json.dumps(out))
"""

KNOWN = [1, 17, 83, 105, 129, 160, 200, 228]
NAMES = ["heels", "Sneaker", "BLACK", "Banana Hat", "blue", "dresses", "Red ", "17", "-3", "999", "zz top"]


def _imat_doc(rng: random.Random, pool: list) -> dict:
    images = []
    for n in range(rng.randint(0, 14)):
        roll = rng.random()
        if roll < 0.06:
            images.append({"url": "http://x/none.jpg"})
            continue
        if roll < 0.08:
            images.append("not an object")
            continue
        key = rng.choice(["imageId", "image_id"])
        entry = {key: rng.choice(pool)}
        url = rng.choice(["http://x/{}.jpg", "https://y/{}.png", None, "", math.nan, 7, ["http://m/{}.jpg"], [], {"a": 1}])
        if isinstance(url, str):
            url = url.format(n)
        elif isinstance(url, list) and url:
            url = [url[0].format(n)]
        if url is not None or rng.random() < 0.5:
            entry["url"] = url
        images.append(entry)
    annotations = []
    for n in range(rng.randint(0, 14)):
        key = rng.choice(["imageId", "image_id"])
        labels = [rng.choice(KNOWN + NAMES + [True, 1.0, 2.5, None, 2 ** 70, [1]]) for _ in range(rng.randint(0, 4))]
        entry = {key: rng.choice(pool + ["ghost"])}
        if rng.random() < 0.9:
            entry[rng.choice(["labelId", "label_id"])] = labels if rng.random() < 0.93 else "17"
        annotations.append(entry)
    doc = {"images": images}
    if rng.random() < 0.85:
        doc["annotations"] = annotations
    return doc


def _csv_text(rng: random.Random, pool: list, id_col: bool) -> str:
    header = ["file", "tags"] + (["id"] if id_col else [])
    lines = [",".join(header)]
    for n in range(rng.randint(0, 14)):
        iid = rng.choice(pool)
        where = rng.choice([f"pics/{iid}.jpg", f"pics/{iid}.png", f"https://h/{iid}.jpg", f"missing/{iid}.jpg",
                            f"ftp://h/{iid}.jpg", "", f"pics/{iid}.jpg", "loop/l.jpg"])
        tags = " | ".join(rng.choice([str(k) for k in KNOWN] + NAMES) for _ in range(rng.randint(0, 3)))
        row = [where, f'"{tags}"'] + ([rng.choice([str(iid), "", f" {iid} "])] if id_col else [])
        roll = rng.random()
        if roll < 0.05:
            row.append("extra")
        elif roll < 0.08:
            lines.append("")
        lines.append(",".join(row))
    return "\n".join(lines) + "\n"


def _files(root: Path, pool: list) -> None:
    """Image files for the pool's ids (some missing), a folder with clashes and bad links."""
    for sub in ("pics", "imgs/a", "imgs/b", "loop"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for k, iid in enumerate(pool):
        if k % 4 != 3:
            (root / "pics" / f"{iid}.jpg").write_bytes(b"\xff\xd8\xff" + str(iid).encode())
            (root / "imgs" / ("a" if k % 2 else "b") / f"{iid}.jpg").write_bytes(b"\xff\xd8\xff")
        if k % 5 == 0:
            (root / "imgs" / "a" / f"{iid}.png").write_bytes(b"\x89PNG")
    for link, target in (("loop/l.jpg", "loop/l.jpg"), ("imgs/b/dangling.jpg", "nowhere.jpg"), ("pics/gone.jpg", "x/y.jpg")):
        if not os.path.lexists(root / link):
            os.symlink(root / target, root / link)
    (root / "imgs" / "notes.txt").write_text("not an image")


def cases(root: Path, n_fuzz: int) -> dict[str, list]:
    """name -> steps, each [kind, args]."""
    out: dict[str, list] = {}
    hand = root / "hand"
    hand.mkdir()
    pool = ["a", "b", "c", "d", "e", 1, 2, "Ünï", "e\u0301"]
    _files(hand, [str(p) for p in pool])

    def write(name: str, data) -> str:
        path = hand / name
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        return str(path)

    doc = {"images": [{"imageId": "a", "url": "http://x/a.jpg"}, {"imageId": "a", "url": "http://x/a2.jpg"},
                      {"imageId": "b"}, {"url": "u"}, {"imageId": "c", "url": math.nan}, {"imageId": "e"},
                      {"imageId": "d", "url": "http://x/d.jpg"}],
           "annotations": [{"imageId": "a", "labelId": ["83", 999, "Banana Hat"]}, {"imageId": "a", "labelId": [999, "83", "Banana Hat"]},
                           {"imageId": "b", "labelId": [17]}, {"imageId": "b", "labelId": [19]}, {"imageId": "zz", "labelId": [1]},
                           {"imageId": "d", "labelId": "17"}, {"imageId": "c", "labelId": [[1]]}]}
    f = write("hand.json", doc)
    val = write("val.json", {"images": [{"imageId": "a"}, {"imageId": "q"}], "annotations": [{"imageId": "q", "labelId": [1]}]})
    out["imat-hand-rerun-other-split"] = [["imat", {"file": f, "split": "train", "images": str(hand / "pics")}],
                                          ["imat", {"file": f, "split": "train", "images": str(hand / "pics")}],
                                          ["imat", {"file": val, "split": "validation"}],
                                          ["imat", {"file": val, "split": "validation"}]]
    out["imat-hand-fail"] = [["imat", {"file": f, "split": "train", "on_error": "fail"}]]
    out["imat-all-other-split"] = [["imat", {"file": val, "split": "train"}], ["imat", {"file": val, "split": "test"}]]
    c = write("l.csv", "file,tags\npics/a.jpg,heels | BLACK\nhttps://h/b.png,Sneaker\nmissing/c.jpg,17\n"
                       "pics/a.jpg,BLACK|heels\npics/a.png,heels\nftp://h/d.jpg,1\n,2\npics/b.jpg,3,extra\n\nloop/l.jpg,4\n"
                       "pics/e.jpg,Banana Hat|zz\npics/e.jpg,zz\n")
    out["csv-hand-rerun"] = [["csv", {"file": c, "split": "train", "image_col": "file", "labels_col": "tags"}],
                             ["csv", {"file": c, "split": "train", "image_col": "file", "labels_col": "tags"}],
                             ["csv", {"file": c, "split": "test", "image_col": "file", "labels_col": "tags"}]]
    out["csv-no-sep-fail"] = [["csv", {"file": c, "split": "train", "image_col": "file", "labels_col": "tags", "sep": ""}],
                              ["csv", {"file": c, "split": "validation", "image_col": "file", "labels_col": "tags", "on_error": "fail"}]]
    out["csv-errors"] = [["csv", {"file": c, "split": "train", "image_col": "file", "labels_col": "nope"}],
                         ["csv", {"file": write("empty.csv", ""), "split": "train", "image_col": "f", "labels_col": "t"}],
                         ["csv", {"file": str(hand / "pics"), "split": "train", "image_col": "f", "labels_col": "t"}]]
    out["folder-hand"] = [["folder", {"dir": str(hand / "imgs"), "split": "test"}], ["folder", {"dir": str(hand / "imgs"), "split": "test"}],
                          ["folder", {"dir": str(hand / "pics"), "split": "train"}], ["folder", {"dir": str(hand / "nope"), "split": "train"}]]
    out["mixed"] = [["folder", {"dir": str(hand / "pics"), "split": "train"}], ["imat", {"file": f, "split": "train"}],
                    ["csv", {"file": c, "split": "validation", "image_col": "file", "labels_col": "tags"}]]
    for k in range(n_fuzz):
        out[f"fuzz-{k}"] = _fuzz_case(root / f"fuzz{k}", k)
    return out


def _fuzz_case(d: Path, k: int) -> list:
    """Seeded random steps (imports of random files, some rerun) over files of their own in `d`."""
    rng = random.Random(k)
    d.mkdir()
    fpool = rng.sample(["a", "b", "c", "d", "e", "f", "g", "h", 1, 2, 3, "Ünï"], rng.randint(1, 8))
    _files(d, [str(p) for p in fpool])
    steps = []
    for s in range(rng.randint(1, 4)):
        split = rng.choice(["train", "train", "validation", "test"])
        on_error = "fail" if rng.random() < 0.1 else "skip"
        kind = rng.choice(["imat", "imat", "csv", "csv", "folder"])
        if kind == "imat":
            p = d / f"{s}.json"
            p.write_text(json.dumps(_imat_doc(rng, fpool)))
            steps.append(["imat", {"file": str(p), "split": split, "on_error": on_error,
                                   "images": str(d / "pics") if rng.random() < 0.5 else None}])
        elif kind == "csv":
            p = d / f"{s}.csv"
            id_col = rng.random() < 0.3
            p.write_text(_csv_text(rng, fpool, id_col))
            steps.append(["csv", {"file": str(p), "split": split, "image_col": "file", "labels_col": "tags",
                                  "id_col": "id" if id_col else None, "on_error": on_error}])
        else:
            steps.append(["folder", {"dir": str(d / rng.choice(["imgs", "pics", "imgs/a"])), "split": split, "on_error": on_error}])
        if rng.random() < 0.3:
            steps.append(steps[-1])  # a rerun
    return steps


def run(pythonpath: str, steps: list, work: Path, tag: str) -> list:
    spec = work / f"{tag}.json"
    spec.write_text(json.dumps(steps))
    env = {**os.environ, "PYTHONPATH": pythonpath, "PYTHONHASHSEED": "0"}
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(spec), str(work / f"ws-{tag}")], env=env,
                          capture_output=True, text=True)
    if proc.returncode:
        return [{"crash": proc.stderr.strip().splitlines()[-1:]}]
    return json.loads(proc.stdout)


def canonical(outputs: list) -> list:
    """Outputs with each image's consecutive unknown-label problems sorted (hash order before)."""
    def sort_runs(rows: list, key) -> list:
        out, run_ = [], []
        for row in rows + [None]:
            if run_ and (row is None or key(row) != key(run_[0])):
                out.extend(sorted(run_, key=json.dumps))
                run_ = []
            if row is not None:
                (run_.append(row) if "unknown-label" in row else out.append(row))
        return out

    outputs = json.loads(json.dumps(outputs))
    for item in outputs:
        if "result" in item and item["result"].get("report_bytes"):
            head, *rows = item["result"]["report_bytes"].splitlines()
            item["result"]["report_bytes"] = [head, *sort_runs(rows, lambda r: r.split(",")[0])]
        if "ledger" in item:
            item["ledger"]["issues"] = sort_runs(item["ledger"]["issues"], lambda r: tuple(r[:2]))
    return outputs


def intended(outputs: list) -> list:
    """Outputs as the intended changes leave them: no report file when there is no problem, and
    a rerun that adds nothing reports the ids it skipped as in another split."""
    outputs = json.loads(json.dumps(outputs))
    for item in outputs:
        result = item.get("result")
        if result and result.get("report_bytes") == "image_id,problem,detail,action\n":
            result["report_bytes"] = None
        if result and result["nothing_new"]:
            result.pop("report_bytes"), result.pop("problems"), result.pop("actions")
    return outputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True)
    ap.add_argument("--new", required=True)
    ap.add_argument("--fuzz", type=int, default=60)
    ap.add_argument("--exact", action="store_true", help="count only byte-identical outputs as the same")
    ap.add_argument("--intended", action="store_true", help="also accept the intended changes (see `intended`)")
    args = ap.parse_args()
    identical = same = changed = 0
    differ = []
    with tempfile.TemporaryDirectory(prefix="import-equiv-") as tmp:
        root = Path(tmp)
        inputs = root / "in"
        inputs.mkdir()
        all_cases = cases(inputs, args.fuzz)
        steps_run = 0
        for name, steps in all_cases.items():
            work = root / name
            work.mkdir()
            old, new = run(args.old, steps, work, "old"), run(args.new, steps, work, "new")
            steps_run += len(steps)
            if old == new:
                identical += 1
            elif not args.exact and canonical(old) == canonical(new):
                same += 1
            elif args.intended and canonical(intended(old)) == canonical(intended(new)):
                changed += 1
            else:
                differ.append(name)
                print(f"DIFFERS {name}:\n  old {json.dumps(old)[:1500]}\n  new {json.dumps(new)[:1500]}")
    print(f"{len(all_cases)} cases ({steps_run} imports): {identical} identical, {same} identical but for the order "
          f"of an image's unknown labels, {changed} differ only as intended, {len(differ)} differ{': ' + ', '.join(differ) if differ else ''}")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
