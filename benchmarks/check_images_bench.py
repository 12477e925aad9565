"""`ifa curate check-images` against CleanVision on the same files, same run.

The real photos of ../shared/data (myntra-products: 224x224 product photos on white;
clothing-cc0: natural photos) plus problems planted by this script in a temp folder:

| kind | planted |
| --- | --- |
| placeholder | 3 "no image" pictures, each served for 50, 120 and 250 ids (some re-encoded or resized) |
| blank | flat frames in 8 colours, flat + noise (sd 1.5), a faint gradient |
| tiny | real photos resized to 1x1 .. 31 px |
| odd-aspect | real photos cut or squeezed to banners over 4:1 |
| mostly-border | real photos shrunk into a black letterbox (the picture <= 25% of the frame) |
| grayscale | real photos in grey |
| blurry | real photos under a Gaussian blur, sigma 3 to 6 |

Per kind: recall of ifa's rule and of CleanVision's matching issue type; over the real photos:
the share flagged by any of ifa's set-aside rules and by CleanVision's issue types; wall and
CPU time of the whole `ifa curate check-images` (import included, cold cache, as a fresh
process) against `Imagelab.find_issues()` on the same files.

    python -m benchmarks.check_images_bench [--real 6000] [--per-kind 40] [--workers 2]
    python -m benchmarks.check_images_bench --scale 1000000   # the rules over 1M cached rows
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SHARED = Path(os.environ.get("IFA_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
if not SHARED.exists():
    SHARED = Path("/work/shared/data")
DATASETS = ("myntra-products", "clothing-cc0")
# CleanVision's issue types that stand for each planted kind (None: it has none).
CLEANVISION_KIND = {"placeholder": ("is_exact_duplicates_issue", "is_near_duplicates_issue"),
                    "blank": ("is_low_information_issue", "is_dark_issue", "is_light_issue"),
                    "tiny": ("is_odd_size_issue",), "odd-aspect": ("is_odd_aspect_ratio_issue",),
                    "mostly-border": None, "grayscale": ("is_grayscale_issue",), "blurry": ("is_blurry_issue",)}
# CleanVision's types a curator would set aside (its duplicates flag both copies of a real
# duplicate pair, which is a different job: dedup's).
CLEANVISION_SET_ASIDE = ("is_low_information_issue", "is_dark_issue", "is_light_issue", "is_odd_size_issue",
                         "is_odd_aspect_ratio_issue")
IFA_SET_ASIDE = ("placeholder", "blank", "tiny", "odd-aspect", "mostly-border")


def real_photos(n: int, seed: int) -> list[Path]:
    photos = [p for d in DATASETS for p in sorted((SHARED / d / "images").glob("*.jpg"))]
    random.Random(seed).shuffle(photos)
    return photos[:n]


def _placeholder(k: int) -> Image.Image:
    im = Image.new("RGB", (400, 400), [(235, 235, 235), (250, 250, 250), (200, 210, 230)][k])
    d = ImageDraw.Draw(im)
    d.rectangle((120, 120, 280, 240), outline=(150, 150, 150), width=6)
    d.text((130, 280), ["NO IMAGE", "IMAGE NOT AVAILABLE", "COMING SOON"][k], fill=(120, 120, 120))
    return im


def plant(out: Path, sources: list[Path], per_kind: int, seed: int) -> dict[str, list[str]]:
    """Write planted problem files to `out`; returns {kind: [file stems]}."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    planted: dict[str, list[str]] = {k: [] for k in CLEANVISION_KIND}

    def save(kind: str, im: Image.Image, **kw) -> None:
        stem = f"planted-{kind}-{len(planted[kind]):04d}"
        im.convert("RGB").save(out / f"{stem}.jpg", "JPEG", **({"quality": 90} | kw))
        planted[kind].append(stem)

    for k, copies in enumerate((50, 120, 250)):
        base = _placeholder(k)
        for c in range(copies):
            im = base if c % 3 else base.resize((300, 300), Image.Resampling.LANCZOS)
            save("placeholder", im, quality=90 if c % 2 else 75)
    pick = lambda: Image.open(rng.choice(sources)).convert("RGB")  # noqa: E731
    colours = [(255, 255, 255), (0, 0, 0), (128, 128, 128), (240, 240, 235), (20, 20, 60), (200, 30, 30), (250, 250, 250), (60, 60, 60)]
    for c in range(per_kind):
        colour = colours[c % len(colours)]
        arr = np.full((300, 300, 3), colour, np.float32)
        if c % 3 == 1:
            arr += np.random.default_rng(c).normal(0, 1.5, arr.shape)
        elif c % 3 == 2:
            arr += np.linspace(0, 4, 300)[None, :, None]
        save("blank", Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))
        side = 1 + c % 31
        save("tiny", pick().resize((side, max(1, side - c % 3)), Image.Resampling.LANCZOS))
        im = pick()
        banner = im.crop((0, im.height // 2 - im.height // 10, im.width, im.height // 2 + im.height // 10)) if c % 2 else \
            im.resize((im.width * 2, im.height // 3))
        if banner.width / banner.height <= 4:
            banner = banner.resize((banner.height * 5, banner.height))
        save("odd-aspect", banner)
        im = pick()
        frame = Image.new("RGB", (im.width, im.height), (0, 0, 0) if c % 2 else (15, 15, 15))
        small = im.resize((max(1, im.width // 2), max(1, im.height // 2)))
        frame.paste(small, ((im.width - small.width) // 2, (im.height - small.height) // 2))
        save("mostly-border", frame)
        save("grayscale", pick().convert("L"))
        save("blurry", pick().filter(ImageFilter.GaussianBlur(3 + 3 * c / max(1, per_kind - 1))))
    return planted


def run_ifa(folder: Path, workers: int) -> tuple[dict, float, float]:
    """Import the folder into a fresh workspace and run check-images, as a user would, in a
    child process: (its --json result, wall seconds, CPU seconds of the child and its pool)."""
    ws = Path(tempfile.mkdtemp(prefix="ci-bench-ws-"))
    cmd = [sys.executable, "-m", "ifa.cli.app"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([*cmd, "init", "-w", str(ws)], check=True, capture_output=True)
    subprocess.run([*cmd, "import", "folder", str(folder), "--split", "train", "-w", str(ws)], check=True, capture_output=True)
    out = subprocess.run([*cmd, "curate", "check-images", "--workers", str(workers), "-w", str(ws), "--json"],
                         check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads(out.stdout), wall, cpu


_CLEANVISION_CHILD = """
import sys
from cleanvision import Imagelab
lab = Imagelab(filepaths=sys.argv[2:])
lab.find_issues()
lab.issues.to_pickle(sys.argv[1])
"""


def run_cleanvision(files: list[Path], out: Path):
    """`Imagelab(filepaths).find_issues()` in a child process (its own pool counted in the CPU
    seconds): (its issues frame indexed by file stem, wall seconds, CPU seconds)."""
    import pandas as pd

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", _CLEANVISION_CHILD, str(out), *map(str, files)], check=True,
                   capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    issues = pd.read_pickle(out)
    issues.index = [Path(p).stem for p in issues.index]
    return issues, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def scale(n: int) -> None:
    """The rules over `n` images' cached statistics (a synthetic challenge file imported, one
    statistics row per image written straight to the cache): the read and the rules, timed."""
    from benchmarks.synthetic import write_challenge
    from ifa.curation.image_checks import rules as image_rules
    from ifa.curation.image_checks.statistics import STAT_NAMES, VERSION
    from ifa.curation.ingest import importing
    from ifa.curation.ledger import FileInfo
    from ifa.curation.ledger.image_stats import read_stats, save_stats, stats_candidates
    from ifa.curation.workspace import Workspace

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="ci-scale-") as tmp, Workspace.init(Path(tmp) / "ws") as ws:
        importing.import_imat(ws, write_challenge(Path(tmp) / "train.json", n), "train")
        pks, ids = map(list, zip(*ws.ledger.query("SELECT pk, image_id FROM images ORDER BY pk")))
        stats = rng.normal(100, 30, (n, len(STAT_NAMES))).astype(np.float32)
        thumbs = rng.integers(0, 256, (n, 32), dtype=np.uint8)
        thumbs[: n // 1000] = thumbs[0]  # one placeholder served for 0.1% of the ids
        ws.ledger.record_files(FileInfo(i, f"/x/{pk}.jpg", "0" * 64, 1, 224, 224) for i, pk in zip(ids, pks))
        save_stats(ws.ledger, ((pk, f"/x/{pk}.jpg", 1, 1, VERSION, stats[k].tobytes(), thumbs[k].tobytes(), None)
                               for k, pk in enumerate(pks)))
        start, cpu = time.perf_counter(), time.process_time()
        stats_candidates(ws.ledger, None, ["placeholder"], VERSION)
        got = read_stats(ws.ledger, None, ["placeholder"], VERSION)
        values = np.frombuffer(b"".join(got["stats"]), np.float32).reshape(n, -1)
        thumb = np.array(got["thumb_hash"], dtype=object)
        read, read_cpu = time.perf_counter() - start, time.process_time() - cpu
        start, cpu = time.perf_counter(), time.process_time()
        hits = {r.id: r.find(values, thumb) for r in image_rules.load_rules()}
        evaluate, evaluate_cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"{n:,} images: read from the cache {read:.1f} s ({read_cpu:.1f} s CPU), rules {evaluate:.1f} s "
          f"({evaluate_cpu:.1f} s CPU), placeholder hits "
          f"{int(hits['placeholder'].sum()):,} (planted {n // 1000:,}); load {os.getloadavg()[0]:.1f}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=int, default=6000, help="real photos to mix in (of the 6,000 shared)")
    ap.add_argument("--per-kind", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=int, help="only time the rules over this many cached images")
    args = ap.parse_args(argv)
    if args.scale:
        return scale(args.scale)
    sources = real_photos(args.real, args.seed)
    with tempfile.TemporaryDirectory(prefix="ci-bench-") as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for p in sources:  # copies, not links: import refuses a link out of the folder; ids are dataset-file
            shutil.copyfile(p, folder / f"{p.parent.parent.name}-{p.name}")
        planted = plant(folder, real_photos(6000, args.seed + 1), args.per_kind, args.seed)
        files = sorted(folder.iterdir())
        result, ifa_wall, ifa_cpu = run_ifa(folder, args.workers)
        if result["images_checked"] != len(files):
            sys.exit(f"ifa checked {result['images_checked']:,} of the {len(files):,} files: the import left some out")
        issues, cv_wall, cv_cpu = run_cleanvision(files, Path(tmp) / "cleanvision.pkl")
    ifa_rules = {f["image_id"]: set(f["rules"]) for f in result["flagged"]}
    real_ids = [f"{p.parent.parent.name}-{p.stem}" for p in sources]
    print(f"{len(sources):,} real photos + {sum(map(len, planted.values())):,} planted, load {os.getloadavg()[0]:.1f}\n")
    print("| kind | planted | ifa recall | CleanVision recall |\n| --- | ---: | ---: | ---: |")
    for kind, stems in planted.items():
        ifa_hit = sum(kind in ifa_rules.get(s, ()) for s in stems) / len(stems)
        cols = CLEANVISION_KIND[kind]
        cv = "-" if cols is None else f"{issues.loc[stems, list(cols)].any(axis=1).mean():.3f}"
        print(f"| {kind} | {len(stems)} | {ifa_hit:.3f} | {cv} |")
    ifa_false = sum(bool(ifa_rules.get(i, set()) & set(IFA_SET_ASIDE)) for i in real_ids)
    cv_false = int(issues.loc[real_ids, list(CLEANVISION_SET_ASIDE)].any(axis=1).sum())
    per_rule = {r: sum(r in ifa_rules.get(i, ()) for i in real_ids) for r in ("grayscale", "blurry")}
    cv_report = {c: int(issues.loc[real_ids, c].sum()) for c in ("is_grayscale_issue", "is_blurry_issue")}
    print(f"\nreal photos flagged by a set-aside rule: ifa {ifa_false} ({ifa_false / len(real_ids):.2%}), "
          f"CleanVision (low information, dark, light, odd size, odd aspect) {cv_false} ({cv_false / len(real_ids):.2%})")
    print(f"real photos reported: ifa grayscale {per_rule['grayscale']}, blurry {per_rule['blurry']}; "
          f"CleanVision grayscale {cv_report['is_grayscale_issue']}, blurry {cv_report['is_blurry_issue']}")
    print(f"\n| tool | wall s | CPU s |\n| --- | ---: | ---: |\n| ifa curate check-images (import + cold cache, "
          f"{args.workers} workers) | {ifa_wall:.1f} | {ifa_cpu:.1f} |\n| CleanVision find_issues | {cv_wall:.1f} | {cv_cpu:.1f} |")
    print(f"\nspeed-up: wall {cv_wall / ifa_wall:.1f}x, CPU {cv_cpu / max(ifa_cpu, 1e-9):.1f}x")


if __name__ == "__main__":
    main()
