"""Second looks only where they can change the clusters (`curation.dedup.lazy`): the clusters
are those of looking at every pair again, with fewer pairs re-decoded, also when the label
check takes a pair out and the clusters are made again. Real Myntra photos from
../shared/data (IFA_SHARED_DATA elsewhere), copies made here."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from ifa.curation.dedup import decodes, hashing, lazy, pairs, recheck, verify
from ifa.curation.dedup import run as dedup
from ifa.curation.ingest import importing
from ifa.curation.workspace import Workspace

DATA = Path(os.environ.get("IFA_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
MYNTRA = DATA / "myntra-products" / "images"
needs_data = pytest.mark.skipif(not MYNTRA.is_dir(), reason=f"real photos not found under {DATA}")

# Product shots whose brightened, contrast, darkened and resized copies verify with the
# original but are near misses of each other (a compound change): every copy is taken by
# the original, so the pairs between copies cannot change a cluster.
PHOTOS = ["13634", "10063"]


def _copies(folder: Path, name: str) -> None:
    """The photo as it is, and four copies at smaller sizes (so the original is kept)."""
    with Image.open(MYNTRA / f"{name}.jpg") as im:
        rgb = im.convert("RGB")
    w, h = rgb.size

    def smaller(im: Image.Image, f: float) -> Image.Image:
        return im.resize((round(w * f), round(h * f)), Image.LANCZOS)

    rgb.save(folder / f"{name}-o.jpg", "JPEG", quality=90)
    smaller(ImageEnhance.Brightness(rgb).enhance(1.15), 0.9).save(folder / f"{name}-bright.jpg", "JPEG", quality=90)
    smaller(ImageEnhance.Contrast(rgb).enhance(1.15), 0.8).save(folder / f"{name}-contrast.jpg", "JPEG", quality=90)
    smaller(ImageEnhance.Brightness(rgb).enhance(0.85), 0.75).save(folder / f"{name}-dark.jpg", "JPEG", quality=90)
    rgb.resize((round(w * 0.6), round(h * 0.6)), Image.BILINEAR).save(folder / f"{name}-small.jpg", "JPEG", quality=40)


def _folder(root: Path) -> Path:
    folder = root / "in"
    folder.mkdir()
    for name in PHOTOS:
        _copies(folder, name)
    return folder


def _looks(paths: list[Path]) -> recheck.SecondLooks:
    """The command's candidate pairs of the files and their second look."""
    results = hashing.hash_batch([hashing.FileJob(i, str(p)) for i, p in enumerate(paths)], ("phash",))
    stored = [r.signature for r in results]
    signatures, _ = verify.as_array(stored)
    codes, flags = verify.overlay_codes(stored)
    hashes = np.array([r.hashes["phash"] for r in results], dtype=np.uint64)
    near, overlay, crop = dedup.routed_candidates(hashes, codes, flags, verify.crop_codes(stored), 8)
    sizes = np.array([Image.open(p).size for p in paths], dtype=np.float64)
    return recheck.SecondLooks(np.array([str(p) for p in paths], dtype=object), sizes[:, 0], sizes[:, 1], near,
                         verify.pair_scores(signatures, near, flags), overlay, crop, verify.DEFAULT_MIN_SIMILARITY,
                         decodes.Decodes())


def _every_pair_looked_at(looks: recheck.SecondLooks, rank: np.ndarray) -> tuple[np.ndarray, int]:
    """The clusters when every pair a look may make a copy is looked at first (the command
    before `lazy`), and how many pairs that re-decoded."""
    ok, looked = recheck.second_look(looks.paths, looks.width, looks.height, looks.near, looks.similarity,
                                     looks.overlay, looks.min_similarity, looks.crop, decodes.Decodes())
    leader = pairs.leader_clusters(rank, looks.near[ok])
    joined, _, compared = recheck.rejoin(looks.paths, leader, looks.near[ok], looks.min_similarity, None,
                                         recheck.Unverified(looks.near[~ok], looks.similarity[~ok], rank))
    return pairs.leader_clusters(rank, np.concatenate([looks.near[ok], joined])), looked + compared


def _clusters(leader: np.ndarray, names: list[str]) -> set[frozenset[str]]:
    return {frozenset(names[i] for i in np.flatnonzero(leader == k)) for k in np.unique(leader)}


@needs_data
def test_the_clusters_are_those_of_looking_at_every_pair_with_fewer_pairs_re_decoded(tmp_path: Path):
    folder = _folder(tmp_path)
    paths = sorted(folder.glob("*.jpg"))
    names = [p.stem for p in paths]
    # The command's keep policy on one split: more pixels, then the larger file, then the id.
    area = [-np.prod(Image.open(p).size) for p in paths]
    order = np.lexsort((names, [-p.stat().st_size for p in paths], area))
    rank = np.empty(len(paths), dtype=np.int64)
    rank[order] = np.arange(len(paths))
    looks = _looks(paths)
    assert looks.undecided(looks.passed()).sum() >= 4  # pairs of copies a look may still verify
    every, looked_every = _every_pair_looked_at(looks, rank)
    leader, near, _, verdicts = lazy.verified_clusters(rank, np.arange(len(paths)), looks)
    np.testing.assert_array_equal(leader, every)
    assert _clusters(leader, names) == {frozenset(f"{n}-{k}" for k in ("o", "bright", "contrast", "dark", "small"))
                                        for n in PHOTOS}
    assert verdicts.looked < looked_every, (verdicts.looked, looked_every)
    assert verdicts.undecided.any()  # the pairs between copies were left alone
    # The command decides the same, with as few pairs re-decoded.
    ws = Workspace.init(tmp_path / "ws", command="test")
    try:
        importing.import_folder(ws, folder, "train")
        r = dedup.run(ws, workers=1, report=True)
    finally:
        ws.close()
    assert {frozenset(m.image_id for m in c.members) for c in r.clusters} == _clusters(every, names)
    assert r.redecoded_pairs == verdicts.looked < looked_every
    verdict = {frozenset((row["image_a"], row["image_b"])): row["verdict"] for row in csv.DictReader(open(r.report_csv))}
    assert dedup.UNDECIDED in verdict.values() and "different" not in verdict.values(), verdict


@needs_data
def test_a_pair_met_only_once_the_label_check_splits_a_cluster_is_looked_at(tmp_path: Path):
    # The original (blue) leads and takes its four copies; the brightened and the contrast copy
    # are labelled black, so the label check takes them out of its cluster (their pixels differ).
    # The brightened copy then leads and meets the contrast copy: a near miss no scan had met.
    folder = tmp_path / "in"
    folder.mkdir()
    _copies(folder, "10063")
    labels = {"10063-o": "T-Shirts|Blue", "10063-bright": "T-Shirts|Black", "10063-contrast": "T-Shirts|Black",
              "10063-dark": "T-Shirts", "10063-small": "T-Shirts"}
    table = tmp_path / "labels.csv"
    with open(table, "w", newline="") as fh:
        csv.writer(fh).writerows([["file", "labels"], *((f"in/{k}.jpg", v) for k, v in labels.items())])
    ws = Workspace.init(tmp_path / "ws", command="test")
    try:
        importing.import_csv(ws, table, "train", "file", "labels")
        r = dedup.run(ws, workers=1, report=True)
    finally:
        ws.close()
    assert {tuple(sorted((p.image_a, p.image_b))) for p in r.possible_copies} == \
        {("10063-bright", "10063-o"), ("10063-contrast", "10063-o")}
    clusters = {c.keep: {m.image_id for m in c.members} for c in r.clusters}
    assert clusters == {"10063-o": {"10063-o", "10063-dark", "10063-small"},
                        "10063-bright": {"10063-bright", "10063-contrast"}}, clusters
    verdict = {frozenset((row["image_a"], row["image_b"])): row["verdict"] for row in csv.DictReader(open(r.report_csv))}
    assert verdict[frozenset(("10063-bright", "10063-contrast"))] == "copy"
    assert verdict[frozenset(("10063-contrast", "10063-dark"))] == dedup.UNDECIDED  # still no cluster needs it


def test_waves_give_the_clusters_of_every_verdict_on_random_graphs():
    # Any verdicts (a table stands for the second look): the waves' clusters are those of
    # every pair decided, with each pair looked at once at most and many never.
    rng = np.random.default_rng(0)
    looked_at = could = 0
    for trial in range(200):
        n = int(rng.integers(2, 40))
        near = np.unique(np.sort(rng.integers(0, n, size=(int(rng.integers(1, 4 * n)), 2)), axis=1), axis=0)
        near = near[near[:, 0] != near[:, 1]]
        truth = rng.random(len(near)) < 0.5
        ok = truth & (rng.random(len(near)) < 0.5)  # copies by their signatures
        undecided = ~ok & (rng.random(len(near)) < 0.7)
        truth &= ok | undecided  # a pair with no look stays different
        rank = rng.permutation(n)
        asked: list[int] = []

        def look(rows: np.ndarray, verified: np.ndarray) -> tuple[np.ndarray, int]:
            asked.extend(rows.tolist())
            return truth[rows], len(rows)

        leader, verdicts = lazy.clusters(rank, near, lazy.Verdicts(ok, undecided), look)
        np.testing.assert_array_equal(leader, pairs.leader_clusters(rank, near[truth]), err_msg=f"trial {trial}")
        assert len(asked) == len(set(asked)) == verdicts.looked
        assert not (verdicts.ok & verdicts.undecided).any()
        assert not len(lazy.met(rank, near, leader, verdicts.undecided))  # the last scan met only decided pairs
        looked_at += len(asked)
        could += int(undecided.sum())
    assert looked_at < 0.8 * could, (looked_at, could)
