"""The README's verifier table: the share of copies verified against their original, pair by pair.

    python -m benchmarks.dedup_verifier_table [ROW NAME]

All 3,000 product + the first 1,000 CC0 photos of ../shared/data, the transforms of
benchmarks/dedup_bench.py applied to 100 product + 50 CC0 of them (seed 7) and 200
recoloured product photos; candidates and the command's decision for each pair
(`run.candidate_pairs`, `recheck.boxed_pairs`, `verify.pair_scores`, `recheck.second_look`
at 0.96; not the comparison with a cluster's kept image, which needs clusters). Prints one
table row: pairs of different product / CC0 originals passing (not the same picture by
the 3-level test) / recoloured copies passing, then per transform the share of copies
whose pair with their original passes, both sets (product / CC0). The copies and the
hashes are made once under /tmp (dedup-verifier-set*): delete them after a change to
hashing; a change to verification or the second look reuses them.
"""

from __future__ import annotations

import pickle
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks import dedup_bench as B
from ifa.curation.dedup import hashing, recheck, run, verify

FOLDER, CACHE = Path("/tmp/dedup-verifier-set"), Path("/tmp/dedup-verifier-set.pkl")
COLUMNS = ["box in a corner", "box along the bottom", "brightness +15%", "brightness -15%", "contrast +15%",
           "contrast -15%", "crop 3-5%/side", "pad 10%", "re-encode q50", "resize 50% LANCZOS", "resize 60% + q30",
           "resize 75% BILINEAR"]


def make_set() -> dict:
    """The photos, their copies (written once) and their hashes and signatures (cached)."""
    if CACHE.exists():
        return pickle.loads(CACHE.read_bytes())
    FOLDER.mkdir(exist_ok=True)
    prod, cc0 = B.files_of(B.DATASETS[1], None), B.files_of(B.DATASETS[0], 1000)
    originals = prod + cc0
    rng = np.random.default_rng(7)
    chosen = list(rng.choice(len(prod), 100, replace=False)) + list(len(prod) + rng.choice(len(cc0), 50, replace=False))
    recoloured = rng.choice(len(prod), 200, replace=False)
    paths, source, kind = list(originals), list(range(len(originals))), [-1] * len(originals)
    for t, fn in enumerate(B.TRANSFORMS.values()):
        for i in (recoloured if t == B.RECOLOURED else chosen):
            dest = FOLDER / f"{i}-{t}.jpg"
            if not dest.exists():
                with Image.open(originals[i]) as im:
                    dest.write_bytes(fn(im.convert("RGB"), int(i)))
            paths.append(dest)
            source.append(int(i))
            kind.append(t)
    jobs = [hashing.FileJob(i, str(p)) for i, p in enumerate(paths)]
    res = [r for lo in range(0, len(jobs), 500) for r in hashing.hash_batch(jobs[lo:lo + 500], ("phash",))]
    codes = np.array([r.hashes["phash"] for r in res], dtype=np.uint64)
    d = dict(paths=paths, source=np.array(source), kind=np.array(kind), codes=codes, sigs=[r.signature for r in res],
             shapes=np.array([(r.width, r.height) for r in res], float), n_prod=len(prod),
             photo=B.same_photo_sources(paths, len(originals), codes))
    CACHE.write_bytes(pickle.dumps(d))
    return d


def row(d: dict, name: str) -> str:
    """The table row of the command's decision on the set `make_set` made."""
    paths, source, kind, shapes = d["paths"], d["source"], d["kind"], d["shapes"]
    sigs, _ = verify.as_array(d["sigs"])
    codes, flags = verify.overlay_codes(d["sigs"])
    cand, by_overlay = run.candidate_pairs(d["codes"], codes, 8, flags)
    by_overlay = recheck.boxed_pairs(cand, by_overlay, flags)
    sim = verify.pair_scores(sigs, cand, flags)
    t = time.process_time()
    ok, redecoded = recheck.second_look(np.array([str(p) for p in paths], dtype=object), shapes[:, 0], shapes[:, 1],
                                        cand, sim, by_overlay, 0.96)
    print(f"{len(cand):,} candidate pairs, {redecoded:,} re-decoded in {time.process_time() - t:.1f} CPU s")
    src = d["photo"][source]
    a, b = cand[:, 0], cand[:, 1]
    originals = (kind[a] == -1) & (kind[b] == -1) & (src[a] != src[b])
    product = source[a] < d["n_prod"]
    good = {(int(x), int(y)) for x, y in cand[ok].tolist()}
    original_of = {int(s): i for i, s in enumerate(source) if kind[i] == -1}

    def found(t: int, dataset: int) -> float:
        rows = [i for i in np.flatnonzero(kind == t) if (source[i] < d["n_prod"]) == (dataset == 0)]
        return float(np.mean([tuple(sorted((int(i), original_of[int(source[i])]))) in good for i in rows]))

    names = list(B.TRANSFORMS)
    cells = [f"{int((ok & originals & product).sum())} / {int((ok & originals & ~product).sum())} / "
             f"{round(found(B.RECOLOURED, 0) * 200)}"]
    cells += [f"{found(names.index(c), 0):.2f} / {found(names.index(c), 1):.2f}" for c in COLUMNS]
    return "| " + name + " | " + " | ".join(cells) + " |"


if __name__ == "__main__":
    print(row(make_set(), sys.argv[1] if len(sys.argv) > 1 else "ifa"))
