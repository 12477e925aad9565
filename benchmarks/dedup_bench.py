"""Dedup benchmark: hash speed, near-duplicate quality and pair finding, against peers.

    python -m benchmarks.dedup_bench [--files 1000] [--originals 500] [--sizes 100000 1000000]

1. Throughput, one core: ifa's phash (draft decode, batch DCT; includes reading the file
   and its sha256) vs imagehash.phash(Image.open(path)) on the same real JPEGs
   (../shared/data/clothing-cc0 and ../shared/data/myntra-products), interleaved rounds,
   best of each; printed as a ratio.
2. Quality: transformed copies of real photos (JPEG re-encode at quality 50, resize to
   half, 3% crop per side, brightness +20%) written to a temp folder; recall per transform
   (copy within k bits of its original) and precision (pairs within k bits among all
   originals and copies that come from the same photo), for ifa's phash,
   imagehash.phash and imagededup's PHash at the same k.
3. Pair finding: N codes made from the real phashes of (2) by random 1<->0 bit swaps (the
   DC bit and the 32-bit weight kept, so the skew of real phashes stays: about 3,000
   candidates per code at radius 1 over 4 contiguous 16-bit substrings, as the issue
   measured on product photos; uniform codes give about 1,000). ifa's pairs_within vs
   brute force (timed on a subsample, extrapolated as N^2) and faiss IndexBinaryMultiHash
   (4 tables of 16 bits, nflip 1: exact for k <= 7) when faiss is installed.

Peers: `pip install -e '.[bench]'` brings faiss-cpu; imagededup needs torch/torchvision,
so install it with `pip install --no-deps imagededup` (its PHash only needs numpy, scipy,
Pillow, PyWavelets, scikit-learn and tqdm, which ifa already has). Sections whose peer is
missing say so and go on.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from ifa.curation.dedup import hashing, pairs

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
def ours_hashes(paths: list[Path], method: str = "phash") -> np.ndarray:
    jobs = [hashing.FileJob(i, str(p)) for i, p in enumerate(paths)]
    out = np.zeros(len(paths), dtype=np.uint64)
    for lo in range(0, len(jobs), 500):
        for r in hashing.hash_batch(jobs[lo:lo + 500], (method,)):
            out[r.key] = r.hashes.get(method, 0)
    return out


def imagehash_hashes(paths: list[Path]) -> np.ndarray:
    import imagehash

    return np.array([int(str(imagehash.phash(Image.open(p))), 16) for p in paths], dtype=np.uint64)


def throughput(n_files: int, rounds: int) -> list[list]:
    rows, total_ours, total_peer, total_n = [], 0.0, 0.0, 0
    for ds in DATASETS:
        paths = files_of(ds, n_files)
        best_ours = best_peer = float("inf")
        for _ in range(rounds):
            t = time.perf_counter()
            imagehash_hashes(paths)
            best_peer = min(best_peer, time.perf_counter() - t)
            t = time.perf_counter()
            ours_hashes(paths)
            best_ours = min(best_ours, time.perf_counter() - t)
        size = Image.open(paths[0]).size
        rows.append([f"{ds} ({len(paths)} JPEGs, {size[0]}x{size[1]})", f"{best_peer / len(paths) * 1e3:.3f}",
                     f"{best_ours / len(paths) * 1e3:.3f}", f"{best_peer / best_ours:.2f}x"])
        total_ours, total_peer, total_n = total_ours + best_ours, total_peer + best_peer, total_n + len(paths)
    rows.append([f"both ({total_n} JPEGs)", f"{total_peer / total_n * 1e3:.3f}", f"{total_ours / total_n * 1e3:.3f}",
                 f"{total_peer / total_ours:.2f}x"])
    return rows


# ---- 2. quality ------------------------------------------------------------------------------------
def _save(im: Image.Image, path: Path, quality: int = 90) -> None:
    im.convert("RGB").save(path, "JPEG", quality=quality)


def _crop(im: Image.Image, frac: float = 0.03) -> Image.Image:
    w, h = im.size
    return im.crop((round(w * frac), round(h * frac), round(w * (1 - frac)), round(h * (1 - frac))))


TRANSFORMS = {
    "re-encode q50": lambda im, p: _save(im, p, 50),
    "resize 1/2": lambda im, p: _save(im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS), p),
    "crop 3%/side": lambda im, p: _save(_crop(im), p),
    "brightness +20%": lambda im, p: _save(ImageEnhance.Brightness(im).enhance(1.2), p),
}


def make_copies(originals: list[Path], folder: Path) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """Originals plus one copy per transform. Returns (paths, source index, transform index
    (-1 for an original))."""
    paths, source, kind = list(originals), list(range(len(originals))), [-1] * len(originals)
    for t, (name, fn) in enumerate(TRANSFORMS.items()):
        for i, src in enumerate(originals):
            dest = folder / f"{i}-{t}.jpg"
            with Image.open(src) as im:
                fn(im.convert("RGB"), dest)
            paths.append(dest)
            source.append(i)
            kind.append(t)
    return paths, np.array(source), np.array(kind)


def imagededup_phash():
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
    return PHash(verbose=False)


def quality(n_originals: int, ks: list[int]) -> tuple[list[list], np.ndarray]:
    originals = [p for ds in DATASETS for p in files_of(ds, n_originals)]
    peers: dict[str, callable] = {"ifa phash (draft decode)": ours_hashes, "imagehash.phash": imagehash_hashes}
    idd = imagededup_phash()
    if idd is not None:
        peers["imagededup PHash"] = lambda paths: np.array(
            [int(idd.encode_image(image_file=str(p)), 16) for p in paths], dtype=np.uint64)
    else:
        print("imagededup not installed: its column is left out (pip install --no-deps imagededup)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths, source, kind = make_copies(originals, Path(tmp))
        real = None
        for name, fn in peers.items():
            codes = fn(paths)
            if real is None:
                real = codes[: len(originals)]
            for k in ks:
                found = pairs.pairs_within(codes, k)
                same = source[found[:, 0]] == source[found[:, 1]]
                precision = same.mean() if len(found) else 1.0
                # per dataset: originals are the first n_originals of each, in DATASETS order
                ds_of = source // n_originals
                prec_ds = []
                for i in range(len(DATASETS)):
                    inside = (ds_of[found[:, 0]] == i) & (ds_of[found[:, 1]] == i)
                    prec_ds.append(f"{same[inside].mean():.3f}" if inside.any() else "-")
                d = pairs.popcount(codes[len(originals):] ^ codes[source[len(originals):]])
                per = [(d[kind[len(originals):] == t] <= k).mean() for t in range(len(TRANSFORMS))]
                recall = (d <= k).mean()
                rows.append([name, k, *[f"{r:.3f}" for r in per], f"{recall:.3f}", f"{precision:.3f}", *prec_ds,
                             len(found)])
    return rows, real


# ---- 3. pair finding -----------------------------------------------------------------------------------
def skewed_codes(real: np.ndarray, n: int, mean_swaps: float = 3.0, seed: int = 0) -> np.ndarray:
    """n codes, each a real phash with 1 + Poisson(mean_swaps) random swaps of a set and a
    clear bit (never the DC bit): distance 2 x swaps from its seed, weight kept at 32."""
    rng = np.random.default_rng(seed)
    codes = real[rng.integers(0, len(real), n)]
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
    return np.packbits(bits, axis=1).view(">u8").reshape(-1).astype(np.uint64)


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


def pair_finding(real: np.ndarray, sizes: list[int], k: int, brute_n: int, faiss_max: int) -> list[list]:
    pairs.pairs_within(real[:5000], k)  # compile the kernel outside the timings
    rows = _Rows()
    for n in sizes:
        codes = skewed_codes(real, n)
        cand = candidates_per_code(codes)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        found = pairs.pairs_within(codes, k)
        ours = time.perf_counter() - t
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        sub = codes[:min(n, brute_n)]
        t = time.perf_counter()
        brute = pairs.brute_force_pairs(sub, k)
        brute_t = (time.perf_counter() - t) * (n / len(sub)) ** 2
        check = np.array_equal(pairs.pairs_within(sub, k), brute)
        rows.append([f"{n:,}", k, f"{cand:,.0f}", "ifa pairs_within (MIH + numba)", f"{ours:.1f}", f"{len(found):,}",
                     f"{max(rss, rss0) / 2**20:.2f}", f"equal to brute force on {len(sub):,}: {check}"])
        rows.append([f"{n:,}", k, "", "brute force (numpy, extrapolated N^2)", f"{brute_t:.0f}", "", "",
                     f"timed on {len(sub):,}"])
        if n <= faiss_max:
            t = time.perf_counter()
            fp = faiss_pairs(codes, k)
            ft = time.perf_counter() - t
            if fp is None:
                rows.append([f"{n:,}", k, "", "faiss", "not installed", "", "", "pip install faiss-cpu"])
            else:
                rows.append([f"{n:,}", k, "", "faiss IndexBinaryMultiHash(4x16, nflip 1)", f"{ft:.1f}", f"{fp:,}", "",
                             "same pairs" if fp == len(found) else f"differs from ifa ({len(found):,})"])
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1000, help="JPEGs per dataset for throughput")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--originals", type=int, default=500, help="photos per dataset for the quality test")
    ap.add_argument("--k", type=int, nargs="+", default=[4, 6, 8, 10])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--pair-k", type=int, default=6)
    ap.add_argument("--brute", type=int, default=20_000, help="subsample the brute force is timed on")
    ap.add_argument("--faiss-max", type=int, default=10**9, help="run faiss only up to this N (0: never)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["throughput", "quality", "pairs"])
    args = ap.parse_args(argv)
    print(f"dedup benchmark; machine: {len(__import__('os').sched_getaffinity(0))} CPUs; load average "
          f"{__import__('os').getloadavg()[0]:.1f}")
    if "throughput" not in args.skip:
        table("1. phash throughput, one core (ms per image, best of rounds)",
              ["JPEGs", "imagehash.phash", "ifa phash", "ratio"], throughput(args.files, args.rounds))
    real = None
    if "quality" not in args.skip:
        rows, real = quality(args.originals, args.k)
        table(f"2. near-duplicate quality on {2 * args.originals} real photos + {len(TRANSFORMS)} copies each",
              ["hash", "k", *[f"recall {t}" for t in TRANSFORMS], "recall all", "precision",
               *[f"precision {d}" for d in DATASETS], "pairs"], rows)
    if "pairs" not in args.skip:
        if real is None:
            real = ours_hashes([p for ds in DATASETS for p in files_of(ds, None)])
        else:
            real = np.concatenate([real, ours_hashes([p for ds in DATASETS for p in files_of(ds, None)[args.originals:]])])
        table(f"3. all pairs within k among N skewed codes (from {len(real):,} real phashes); seconds, peak RSS GiB",
              ["N", "k", "candidates/code (4x16 r1)", "method", "seconds", "pairs", "peak GiB", "check"],
              pair_finding(real, args.sizes, args.pair_k, args.brute, args.faiss_max))


if __name__ == "__main__":
    main()
