"""Dedup benchmark: speed and quality of `ifa curate dedup`'s two stages, against peers.

    python -m benchmarks.dedup_bench [--files 1000] [--products 1600 --cc0 400 --copied 40]
                                     [--sizes 100000 1000000] [--command-files 20000] [--skip ...]

1. Throughput, one core: ifa's decode + border trim + phash + verification signature
   (`hashing.hash_batch`, includes reading the file and its sha256), without and with
   check-images' statistics (the command's pass), vs imagehash.phash(Image.open(path))
   (its colour decode counted as ours is) on the same real JPEGs
   (../shared/data/clothing-cc0 and ../shared/data/myntra-products), CPU seconds of this
   process, interleaved rounds, best of each; ratios.
2. Quality on a mixed set like the issue's: product photos + CC0 photos, and copies of
   `--copied` originals of each by the transforms in TRANSFORMS (re-encode, resizes,
   brightness and contrast +-15%, a text box in a corner or along the bottom, crop,
   padding) and one recoloured version of each (the item's hue turned, or a dark item
   made navy, charcoal or brown, a light grey or white one navy, wine or brown): its "found" column is the share merged by mistake. False removals: original photos left with no kept image
   (set aside as a copy of another photo; originals that are the same photo, mean
   absolute difference < 3 on 64x64 grey, count as one). Copies found: the copy shares a
   cluster with another image of its photo. Rows: imagehash.phash at 6 with connected
   components (ifa's earlier pairing), ifa's candidate stage alone, ifa with normalised
   correlation of 16x16 grey, ifa with the verifier's signatures alone and as the
   command decides (near misses re-decoded), imagededup PHash (its default 10 and 6).
   `--sweep 0.9 0.91` adds rows for other --min-similarity values.
3. Candidate pairs + verification + clusters: N codes made from the real phashes of all
   6,000 photos by random 1<->0 bit swaps (the DC bit and the 32-bit weight kept, so
   the skew of real phashes stays), each with its seed photo's signature +-4 levels;
   ifa's pairs_within + verify.similarity + leader_clusters, seconds and peak RSS, vs
   brute force pairs (timed on a subsample, extrapolated as N^2) and faiss
   IndexBinaryMultiHash when faiss is installed and --faiss-max allows.
4. The whole command, cold (`ifa init`, `ifa import folder` of `--command-files` photos:
   the 6,000 shared originals and copies of them by each transform in turn, made once
   under /tmp; then `ifa curate dedup --workers 2 --json` in a fresh process on a fresh
   copy of that workspace, timed) vs an imagehash.phash loop over the same files; the
   rerun from the cache; the near-miss pairs the command re-decoded and their seconds
   (its --json); the pairs of distinct photos and the recoloured copies it merged (its
   clusters, `wrong_merges`). Median of `--command-runs`; wall and CPU seconds (the machine may be shared).

Peers: `pip install -e '.[bench]'` brings faiss-cpu; imagededup needs torch/torchvision,
so install it with `pip install --no-deps imagededup` (its PHash only needs numpy, scipy,
Pillow, PyWavelets, scikit-learn and tqdm, which ifa already has). Sections whose peer is
missing say so and go on.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import resource
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

from ifa.curation.dedup import hashing, pairs, verify

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DATASETS = ("clothing-cc0", "myntra-products")


def data_root() -> Path:
    for root in (DATA, Path("/work/shared/data")):
        if root.exists():
            return root
    sys.exit("benchmark data not found: expected ../shared/data/{clothing-cc0,myntra-products}")


def files_of(dataset: str, n: int | None) -> list[Path]:
    files = sorted((data_root() / dataset / "images").glob("*.jpg"))
    return files[:n] if n else files


def table(title: str, header: list[str], rows: list[list]) -> None:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for i, r in enumerate(cells):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


# ---- 1. throughput ------------------------------------------------------------------------------
def ours_hashes(paths: list[Path], method: str = "phash", with_stats: bool = True) -> np.ndarray:
    jobs = [hashing.FileJob(i, str(p)) for i, p in enumerate(paths)]
    out = np.zeros(len(paths), dtype=np.uint64)
    for lo in range(0, len(jobs), 500):
        for r in hashing.hash_batch(jobs[lo:lo + 500], (method,), with_stats=with_stats):
            out[r.key] = r.hashes.get(method, 0)
    return out


def imagehash_hashes(paths: list[Path]) -> np.ndarray:
    import imagehash

    return np.array([int(str(imagehash.phash(Image.open(p))), 16) for p in paths], dtype=np.uint64)


def throughput(n_files: int, rounds: int) -> list[list]:
    """CPU ms per photo (this process: one core; best of `rounds`, interleaved) of
    imagehash.phash(Image.open(path)) (a full colour decode), ifa's hash_batch (read,
    sha256, reduced colour decode, trim, phash, signature) without and with check-images'
    statistics (what the command computes in the same pass), and the ratios."""
    hashing.load_kernels()
    rows, totals = [], np.zeros(3)
    for ds in DATASETS:
        paths = files_of(ds, n_files)
        best = np.full(3, np.inf)
        for _ in range(rounds):
            for k, fn in enumerate([imagehash_hashes, lambda p: ours_hashes(p, with_stats=False), ours_hashes]):
                t = time.process_time()
                fn(paths)
                best[k] = min(best[k], time.process_time() - t)
        totals += best
        size = Image.open(paths[0]).size
        rows.append(_throughput_row(f"{ds} ({len(paths)} JPEGs, {size[0]}x{size[1]})", best, len(paths)))
        n_total = sum(int(r[0].split("(")[1].split()[0]) for r in rows)
    rows.append(_throughput_row(f"both ({n_total} JPEGs)", totals, n_total))
    return rows


def _throughput_row(name: str, cpu: np.ndarray, n: int) -> list:
    peer, hashes, with_stats = cpu / n * 1e3
    return [name, f"{peer:.3f}", f"{hashes:.3f}", f"{peer / hashes:.2f}x", f"{with_stats:.3f}", f"{peer / with_stats:.2f}x"]


# ---- 2. quality ------------------------------------------------------------------------------------
def _save(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _resize(im: Image.Image, f: float) -> Image.Image:
    return im.resize((round(im.width * f), round(im.height * f)), Image.Resampling.LANCZOS)


def _crop(im: Image.Image, frac: float) -> Image.Image:
    w, h = im.size
    return im.crop((round(w * frac), round(h * frac), round(w * (1 - frac)), round(h * (1 - frac))))


def _pad(im: Image.Image, i: int) -> Image.Image:
    """10% of each side: white for even sources, black (letterbox) for odd ones."""
    pw, ph = round(im.width * 0.1), round(im.height * 0.1)
    out = Image.new("RGB", (im.width + 2 * pw, im.height + 2 * ph), (255, 255, 255) if i % 2 == 0 else (0, 0, 0))
    out.paste(im, (pw, ph))
    return out


def text_box(im: Image.Image, where: str, dark: bool, area: float = 0.08) -> Image.Image:
    """A light or dark box with text, `area` of the picture, in a corner ("tl", "tr", "bl", "br") or along the bottom."""
    im = im.copy()
    w, h = im.size
    if where == "bottom":
        x0, y0, x1, y1 = 0, h - round(h * area), w, h
    else:
        side = (area * w * h) ** 0.5
        bw, bh = round(side * 1.6), round(side / 1.6)
        x0, y0 = (0 if "l" in where else w - bw), (0 if "t" in where else h - bh)
        x1, y1 = x0 + bw, y0 + bh
    fill, ink = ((30, 30, 30), (255, 255, 255)) if dark else ((245, 240, 230), (200, 0, 0))
    draw = ImageDraw.Draw(im)
    draw.rectangle((x0, y0, x1, y1), fill=fill)
    draw.text((x0 + 3, y0 + 2), "SALE 50%", fill=ink)
    return im


def recolour(im: Image.Image, i: int) -> Image.Image:
    """The item (pixels away from white) recoloured: the hue turned by 60/120/180 degrees when
    it is saturated, else tinted navy, lifted to charcoal (a dark item) or tinted wine (a light
    one) or tinted brown."""
    a = np.asarray(im.convert("RGB")).astype(np.float64) / 255
    mask = np.abs(a - 1).max(axis=2) > 0.12
    hsv = np.asarray(im.convert("HSV")).astype(np.float64) / 255
    out = a.copy()
    if mask.any() and hsv[..., 1][mask].mean() > 0.25:
        hsv[..., 0] = (hsv[..., 0] + [60, 120, 180][i % 3] / 360) % 1
        turned = np.asarray(Image.fromarray((hsv * 255).round().astype(np.uint8), "HSV").convert("RGB")) / 255
        out[mask] = turned[mask]
    elif mask.any():
        dark = hsv[..., 2][mask].mean() < 0.4
        tint = [np.array([0.35, 0.45, 1.0]), np.array([1.0, 1.0, 1.0]), np.array([1.0, 0.7, 0.45])][i % 3]
        lum = a[mask] @ np.array([0.299, 0.587, 0.114])
        # Lifted to charcoal, a white, silver or grey item stays one with grey blotches (20,000
        # photos: 8 of those "recoloured" copies merged, looked at by eye): it is tinted wine instead.
        if i % 3 == 1 and dark:
            out[mask] = np.clip(lum * 0.6 + 0.22, 0, 1)[:, None] * tint
        elif i % 3 == 1:
            out[mask] = np.clip(lum[:, None] * np.array([1.0, 0.5, 0.55]), 0, 1)
        else:
            out[mask] = np.clip(lum[:, None] * tint * (1.6 if dark else 1.0), 0, 1)
    return Image.fromarray((out * 255).round().astype(np.uint8))


TRANSFORMS = {
    "re-encode q50": lambda im, i: _save(im, 50),
    "resize 50% LANCZOS": lambda im, i: _save(_resize(im, 0.5)),
    "resize 75% BILINEAR": lambda im, i: _save(im.resize((round(im.width * 0.75), round(im.height * 0.75)),
                                                         Image.Resampling.BILINEAR)),
    "resize 60% + q30": lambda im, i: _save(_resize(im, 0.6), 30),
    "brightness +15%": lambda im, i: _save(ImageEnhance.Brightness(im).enhance(1.15)),
    "brightness -15%": lambda im, i: _save(ImageEnhance.Brightness(im).enhance(0.85)),
    "contrast +15%": lambda im, i: _save(ImageEnhance.Contrast(im).enhance(1.15)),
    "contrast -15%": lambda im, i: _save(ImageEnhance.Contrast(im).enhance(0.85)),
    "box in a corner": lambda im, i: _save(text_box(im, ["tl", "tr", "bl", "br"][i % 4], i % 2 == 1)),
    "box along the bottom": lambda im, i: _save(text_box(im, "bottom", i % 2 == 0)),
    "crop 3-5%/side": lambda im, i: _save(_crop(im, 0.03 + 0.01 * (i % 3))),
    "pad 10%": lambda im, i: _save(_pad(im, i)),
    "recoloured (never a copy)": lambda im, i: _save(recolour(im, i)),
}
RECOLOURED = len(TRANSFORMS) - 1  # the transform whose "copies" are other items: found = merged by mistake
# Part of section 4's folder name: its copies are made again when a transform changes (2: a light item tinted wine).
TRANSFORMS_VERSION = 2


def make_set(n_products: int, n_cc0: int, n_copied: int, folder: Path, seed: int = 0):
    """Originals (product photos first) plus one copy per transform of n_copied randomly
    chosen originals of each dataset, written to folder. Returns (paths, source, kind
    (-1: original), dataset (0 product, 1 CC0))."""
    originals = files_of(DATASETS[1], n_products) + files_of(DATASETS[0], n_cc0)
    dataset = np.array([0] * n_products + [1] * n_cc0)
    rng = np.random.default_rng(seed)
    chosen = np.concatenate([rng.choice(n_products, min(n_copied, n_products), replace=False),
                             n_products + rng.choice(n_cc0, min(n_copied, n_cc0), replace=False)])
    paths, source, kind = list(originals), list(range(len(originals))), [-1] * len(originals)
    for t, fn in enumerate(TRANSFORMS.values()):
        for i in chosen.tolist():
            with Image.open(originals[i]) as im:
                data = fn(im.convert("RGB"), i)
            dest = folder / f"{i}-{t}.jpg"
            dest.write_bytes(data)
            paths.append(dest)
            source.append(i)
            kind.append(t)
    source = np.array(source)
    return paths, source, np.array(kind), dataset[source]


def same_photo_sources(paths: list[Path], n_originals: int, codes: np.ndarray) -> np.ndarray:
    """Originals that are the same photo (mean absolute difference < 3 on 64x64 grey
    thumbnails, the issue's test) get one source id: setting one aside loses nothing."""
    thumbs = {}

    def thumb(i: int) -> np.ndarray:
        if i not in thumbs:
            thumbs[i] = np.asarray(Image.open(paths[i]).convert("L").resize((64, 64)), dtype=np.float64)
        return thumbs[i]

    parent = np.arange(n_originals)
    for i, j in pairs.pairs_within(codes[:n_originals], 12).tolist():
        if np.abs(thumb(i) - thumb(j)).mean() < 3:
            parent[max(i, j)] = parent[min(i, j)]
    for i in range(n_originals):  # flatten
        while parent[i] != parent[parent[i]]:
            parent[i] = parent[parent[i]]
    return parent


def outcome(kept: np.ndarray, group: np.ndarray, source: np.ndarray, kind: np.ndarray, dataset: np.ndarray) -> dict:
    """False removals (originals' photos left with no kept image, by dataset) and copies
    found (the copy shares its cluster with another image of its photo, the original or
    another copy, and the photo is still kept) per transform."""
    has_kept = np.zeros(source.max() + 1, dtype=bool)
    has_kept[source[kept]] = True
    originals = kind == -1
    lost = originals & ~has_kept[source]
    out = {"false": [int((lost & (dataset == d)).sum()) for d in (0, 1)],
           "distinct": [int((originals & (dataset == d)).sum()) for d in (0, 1)]}
    # (cluster, photo) pairs holding more than one image
    key = group.astype(np.int64) * (source.max() + 1) + source
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    for t in range(len(TRANSFORMS)):
        rows = np.flatnonzero(kind == t)
        found = (counts[inverse[rows]] > 1) & has_kept[source[rows]]
        out[t] = [float(found[dataset[rows] == d].mean()) if (dataset[rows] == d).any() else float("nan") for d in (0, 1)]
    return out


def histogram_matched(signatures: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """The verifier tried against verify.similarity: b's thumbnail values replaced by a's
    at the same rank (undoes any monotone brightness/contrast change), then the same
    90th-percentile error. Not chosen: as many copies found, more false removals."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    out = np.empty(len(pairs), dtype=np.float32)
    if not len(pairs):
        return out
    used = np.unique(pairs)
    # Per image, once: its values in order and each value's rank among them.
    order = np.argsort(signatures[used], axis=1, kind="stable")
    sorted_values = np.take_along_axis(signatures[used], order, axis=1)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(verify.THUMB_BYTES)[None, :].repeat(len(used), 0), axis=1)
    where = np.searchsorted(used, pairs)
    for lo in range(0, len(pairs), verify.CHUNK):
        a, b = where[lo:lo + verify.CHUNK, 0], where[lo:lo + verify.CHUNK, 1]
        # b's values replaced by a's at the same rank: any brightness, contrast or gamma
        # change (a monotone map of the values) is undone; a colour change is not.
        mapped = np.take_along_axis(sorted_values[a], ranks[b], axis=1).astype(np.int16)
        err = np.abs(signatures[used[a]].astype(np.int16) - mapped).reshape(len(a), -1, 3).max(axis=2)
        out[lo:lo + verify.CHUNK] = 1.0 - np.percentile(err, verify.PERCENTILE, axis=1) / 255.0
    return out



def keep_order(sizes: np.ndarray, nbytes: np.ndarray, painted: np.ndarray) -> np.ndarray:
    """The default keep policy on one split: more pixels, then no text box painted over (painted:
    (N,) bool), then the larger file, then the index."""
    return np.lexsort((np.arange(len(sizes)), -nbytes, painted, -sizes))


def kept_connected(codes: np.ndarray, k: int, order: np.ndarray) -> np.ndarray:
    """Hash pairs within k as connected components (ifa's earlier pairing, and the usual
    imagehash recipe); the first member by `order` is kept."""
    labels = pairs.clusters(len(codes), pairs.pairs_within(codes, k))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    best = np.full(labels.max() + 1, len(codes), dtype=np.int64)
    np.minimum.at(best, labels, rank)
    return rank == best[labels], labels


def kept_ifa(codes: np.ndarray, signatures: np.ndarray, k: int, min_similarity: float, order: np.ndarray,
             scores: np.ndarray | None = None) -> np.ndarray:
    """ifa's two stages and leader clusters (`pairs.leader_clusters`), with the verifier's
    scores (or other scores, for the verifier table)."""
    cand = pairs.pairs_within(codes, k)
    sim = verify.similarity(signatures, cand) if scores is None else scores(cand)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    leader = pairs.leader_clusters(rank, cand[sim >= min_similarity])
    return leader == np.arange(len(codes)), leader


def kept_command(paths: list[Path], codes: np.ndarray, overlay: np.ndarray, signatures: np.ndarray, k: int,
                 min_similarity: float, order: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, float]:
    """What `ifa curate dedup` decides (no labels): candidates by hash or overlay code
    (`run.routed_candidates`), the signatures' score, near misses, overlay and crop candidates
    re-decoded where the clusters need them, and images left alone beside a cluster compared
    with its leader (`lazy.verified_clusters`). Also returns how many pairs were re-decoded
    and the CPU seconds that took."""
    from ifa.curation.dedup import decodes, lazy, recheck, run

    cand, by_overlay, by_crop = run.routed_candidates(codes, overlay[0], overlay[1], overlay[2], k)
    sim = verify.pair_scores(signatures, cand, overlay[1])
    files = np.array([str(p) for p in paths], dtype=object)
    t = time.process_time()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    looks = recheck.SecondLooks(files, sizes[:, 0], sizes[:, 1], cand, sim, by_overlay, by_crop, min_similarity,
                                decodes.Decodes())
    leader, near, joined, verdicts = lazy.verified_clusters(rank, np.arange(len(codes)), looks)
    seconds = time.process_time() - t
    # Each image's score against its leader, as the command's report gives it (nan for a leader).
    scores = np.concatenate([looks.scores, joined[len(looks.near):]])
    ok = verdicts.ok
    rows = np.arange(len(codes))
    against = run.best_copy_scores(near[ok], scores[ok], rows, leader, len(codes)).astype(np.float64)
    against[leader == rows] = np.nan
    return leader == rows, leader, verdicts.looked, seconds, against


def ncc_scores(thumbs: np.ndarray):
    def score(cand: np.ndarray) -> np.ndarray:
        a = thumbs[cand[:, 0]].astype(np.float64)
        b = thumbs[cand[:, 1]].astype(np.float64)
        a -= a.mean(axis=1, keepdims=True)
        b -= b.mean(axis=1, keepdims=True)
        return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1) + 1e-9)
    return score


def imagededup_phash():  # noqa: D401
    """imagededup's PHash class, or None. Its packages' __init__ import torchvision (for
    the CNN method); load the hashing module without them so torch stays untouched."""
    spec = importlib.util.find_spec("imagededup")
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).parent
    for sub in ("methods", "utils"):
        name = f"imagededup.{sub}"
        if name not in sys.modules:
            stub = types.ModuleType(name)
            stub.__path__ = [str(root / sub)]
            sys.modules[name] = stub
    try:
        from imagededup.methods.hashing import PHash
    except ImportError as exc:
        print(f"imagededup is installed but its PHash does not load: {exc}")
        return None
    import logging

    logging.getLogger("imagededup").setLevel(logging.WARNING)
    return PHash(verbose=False)


def imagededup_kept(paths: list[Path], idd, threshold: int) -> np.ndarray:
    """imagededup's own removal list (find_duplicates_to_remove) at `threshold`."""
    enc = {str(i): idd.encode_image(image_file=str(p)) for i, p in enumerate(paths)}
    gone = idd.find_duplicates_to_remove(encoding_map=enc, max_distance_threshold=threshold)
    kept = np.ones(len(paths), dtype=bool)
    kept[[int(g) for g in gone]] = False
    dups = idd.find_duplicates(encoding_map=enc, max_distance_threshold=threshold)
    edges = np.array([(int(a), int(b)) for a, bs in dups.items() for b in bs], dtype=np.int64).reshape(-1, 2)
    return kept, pairs.clusters(len(paths), edges)


def quality(n_products: int, n_cc0: int, n_copied: int, k: int, min_similarity: float,
            sweep: tuple[float, ...] = (), seed: int = 0) -> list[list]:
    from ifa.curation.dedup.run import CHECK_MARGIN

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths, source, kind, dataset = make_set(n_products, n_cc0, n_copied, Path(tmp), seed)
        n_orig = int((kind == -1).sum())
        jobs = [hashing.FileJob(i, str(p)) for i, p in enumerate(paths)]
        results = [r for lo in range(0, len(jobs), 500) for r in hashing.hash_batch(jobs[lo:lo + 500], ("phash",))]
        codes = np.array([r.hashes["phash"] for r in results], dtype=np.uint64)
        signatures, _ = verify.as_array([r.signature for r in results])
        overlay = (*verify.overlay_codes([r.signature for r in results]),
                   verify.crop_codes([r.signature for r in results]))  # (codes, flags, crop codes)
        sizes = np.array([r.width * r.height for r in results], dtype=np.float64)
        shapes = np.array([(r.width, r.height) for r in results], dtype=np.float64)
        nbytes = np.array([r.bytes for r in results], dtype=np.float64)
        order = keep_order(sizes, nbytes, (overlay[1] & verify.TEXT_BOX) > 0)
        photo = same_photo_sources(paths, n_orig, codes)
        src = photo[source]
        grey16 = np.stack([np.asarray(hashing.decode(p.read_bytes())[0].resize((16, 16), Image.Resampling.BOX)).reshape(-1)
                           for p in paths])
        ih = imagehash_hashes(paths)
        methods = {
            "imagehash.phash <= 6, connected components (ifa before)": kept_connected(ih, 6, order),
            f"ifa trimmed phash <= {k}, no verification, no chaining": kept_ifa(codes, signatures, k, 0.0, order),
            f"ifa phash <= {k} + NCC of 16x16 grey >= 0.97": kept_ifa(codes, signatures, k, 0.97, order, ncc_scores(grey16)),
            f"ifa phash <= {k} + the verifier's signatures >= {min_similarity:g}": kept_ifa(
                codes, signatures, k, min_similarity, order),
        }
        t = time.process_time()
        kept, leader, redecoded, redecode_cpu, score = kept_command(paths, codes, overlay, signatures, k,
                                                                   min_similarity, order, shapes)
        print(f"ifa curate dedup's decision: {redecoded:,} near-miss pairs re-decoded in {redecode_cpu:.2f} CPU s "
              f"(the whole decision {time.process_time() - t:.2f} CPU s)")
        aside = np.flatnonzero(leader != np.arange(len(leader)))
        other = src[aside] != src[leader[aside]]
        narrow = score[aside] < min_similarity + CHECK_MARGIN
        print(f"narrow passes (set aside under {min_similarity + CHECK_MARGIN:.3f}: check by eye): {int(narrow[~other].sum())} "
              f"of {int((~other).sum())} copies ({narrow[~other].mean():.1%}); set aside under another photo: "
              + ", ".join(f"{paths[i].name} under {paths[leader[i]].name} {score[i]:.3f}" for i in aside[other]))
        # A recoloured copy merged with its photo: set aside under it, or kept with the photo's images under it.
        recoloured = [i for i in aside if RECOLOURED in (kind[i], kind[leader[i]]) and src[i] == src[leader[i]]]
        if recoloured:
            print("recoloured copies merged (set aside under, score): "
                  + ", ".join(f"{paths[i].name} under {paths[leader[i]].name} {score[i]:.3f}" for i in recoloured))
        methods[f"ifa (the command: signatures >= {min_similarity:g}, near misses and overlay candidates re-decoded)"] = (kept, leader)
        for m in sweep:
            methods[f"ifa phash <= {k} + one-gain residual >= {m:g}"] = kept_ifa(codes, signatures, k, m, order)
        idd = imagededup_phash() if not sweep else None
        if idd is not None:
            methods["imagededup PHash (its default 10, find_duplicates_to_remove)"] = imagededup_kept(paths, idd, 10)
            methods["imagededup PHash <= 6"] = imagededup_kept(paths, idd, 6)
        else:
            print("imagededup not installed: its rows are left out (pip install --no-deps imagededup)")
        for name, (kept, group) in methods.items():
            o = outcome(kept, group, src, kind, dataset)
            false = sum(o["false"])
            rows.append([name, f"{false} ({false / sum(o['distinct']):.1%})", f"{o['false'][0]} / {o['false'][1]}",
                         *[f"{o[t][0]:.2f} / {o[t][1]:.2f}" for t in range(len(TRANSFORMS))]])
        same = n_orig - len(np.unique(photo))
        print(f"quality set: {n_products} product + {n_cc0} CC0 photos ({same} originals are the same photo as another, "
              f"mean abs diff < 3: not counted as false), {n_copied} of each copied by {len(TRANSFORMS)} transforms")
    return rows


# ---- 3. pair finding -----------------------------------------------------------------------------------
def skewed_codes(real: np.ndarray, n: int, mean_swaps: float = 3.0, seed: int = 0,
                 with_seeds: bool = False):
    """n codes, each a real phash with 1 + Poisson(mean_swaps) random swaps of a set and a
    clear bit (never the DC bit): distance 2 x swaps from its seed, weight kept at 32.
    with_seeds: also return the index of each code's real seed."""
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, len(real), n)
    codes = real[seeds]
    bits = np.unpackbits(codes.astype(">u8").view(np.uint8).reshape(n, 8), axis=1).astype(bool)
    swaps = rng.poisson(mean_swaps, n) + 1
    for s in range(1, int(swaps.max()) + 1):
        rows = np.flatnonzero(swaps >= s)
        b = bits[rows]
        ones, zeros = b.copy(), ~b
        ones[:, 0] = zeros[:, 0] = False
        ko = np.argmax(rng.random(b.shape) * ones, axis=1)
        kz = np.argmax(rng.random(b.shape) * zeros, axis=1)
        bits[rows, ko], bits[rows, kz] = False, True
    out = np.packbits(bits, axis=1).view(">u8").reshape(-1).astype(np.uint64)
    return (out, seeds) if with_seeds else out


def candidates_per_code(codes: np.ndarray) -> float:
    """Candidates a radius-1 probe of 4 contiguous 16-bit substrings would verify."""
    masks = pairs._masks_within(16, 1).astype(np.int64)
    total = 0.0
    for j in range(4):
        keys = ((codes >> np.uint64(16 * j)) & np.uint64(0xFFFF)).astype(np.int64)
        cnt = np.bincount(keys, minlength=1 << 16).astype(np.float64)
        total += (cnt * sum(cnt[np.arange(1 << 16) ^ m] for m in masks)).sum()
    return total / len(codes)


def faiss_pairs(codes: np.ndarray, k: int) -> int | None:
    try:
        import faiss
    except ImportError:
        return None
    as_bytes = np.ascontiguousarray(codes.astype(">u8").view(np.uint8).reshape(len(codes), 8))
    index = faiss.IndexBinaryMultiHash(64, 4, 16)
    index.nflip = 1
    index.add(as_bytes)
    lims, _, ids = index.range_search(as_bytes, k + 1)  # faiss: strictly below the radius
    query = np.repeat(np.arange(len(codes)), np.diff(lims.astype(np.int64)))
    return int((ids > query).sum())


class _Rows(list):
    """Rows that are also printed as they come: a 1M faiss run takes minutes."""

    def append(self, row) -> None:
        print("  ..." + " | ".join(map(str, row)), flush=True)
        super().append(row)


def pair_finding(real: np.ndarray, real_sigs: np.ndarray, sizes: list[int], k: int, min_similarity: float,
                 brute_n: int, faiss_max: int) -> list[list]:
    pairs.pairs_within(real[:5000], k)  # compile the kernel outside the timings
    rows = _Rows()
    for n in sizes:
        codes, seeds = skewed_codes(real, n, with_seeds=True)
        # Each code's signature: its seed photo's, with +-4 levels of noise (the copies a
        # real collection holds differ a little), so verification does real work.
        rng = np.random.default_rng(1)
        sigs = np.clip(real_sigs[seeds].astype(np.int16) + rng.integers(-4, 5, (n, real_sigs.shape[1]), dtype=np.int16),
                       0, 255).astype(np.uint8)
        cand = candidates_per_code(codes)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cpu = time.process_time()
        t = time.perf_counter()
        found = pairs.pairs_within(codes, k)
        t_pairs = time.perf_counter() - t
        sim = verify.similarity(sigs, found)
        t_verify = time.perf_counter() - t - t_pairs
        leader = pairs.leader_clusters(np.arange(n), found[sim >= min_similarity])
        ours = time.perf_counter() - t
        cpu = time.process_time() - cpu
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rows.append([f"{n:,}", k, f"{cand:,.0f}", "ifa pairs_within + verify + leader clusters", f"{ours:.1f} ({cpu:.1f} CPU)",
                     f"{len(found):,} ({int((sim >= min_similarity).sum()):,} verified)",
                     f"{max(rss, rss0) / 2**20:.2f}",
                     f"pairs {t_pairs:.1f} s, verify {t_verify:.1f} s, clusters {ours - t_pairs - t_verify:.1f} s; "
                     f"{int((leader != np.arange(n)).sum()):,} set aside"])
        sub = codes[:min(n, brute_n)]
        t = time.perf_counter()
        brute = pairs.brute_force_pairs(sub, k)
        brute_t = (time.perf_counter() - t) * (n / len(sub)) ** 2
        check = np.array_equal(pairs.pairs_within(sub, k), brute)
        rows.append([f"{n:,}", k, "", "brute force pairs (numpy, extrapolated N^2)", f"{brute_t:.0f}", "", "",
                     f"timed on {len(sub):,}; pairs_within equal to it: {check}"])
        if n <= faiss_max:
            t = time.perf_counter()
            fp = faiss_pairs(codes, k)
            ft = time.perf_counter() - t
            if fp is None:
                rows.append([f"{n:,}", k, "", "faiss", "not installed", "", "", "pip install faiss-cpu"])
            else:
                rows.append([f"{n:,}", k, "", "faiss IndexBinaryMultiHash(4x16) pairs", f"{ft:.1f}", f"{fp:,}", "",
                             "same pairs" if fp == len(found) else f"differs from ifa ({len(found):,})"])
    return rows


def ours_prepared(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    jobs = [hashing.FileJob(i, str(p)) for i, p in enumerate(paths)]
    results = [r for lo in range(0, len(jobs), 500) for r in hashing.hash_batch(jobs[lo:lo + 500], ("phash",))]
    return (np.array([r.hashes["phash"] for r in results], dtype=np.uint64),
            verify.as_array([r.signature for r in results])[0])


def _timed_subprocess(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, stdout) of a command run to its end; the CPU counts
    every process it waited for (its hashing workers too)."""
    import subprocess

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, env=env, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done.stdout


def _copy_one(job: tuple[str, int, int, str]) -> None:
    source, t, i, dest = job
    with Image.open(source) as im:
        Path(dest).write_bytes(list(TRANSFORMS.values())[t](im.convert("RGB"), i))


def command_set(n: int, folder: Path) -> list[Path]:
    """n photos in one folder: the shared sets' 6,000 originals (hard links, or copies),
    then copies of them by each transform of TRANSFORMS in turn (copy c: original c mod
    6,000, transform c mod len(TRANSFORMS)). Made once per n and reused (the folder's files
    are checked by count). Returns the paths, originals first."""
    from concurrent.futures import ProcessPoolExecutor

    originals = files_of(DATASETS[1], None) + files_of(DATASETS[0], None)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"o{i:05d}.jpg" for i in range(min(n, len(originals)))]
    copies = [(str(originals[c % len(originals)]), c % len(TRANSFORMS), c, str(folder / f"c{c:05d}.jpg"))
              for c in range(max(0, n - len(originals)))]
    if len(list(folder.glob("*.jpg"))) != len(paths) + len(copies):
        for p, src in zip(paths, originals):
            if not p.exists():
                try:
                    os.link(src, p)
                except OSError:
                    p.write_bytes(src.read_bytes())
        todo = [c for c in copies if not Path(c[3]).exists()]
        with ProcessPoolExecutor(max_workers=len(os.sched_getaffinity(0))) as pool:
            list(pool.map(_copy_one, todo, chunksize=64))
    return paths + [Path(c[3]) for c in copies]


def wrong_merges(clusters: list[dict], paths: list[Path], n_originals: int) -> tuple[int, int, set[str]]:
    """In the --json clusters of `command_set`'s photos (o{i}: original i; c{k}: original k mod
    n_originals by transform k mod len(TRANSFORMS)): (pairs of distinct originals with one set
    aside under the other, originals of the same photo, mean absolute difference < 3 on 64x64
    grey, not counted; recoloured copies sharing a cluster with their original's photo, kept
    or set aside; the ids of the images set aside under another such photo)."""
    def source(image_id: str) -> tuple[int, int]:
        k = int(image_id[1:])
        return (k, -1) if image_id[0] == "o" else (k % n_originals, k % len(TRANSFORMS))

    def grey(i: int) -> np.ndarray:
        with Image.open(paths[i]) as im:
            return np.asarray(im.convert("L").resize((64, 64)), dtype=np.float64)

    distinct, recoloured, members = set(), 0, set()
    for c in clusters:
        lead, lead_kind = source(c["keep"])
        for m in c["members"]:
            o, kind = source(m["image_id"])
            if m["image_id"] == c["keep"]:
                continue
            if o == lead:
                recoloured += RECOLOURED in (kind, lead_kind)
            elif np.abs(grey(o) - grey(lead)).mean() >= 3:
                distinct.add(frozenset((o, lead)))
                members.add(m["image_id"])
    return len(distinct), recoloured, members


def whole_command(n: int, workers: int, runs: int = 3, folder: Path | None = None) -> tuple[list[list], list[str]]:
    """`ifa curate dedup` on `command_set(n)` (the shared photos and transformed copies),
    cold (a fresh process and a fresh copy of the imported workspace: start-up, imports,
    hashing, pairing, verification, near misses re-decoded, reports), against an
    imagehash.phash loop over the same files in this process (imagehash imported before
    the clock starts). `runs` times each, the median; CPU seconds beside wall seconds,
    since the machine may be shared. The compiled kernels are loaded once first: numba
    compiles them into its disk cache on the first use after an install or an edit
    (~10 s), which is not a cost of a run. Returns (rows, notes)."""
    import json
    import shutil
    import subprocess

    import imagehash

    hashing.load_kernels()
    folder = folder or Path(tempfile.gettempdir()) / f"ifa-dedup-bench-{n}-v{TRANSFORMS_VERSION}"
    paths = command_set(n, folder)
    env = dict(os.environ)
    cli = [sys.executable, "-m", "ifa.cli.app"]
    cold, cached, notes = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        imported = Path(tmp) / "imported"
        subprocess.run(cli + ["init", "--workspace", str(imported)], check=True, capture_output=True, env=env)
        subprocess.run(cli + ["import", "folder", str(folder), "--split", "train", "--workspace",
                              str(imported)], check=True, capture_output=True, env=env)
        for i in range(runs):
            ws_dir = Path(tmp) / f"ws{i}"
            shutil.copytree(imported, ws_dir)
            dedup = cli + ["curate", "dedup", "--workspace", str(ws_dir), "--workers", str(workers), "--json"]
            wall, cpu, out = _timed_subprocess(dedup, env)
            cold.append((wall, cpu))
            found = json.loads(out)
            notes.append(f"cold run {i + 1}: {found['images_hashed']:,} hashed, {len(found['clusters']):,} clusters, "
                         f"{found['redecoded_pairs']:,} near-miss pairs re-decoded in {found['redecode_seconds']:.2f} s "
                         f"({found['redecode_seconds'] / wall:.1%} of the command's {wall:.2f} s wall)")
            distinct, recoloured, under_other = wrong_merges(found["clusters"], paths, min(n, 6000))
            narrow = {x["image_id"] for x in found["check_by_eye"]}
            aside = sum(len(c["members"]) - 1 for c in found["clusters"])
            notes.append(f"cold run {i + 1}: {distinct} pairs of distinct photos merged ({distinct / min(n, 6000):.2%} "
                         f"of the originals), {recoloured} recoloured copies merged with their original; narrow passes "
                         f"(check by eye) {len(narrow):,} of {aside:,} set aside, {len(narrow & under_other)} of the "
                         f"{len(under_other)} set aside under another photo")
            cached.append(_timed_subprocess(dedup, env)[:2])
            shutil.rmtree(ws_dir)
    peer = []
    for _ in range(runs):
        t, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        for p in paths:
            imagehash.phash(Image.open(p))
        after = resource.getrusage(resource.RUSAGE_SELF)
        peer.append((time.perf_counter() - t,
                     (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)))
    (peer_wall, peer_cpu), (ours_wall, ours_cpu), (cached_wall, cached_cpu) = (
        tuple(float(np.median(col)) for col in zip(*m)) for m in (peer, cold, cached))
    n_orig = min(n, 6000)
    rows = [[f"{len(paths):,} photos ({n_orig:,} shared originals + {len(paths) - n_orig:,} transformed copies)",
             f"{peer_wall:.2f} ({peer_cpu:.2f})", f"{ours_wall:.2f} ({ours_cpu:.2f})",
             f"{peer_wall / ours_wall:.2f}x", f"{peer_cpu / ours_cpu:.2f}x", f"{cached_wall:.2f} ({cached_cpu:.2f})"]]
    return rows, notes


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1000, help="JPEGs per dataset for throughput")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--products", type=int, default=1600, help="product photos in the quality set")
    ap.add_argument("--cc0", type=int, default=400, help="CC0 photos in the quality set")
    ap.add_argument("--copied", type=int, default=40, help="originals of each dataset copied by every transform")
    ap.add_argument("--seed", type=int, default=0, help="which originals the quality set copies")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--brute", type=int, default=20_000, help="subsample the brute force is timed on")
    ap.add_argument("--faiss-max", type=int, default=0, help="run faiss only up to this N (0: never)")
    ap.add_argument("--command-files", type=int, default=20_000,
                    help="photos for the whole-command timing (the shared originals, then transformed copies, under /tmp)")
    ap.add_argument("--workers", type=int, default=2, help="hashing processes of the whole-command timing")
    ap.add_argument("--command-runs", type=int, default=1, help="runs of the whole-command timing (median)")
    ap.add_argument("--sweep", type=float, nargs="*", default=[], help="also try these --min-similarity values")
    ap.add_argument("--skip", nargs="*", default=[], choices=["throughput", "quality", "pairs", "command"])
    ap.add_argument("--min-similarity", type=float, default=None,
                    help="the verifier's bar, sections 2 and 3 (default: the command's, 0.96)")
    args = ap.parse_args(argv)
    from ifa.curation.dedup.run import DEFAULT_MIN_SIMILARITY, DEFAULT_THRESHOLD
    k = DEFAULT_THRESHOLD["phash"]
    min_sim = DEFAULT_MIN_SIMILARITY if args.min_similarity is None else args.min_similarity
    print(f"dedup benchmark; machine: {len(os.sched_getaffinity(0))} CPUs; load average {os.getloadavg()[0]:.1f}")
    if "throughput" not in args.skip:
        table("1. hashing + verification signature, one core (CPU ms per image, best of rounds)",
              ["JPEGs", "imagehash.phash", "ifa phash + signature", "ratio", "+ check-images' statistics (the command)",
               "ratio"], throughput(args.files, args.rounds))
    if "quality" not in args.skip:
        table("2. false removals (photos left with no kept image; product / CC0) and copies found (product / CC0)",
              ["method", "false removals", "product / CC0", *TRANSFORMS],
              quality(args.products, args.cc0, args.copied, k, min_sim, tuple(args.sweep), args.seed))
    if "pairs" not in args.skip:
        real, real_sigs = ours_prepared([p for ds in DATASETS for p in files_of(ds, None)])
        table(f"3. candidate pairs + verification among N skewed codes with signatures (from {len(real):,} real "
              f"photos); wall seconds (CPU seconds, all threads), peak RSS GiB",
              ["N", "k", "candidates/code (4x16 r1)", "method", "seconds", "pairs", "peak GiB", "detail"],
              pair_finding(real, real_sigs, args.sizes, k, min_sim, args.brute, args.faiss_max))
    if "command" not in args.skip:
        rows, notes = whole_command(args.command_files, args.workers, args.command_runs)
        table(f"4. the whole command, cold, against an imagehash.phash loop (median of {args.command_runs}; wall "
              f"seconds (CPU seconds))",
              ["photos", "imagehash.phash loop", f"ifa curate dedup --workers {args.workers}", "ratio (wall)",
               "ratio (CPU)", "rerun from cache"],
              rows)
        print("\n".join(notes))
        print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
