"""Synthetic iMaterialist-like labels at any scale, for the scale benchmarks.

Per group, an image carries the group with the paper's Table 1 frequency (category 90.2%
... pattern 30.8%); single-label groups give one label, multi-label groups 1 + Poisson.
Within a group, label popularity falls off as i^-0.2 * exp(-5 i / L) (a power law with an
exponential cut-off), tuned so that at 1M images about 30 labels have fewer than 500
images and about 85 more than 10K, as the paper reports (31 and 88). Mean labels per image is about 5.8, as in the paper's train split.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ifa.taxonomy import Taxonomy

# Paper, Table 1: share of train images that carry each group.
GROUP_SHARE = {"category": 0.902, "color": 0.461, "gender": 0.923, "material": 0.584,
               "neckline": 0.713, "pattern": 0.308, "sleeve": 0.724, "style": 0.603}
# Singles give 2.942 labels per image; multi-label groups must add 2.858 more to reach the
# paper's 5.8: 2.276 group presences x 1.256 labels each = 1 + Poisson(0.256).
# Repeats drawn within an image are dropped, so the Poisson mean is set a little higher.
EXTRA_MULTI = 0.42
POWER, CUTOFF = 0.2, 5.0


def label_pairs(n: int, seed: int = 0, taxonomy: Taxonomy | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(image index, label id) pairs for `n` images, sorted by image, without repeats."""
    tax = taxonomy or Taxonomy.default()
    rng = np.random.default_rng(seed)
    imgs, labs = [], []
    for group in tax.groups:
        ids = np.array(group.label_ids)
        rng.shuffle(ids)  # popularity order unrelated to id order
        rank = np.arange(1, len(ids) + 1)
        w = rank ** -POWER * np.exp(-CUTOFF * rank / len(ids))
        w /= w.sum()
        present = np.flatnonzero(rng.random(n) < GROUP_SHARE.get(group.name, 0.5))
        count = np.ones(len(present), dtype=np.int64)
        if not group.single:
            count += rng.poisson(EXTRA_MULTI, len(present))
        who = np.repeat(present, count)
        imgs.append(who)
        labs.append(ids[rng.choice(len(ids), size=len(who), p=w)])
    img, lab = np.concatenate(imgs), np.concatenate(labs)
    key = np.unique(img.astype(np.int64) * 1000 + lab)  # drop repeats within an image
    return key // 1000, key % 1000


def challenge_json(n: int, seed: int = 0, split: str = "train") -> dict:
    """A challenge-format document (string ids, camelCase keys) with `n` images."""
    img, lab = label_pairs(n, seed)
    bounds = np.searchsorted(img, np.arange(n + 1))
    lab_str = lab.astype(str).tolist()
    images = [{"imageId": str(i + 1), "url": f"https://example.invalid/{split}/{i + 1}.jpg"} for i in range(n)]
    doc = {"images": images}
    if split != "test":
        doc["annotations"] = [{"imageId": str(i + 1), "labelId": lab_str[bounds[i]:bounds[i + 1]]} for i in range(n)]
    return doc


def write_challenge(path: Path, n: int, seed: int = 0, split: str = "train", chunk: int = 100_000) -> Path:
    """Write `challenge_json(n, seed, split)` to `path` (compact separators), in pieces of
    `chunk` images, so 5M images never sit in memory as one document (the same bytes as
    `json.dump(challenge_json(...), fh, separators=(",", ":"))`)."""
    path = Path(path)
    img, lab = label_pairs(n, seed)
    bounds = np.searchsorted(img, np.arange(n + 1))
    with open(path, "w") as fh:
        fh.write('{"images":[')
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            fh.write(("," if start else "") + ",".join(
                f'{{"imageId":"{i}","url":"https://example.invalid/{split}/{i}.jpg"}}' for i in range(start + 1, stop + 1)))
        fh.write("]")
        if split != "test":
            fh.write(',"annotations":[')
            for start in range(0, n, chunk):
                stop = min(n, start + chunk)
                labs = lab[bounds[start]:bounds[stop]].astype(str).tolist()
                cuts = (bounds[start:stop + 1] - bounds[start]).tolist()
                fh.write(("," if start else "") + ",".join(
                    f'{{"imageId":"{start + k + 1}","labelId":{json.dumps(labs[cuts[k]:cuts[k + 1]], separators=(",", ":"))}}}'
                    for k in range(stop - start)))
            fh.write("]")
        fh.write("}")
    return path
