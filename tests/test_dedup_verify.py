"""Dedup's second stage and its clusters on real photos from ../shared/data: planted copies
are found, distinct catalogue photos with the same silhouette are not merged, padded
copies match their originals, clusters do not chain, reruns from the cache agree,
restore undoes everything, unreadable files go aside under their own rule, and small or
extreme pictures hash."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance

from ifa.curation.dedup import hashing, pairs, verify
from ifa.curation.dedup import run as dedup
from ifa.curation.ingest import importing
from ifa.curation.restore import restore
from ifa.curation.workspace import Workspace
from ifa.tests.support.dedup import clusters_of

# ../shared/data beside the clone (as CI has it); IFA_SHARED_DATA points elsewhere (a worktree).
DATA = Path(os.environ.get("IFA_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
MYNTRA = sorted((DATA / "myntra-products" / "images").glob("*.jpg"))
CC0 = sorted((DATA / "clothing-cc0" / "images").glob("*.jpg"))
needs_data = pytest.mark.skipif(not MYNTRA or not CC0, reason=f"real photos not found under {DATA}")


def _jpeg(im: Image.Image, path: Path, quality: int = 90) -> None:
    im.convert("RGB").save(path, "JPEG", quality=quality)


def _pad(im: Image.Image, colour) -> Image.Image:
    pw, ph = round(im.width * 0.1), round(im.height * 0.1)
    out = Image.new("RGB", (im.width + 2 * pw, im.height + 2 * ph), colour)
    out.paste(im, (pw, ph))
    return out


def _overlay(im: Image.Image) -> Image.Image:
    im = im.convert("RGB").copy()
    ImageDraw.Draw(im).text((round(im.width * 0.03), round(im.height * 0.03)), "SALE", fill=(220, 0, 0))
    return im


# The copies every one of the test's photos must find. Known misses of the hash stage on
# catalogue shots (the note of issue 12): brightness +15%, a black letterbox and a corner
# overlay change where the white background is trimmed, so the trimmed phash moves.
COPIES = {
    "q50": lambda im, p: _jpeg(im, p, 50),
    "resize60": lambda im, p: _jpeg(im.resize((round(im.width * 0.6), round(im.height * 0.6)), Image.Resampling.LANCZOS), p),
    "padwhite": lambda im, p: _jpeg(_pad(im, (255, 255, 255)), p),
}
MORE_COPIES = {  # found for the CC0 (natural) photos as well
    "bright15": lambda im, p: _jpeg(ImageEnhance.Brightness(im.convert("RGB")).enhance(1.15), p),
    "padblack": lambda im, p: _jpeg(_pad(im, (0, 0, 0)), p),
    "sale": lambda im, p: _jpeg(_overlay(im), p),
}


def workspace_of(root: Path, folder: Path) -> Workspace:
    ws = Workspace.init(root / "ws", command="test")
    importing.import_folder(ws, folder, "train")
    return ws


@needs_data
def test_planted_copies_are_found_and_restore_undoes_everything(tmp_path: Path):
    folder = tmp_path / "in"
    folder.mkdir()
    originals = MYNTRA[:6:2] + CC0[:6:2]
    for i, src in enumerate(originals):
        shutil.copy(src, folder / f"o{i}.jpg")
        with Image.open(src) as im:
            for name, make in (COPIES | MORE_COPIES if src in CC0 else COPIES).items():
                make(im, folder / f"o{i}-{name}.jpg")
    for src in MYNTRA[100:110] + CC0[100:110]:  # unrelated photos around them
        shutil.copy(src, folder / f"x-{src.stem}.jpg")
    ws = workspace_of(tmp_path, folder)
    try:
        r = dedup.run(ws, workers=1, report=False)
        found = clusters_of(r)
        family_of = {p.stem: p.stem.split("-")[0] for p in folder.glob("*.jpg")}
        planted = found_copies = 0
        for keep, members in found.items():
            families = {family_of[m] for m in members}
            assert len(families) == 1 and not family_of[keep].startswith("x"), members  # nothing foreign joins
        for i, src in enumerate(originals):
            cluster = next((members for members in found.values() if f"o{i}" in members), {f"o{i}"})
            copies = {p.stem for p in folder.glob(f"o{i}-*.jpg")}
            planted += len(copies)
            found_copies += len(copies & cluster)
            if src in CC0:  # natural photos: every copy is found
                assert copies <= cluster, (src.name, copies - cluster)
        # Catalogue shots: most (measured 9 of 12 here; the misses are hash-stage misses).
        assert found_copies >= 0.85 * planted, (found_copies, planted)
        assert all(m.similarity is not None and m.similarity >= r.min_similarity for c in r.clusters for m in c.members)
        # Over 5% of the images looked at would go: the summary says so first.
        assert any("over 5%" in w for w in r.warnings) and len(r.set_aside) > 0.05 * r.images_considered
        applied = dedup.run(ws, workers=1, apply=True, report=False)
        assert len(ws.ledger.set_aside_images(rule="duplicate")) == len(applied.set_aside) == sum(len(c.members) - 1 for c in r.clusters)
        back = restore(ws.ledger, rule="duplicate")
        assert sorted(back.images) == sorted(i for i, _ in applied.set_aside)
        assert ws.ledger.set_aside_images(rule="duplicate").empty
        # From the cache: nothing decoded again, the same clusters.
        again = dedup.run(ws, workers=1, report=False)
        assert again.images_hashed == 0 and clusters_of(again) == found
    finally:
        ws.close()


def _distinct_candidates(files: list[Path], limit: int) -> list[tuple[Path, Path]]:
    """Pairs of clearly different photos (mean absolute difference of 64x64 grey
    thumbnails over 12 levels) whose trimmed phashes are candidates (within the default
    threshold): what a hash alone would merge."""
    codes = np.array([int(hashing.METHODS["phash"].hash_pictures([hashing.decode(p.read_bytes())[0]])[0])
                      for p in files], dtype=np.uint64)
    thumbs = np.stack([np.asarray(Image.open(p).convert("L").resize((64, 64)), dtype=np.float64) for p in files])
    out, used = [], set()
    for i, j in pairs.pairs_within(codes, dedup.DEFAULT_THRESHOLD["phash"]).tolist():
        if i in used or j in used or np.abs(thumbs[i] - thumbs[j]).mean() <= 12:
            continue
        used |= {i, j}
        out.append((files[i], files[j]))
        if len(out) == limit:
            break
    return out


@needs_data
def test_distinct_catalogue_photos_with_the_same_silhouette_are_not_merged(tmp_path: Path):
    chosen = _distinct_candidates(MYNTRA[:400], 12)
    assert len(chosen) >= 8  # catalogue shots on white: plenty of hash look-alikes
    folder = tmp_path / "in"
    folder.mkdir()
    for a, b in chosen:
        shutil.copy(a, folder / a.name)
        shutil.copy(b, folder / b.name)
    ws = workspace_of(tmp_path, folder)
    try:
        r = dedup.run(ws, workers=1, report=True)
        assert r.candidate_pairs >= len(chosen)  # the hash stage pairs them ...
        assert r.clusters == [] and r.set_aside == []  # ... the verifier does not
        # Hash-only (every candidate accepted) is what used to happen.
        loose = dedup.run(ws, workers=1, min_similarity=0.0, report=False)
        assert len(loose.set_aside) >= len(chosen)
        # The pairs CSV says why: hash distance and verification score per pair.
        rows = Path(r.report_csv).read_text().splitlines()
        assert rows[0] == "image_a,split_a,image_b,split_b,kind,distance,similarity,verdict,cluster_keep"
        assert len(rows) - 1 == r.pairs and all(row.split(",")[7] == "different" for row in rows[1:])
    finally:
        ws.close()


def test_clusters_never_chain():
    # a~b and b~c but not a~c: a keeps b; c is not pulled in through b.
    leader = pairs.leader_clusters(np.array([0, 1, 2]), np.array([[0, 1], [1, 2]]))
    assert leader.tolist() == [0, 0, 2]
    # The best-ranked item leads even when it is listed last.
    leader = pairs.leader_clusters(np.array([2, 1, 0]), np.array([[0, 1], [1, 2]]))
    assert leader.tolist() == [0, 2, 2]
    # A star around the leader stays one cluster; loners lead themselves.
    leader = pairs.leader_clusters(np.arange(5), np.array([[0, 1], [0, 2], [0, 3]]))
    assert leader.tolist() == [0, 0, 0, 0, 4]


@needs_data
def test_a_chain_of_real_photos_does_not_join_its_ends(tmp_path: Path):
    """B is A with its right half from C: with the verifier off (every candidate is a
    copy) A~B and B~C can both pass while A and C differ; the kept image of each cluster
    must match each member directly."""
    a, c = (Image.open(p).convert("RGB") for p in (CC0[0], CC0[1]))
    c = c.resize(a.size)
    b = a.copy()
    b.paste(c.crop((a.width // 2, 0, a.width, a.height)), (a.width // 2, 0))
    folder = tmp_path / "in"
    folder.mkdir()
    _jpeg(a, folder / "a.jpg", 95)
    _jpeg(b, folder / "b.jpg", 90)
    _jpeg(c, folder / "c.jpg", 85)
    ws = workspace_of(tmp_path, folder)
    try:
        for k in (64, 32):
            r = dedup.run(ws, workers=1, threshold=min(k, 32), min_similarity=0.0, report=False)
            for cl in r.clusters:
                assert not {"a", "c"} <= {m.image_id for m in cl.members}
    finally:
        ws.close()


@needs_data
@pytest.mark.parametrize("which, colour", [("cc0", (255, 255, 255)), ("cc0", (0, 0, 0)), ("cc0", (40, 90, 160)),
                                           ("myntra", (255, 255, 255)), ("myntra", (0, 0, 0))])
def test_padded_copies_trim_back_to_their_original(which, colour):
    # The benchmark finds 97% of CC0 and 90% of product pad-10% copies (the README table):
    # of these photos, at least all but one must pass both stages.
    sources = CC0[3:7] if which == "cc0" else MYNTRA[3:7]
    matched = 0
    for src in sources:
        with Image.open(src) as im:
            base = im.convert("RGB")
        buf_o, buf_p = io.BytesIO(), io.BytesIO()
        base.save(buf_o, "JPEG", quality=90)
        _pad(base, colour).save(buf_p, "JPEG", quality=90)
        o, p = hashing.prepare(buf_o.getvalue()), hashing.prepare(buf_p.getvalue())
        d = bin(int(hashing.METHODS["phash"].hash_pictures([o.grey])[0])
                ^ int(hashing.METHODS["phash"].hash_pictures([p.grey])[0])).count("1")
        sigs, _ = verify.as_array([o.signature, p.signature])
        score = verify.similarity(sigs, np.array([[0, 1]]))[0]
        matched += d <= dedup.DEFAULT_THRESHOLD["phash"] and score >= verify.DEFAULT_MIN_SIMILARITY
    assert matched >= len(sources) - 1, (which, colour, matched)


def test_trim_box_finds_the_padding():
    rng = np.random.default_rng(0)
    inner = rng.integers(0, 200, (80, 30), dtype=np.uint8)
    framed = np.full((100, 70), 255, dtype=np.uint8)
    framed[7:87, 11:41] = inner
    top, bottom, left, right = hashing.trim_box(framed)
    # All the border goes, and at most BORDER_MASS of what it framed (plus the line where
    # border and picture blend) goes with it.
    assert 7 <= top <= 7 + 3 and 87 - 3 <= bottom <= 87 and 11 <= left <= 11 + 2 and 41 - 2 <= right <= 41
    black = np.zeros((120, 90), dtype=np.uint8)  # a black letterbox around the white frame
    black[10:110, 10:80] = framed
    assert hashing.trim_box(black) == (top + 10, bottom + 10, left + 10, right + 10)
    assert hashing.trim_box(inner) == (0, 80, 0, 30)  # nothing flat to trim
    flat = np.full((50, 50), 128, dtype=np.uint8)
    assert hashing.trim_box(flat) == (0, 50, 0, 50)  # a flat picture keeps its box


def test_a_sky_is_not_a_border():
    # A smooth sky over a scene: its top line spans 20 grey levels, flat enough for the old
    # single tolerance of 24, not for a border (FLAT_TOLERANCE). Trimming it cut each copy
    # of a natural photo a little differently and lost those copies.
    rng = np.random.default_rng(5)
    picture = rng.integers(0, 120, (90, 120), dtype=np.uint8)
    picture[:30] = np.linspace(190, 210, 120, dtype=np.uint8)[None, :]
    assert hashing.trim_box(picture) == (0, 90, 0, 120)
    assert hashing.trim_box_reference(picture) == (0, 90, 0, 120)
    noisy_white = picture.copy()  # a real border, with JPEG-like noise of a few levels
    noisy_white[:30] = 250 + rng.integers(-3, 4, (30, 120)).astype(np.uint8)
    assert hashing.trim_box(noisy_white)[0] >= 30


def test_a_corner_badge_does_not_move_the_box():
    # A product on white and the same with a small dark badge in the top-left corner,
    # away from the item: the badge is an island of content and goes with the border.
    rng = np.random.default_rng(7)
    plain = np.full((112, 112), 255, dtype=np.uint8)
    plain[20:100, 40:80] = rng.integers(0, 150, (80, 40), dtype=np.uint8)
    badge = plain.copy()
    badge[3:9, 3:20] = 40
    box = hashing.trim_box(plain)
    assert hashing.trim_box(badge) == box == hashing.trim_box_reference(badge)
    assert hashing.refine_box(badge, box) == hashing.refine_box(plain, box)
    big = plain.copy()  # a second item as large as the first is content, not an island
    big[20:100, 5:30] = rng.integers(0, 150, (80, 25), dtype=np.uint8)
    assert hashing.trim_box(big)[2] < 10


@needs_data
def test_most_natural_photos_keep_their_frame():
    boxes = []
    for src in CC0[:40]:
        grey = hashing.grey_of(hashing.decode_rgb(src.read_bytes())[0])
        boxes.append(hashing.trim_box(grey) == (0, grey.shape[0], 0, grey.shape[1]))
    assert sum(boxes) >= 32, sum(boxes)  # 64% of CC0 photos were trimmed with one tolerance of 24


@pytest.mark.parametrize("size", [(400, 30), (30, 400), (1, 1), (63, 64), (2000, 5)])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_small_and_extreme_pictures_hash(tmp_path: Path, size, fmt):
    rng = np.random.default_rng(1)
    im = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    path = tmp_path / f"x.{fmt.lower()}"
    im.save(path, fmt)
    [r] = hashing.hash_batch([hashing.FileJob(1, str(path))], ("phash", "dhash"))
    assert r.reason is None and r.decoded, r.detail
    assert set(r.hashes) == {"phash", "dhash"} and len(r.signature) == verify.SIGNATURE_BYTES
    assert (r.width, r.height) == size


def test_unreadable_files_go_aside_under_their_own_rule(tmp_path: Path):
    from ifa.tests.support.dedup import make_workspace  # the scenario with trunc, empty and text files

    ws = make_workspace(tmp_path)
    try:
        dry = dedup.run(ws, workers=1, report=False)
        assert sorted(dry.unreadable_set_aside) == ["empty", "text", "trunc"] and not dry.applied
        assert ws.ledger.set_aside_images(rule="unreadable-file").empty
        r = dedup.run(ws, workers=1, apply=True, report=False)
        gone = ws.ledger.set_aside_images(rule="unreadable-file")
        assert dict(zip(gone["image_id"], gone["status_reason"])) == {
            "trunc": "unreadable-file:truncated", "empty": "unreadable-file:empty-file", "text": "unreadable-file:not-an-image"}
        again = dedup.run(ws, workers=1, apply=True, report=False)
        assert again.unreadable_set_aside == [] and len(ws.ledger.set_aside_images(rule="unreadable-file")) == 3
        # A file replaced by a readable one comes back by itself; restore undoes the rest.
        Path(ws.ledger.image("text")["path"]).write_bytes(Path(ws.ledger.image("e")["path"]).read_bytes())
        fixed = dedup.run(ws, workers=1, apply=True, report=False)
        assert fixed.unreadable_restored == ["text"]
        back = restore(ws.ledger, rule="unreadable-file")
        assert sorted(back.images) == ["empty", "trunc"]
        assert ws.ledger.set_aside_images(rule="unreadable-file").empty
        assert r.applied
    finally:
        ws.close()


@pytest.mark.parametrize("width, whole", [(verify.THUMB_BYTES, False), (24 * 24 * 3, True)])
def test_compiled_scores_equal_the_numpy_reference(width, whole):
    rng = np.random.default_rng(2)
    base = rng.integers(0, 256, (300, width), dtype=np.uint8)
    brighter = np.clip(base * 1.15 + rng.integers(-4, 5, base.shape), 0, 255).astype(np.uint8)
    sigs = np.concatenate([base, brighter])
    pairs_ = np.concatenate([np.stack([np.arange(300), np.arange(300, 600)], axis=1),
                             rng.integers(0, 600, (verify.KERNEL_MIN, 2))])
    compiled = verify.similarity(sigs, pairs_, whole)
    assert len(pairs_) >= verify.KERNEL_MIN  # the kernel scored these; slices below KERNEL_MIN take the numpy reference
    step = verify.KERNEL_MIN // 2
    reference = np.concatenate([verify.similarity(sigs, pairs_[lo:lo + step], whole)
                                for lo in range(0, len(pairs_), step)])
    if whole:  # the second fit leaves out the pixels past a quantile: a pixel at the cut may fall either way
        assert np.mean(np.abs(compiled - reference) > 1e-6) < 1e-3
        np.testing.assert_allclose(compiled, reference, atol=1e-2)
    else:
        np.testing.assert_allclose(compiled, reference, atol=1e-6)
    assert compiled[:300].min() >= verify.DEFAULT_MIN_SIMILARITY  # brightened copies pass
    assert np.median(compiled[300:]) < 0.8  # unrelated random thumbnails do not


@needs_data
def test_a_cluster_over_20_members_comes_first_with_a_warning(tmp_path: Path):
    folder = tmp_path / "in"
    folder.mkdir()
    with Image.open(CC0[10]) as im:
        base = im.convert("RGB")
    for q in range(72, 96):  # 24 re-encodes: 25 images of one photo
        _jpeg(base, folder / f"q{q}.jpg", q)
    shutil.copy(CC0[10], folder / "original.jpg")
    for src in CC0[20:23]:
        shutil.copy(src, folder / src.name)
    ws = workspace_of(tmp_path, folder)
    try:
        r = dedup.run(ws, workers=1)
        assert r.clusters[0].large and len(r.clusters[0].members) == 25, [len(c.members) for c in r.clusters]
        assert any("more than 20 members" in w for w in r.warnings)
        html = Path(r.report_html).read_text()
        assert html.index("Warning: clusters over 20 members") < html.index("Other duplicates")
        assert "similarity" in html
    finally:
        ws.close()


@needs_data
def test_compiled_trim_equals_the_numpy_reference():
    pictures = []
    for src in MYNTRA[:40] + CC0[:40]:
        with Image.open(src) as im:
            base = im.convert("RGB")
        for variant in (base, _pad(base, (0, 0, 0)), _pad(base, (255, 255, 255)), _overlay(base)):
            buf = io.BytesIO()
            variant.save(buf, "JPEG", quality=85)
            pictures.append(hashing.grey_of(hashing.decode_rgb(buf.getvalue())[0]))
    pictures += [np.full((5, 7), 9, dtype=np.uint8), np.zeros((1, 1), dtype=np.uint8)]
    boxes = [hashing.trim_box(p) for p in pictures]
    assert boxes == [hashing.trim_box_reference(p) for p in pictures]
    assert sum(b != (0, p.shape[0], 0, p.shape[1]) for b, p in zip(boxes, pictures)) > 80  # most were trimmed
    refined = [hashing.refine_box(p, b) for p, b in zip(pictures, boxes)]
    reference = [hashing.refine_box_reference(p, b) for p, b in zip(pictures, boxes)]
    assert np.allclose(refined, reference, atol=1e-6)
    # A refined edge moves out by at most the refinement margin and stays inside the picture.
    for (t, b, l, r), (ft, fb, fl, fr), p in zip(boxes, refined, pictures):
        assert 0 <= ft < fb <= p.shape[0] and 0 <= fl < fr <= p.shape[1]
        assert ft >= t - hashing.REFINE_MARGIN and fl >= l - hashing.REFINE_MARGIN
        assert fb <= b + hashing.REFINE_MARGIN and fr <= r + hashing.REFINE_MARGIN
    assert sum(f != tuple(map(float, b)) for f, b in zip(refined, boxes)) > 80  # most edges moved off the grid


def test_compiled_leader_loop_equals_the_python_loop():
    rng = np.random.default_rng(3)
    rank = rng.permutation(3000)
    edges = rng.integers(0, 3000, (6000, 2))
    edges = edges[edges[:, 0] != edges[:, 1]]
    python = pairs.leader_clusters(rank, edges)
    compiled = pairs.leader_clusters(rank, edges, compiled_min=0)
    assert np.array_equal(python, compiled)
    # Every member is a direct neighbour of its leader, and leaders outrank their members.
    linked = {(int(a), int(b)) for a, b in edges} | {(int(b), int(a)) for a, b in edges}
    members = np.flatnonzero(python != np.arange(3000))
    assert len(members) > 500
    assert all((int(m), int(python[m])) in linked and rank[python[m]] < rank[m] for m in members)
