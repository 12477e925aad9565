"""Dedup finds copies cropped 3-5% per side (natural photos from the bundled CC0 sample,
product photos from ../shared/data, IFA_SHARED_DATA elsewhere), and the crop search does
not make another photo of one shoot, or a crop of a neighbouring photo, a copy."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ifa.benchmarks.dedup_bench import _crop, _pad, text_box
from ifa.curation.dedup import align, hashing
from ifa.curation.dedup import run as dedup
from ifa.curation.ingest import importing
from ifa.curation.workspace import Workspace

SAMPLE = sorted((Path(__file__).resolve().parents[1] / "sample" / "clothing-cc0" / "images").glob("*.jpg"))
DATA = Path(os.environ.get("IFA_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
MYNTRA = DATA / "myntra-products" / "images"
needs_data = pytest.mark.skipif(not MYNTRA.is_dir(), reason=f"real photos not found under {DATA}")

# Model shots that touch the frame (a crop cuts into the item), and two photos of one shoot:
# black and brown slip-on shoes, the same pose.
MODELS = ("13634", "12110", "12168", "11876", "10042")
SHOES = ("11898", "11899")


def _run(tmp_path: Path, files: dict[str, Image.Image | Path]):
    folder = tmp_path / "in"
    folder.mkdir()
    for name, picture in files.items():
        if isinstance(picture, Path):
            shutil.copy(picture, folder / f"{name}.jpg")
        else:
            picture.save(folder / f"{name}.jpg", "JPEG", quality=90)
    ws = Workspace.init(tmp_path / "ws", command="test")
    importing.import_folder(ws, folder, "train")
    try:
        return dedup.run(ws, workers=1, report=False)
    finally:
        ws.close()


def _clusters(result) -> list[set[str]]:
    return [{m.image_id for m in c.members} for c in result.clusters]


def _crops(originals: list[Path]) -> dict[str, Image.Image | Path]:
    files: dict[str, Image.Image | Path] = {}
    for src in originals:
        files[src.stem] = src
        with Image.open(src) as im:
            for cut in (0.03, 0.05):
                files[f"{src.stem}-crop{round(cut * 100)}"] = _crop(im.convert("RGB"), cut)
    return files


@pytest.mark.slow
def test_photos_cropped_3_and_5_percent_per_side_are_merged_with_their_original(tmp_path: Path):
    originals = SAMPLE[::31][:8]
    result = _run(tmp_path, _crops(originals))
    clusters = _clusters(result)
    found = 0
    for src in originals:
        cluster = next((c for c in clusters if src.stem in c), {src.stem})
        assert all(m.split("-crop")[0] == src.stem for m in cluster), cluster  # nothing foreign joins
        found += sum(f"{src.stem}-crop{c}" in cluster for c in (3, 5))
    # 14 of 16 found; the code without the crop code and the aligned re-decode found 6
    assert found >= 12, f"{found} of 16 crops found"


@needs_data
@pytest.mark.slow
def test_product_shots_cut_by_a_crop_are_merged_and_another_item_of_the_shoot_is_not(tmp_path: Path):
    originals = [MYNTRA / f"{n}.jpg" for n in MODELS]
    files = _crops(originals)
    with Image.open(MYNTRA / f"{SHOES[1]}.jpg") as im:
        files["shoe-b-crop4"] = _crop(im.convert("RGB"), 0.04)
    files["shoe-a"] = MYNTRA / f"{SHOES[0]}.jpg"
    clusters = _clusters(_run(tmp_path, files))
    found = 0
    for src in originals:
        cluster = next((c for c in clusters if src.stem in c), {src.stem})
        assert all(m.split("-crop")[0] == src.stem for m in cluster), cluster
        found += sum(f"{src.stem}-crop{c}" in cluster for c in (3, 5))
    assert found >= 9, f"{found} of 10 crops found"  # 10 of 10; the code without them found 6
    assert not any({"shoe-a", "shoe-b-crop4"} <= c for c in clusters)  # brown vs black: not a copy


def test_a_crop_of_a_neighbouring_photo_is_not_a_copy(tmp_path: Path):
    # Each sample photo against a 4% crop of the next one: the search over cuts and the
    # same-scale compare must not align two different photos.
    pictures = SAMPLE[:40]
    crops = []
    for src in pictures:
        with Image.open(src) as im:
            path = tmp_path / f"{src.stem}-crop4.jpg"
            _crop(im.convert("RGB"), 0.04).save(path, "JPEG", quality=90)
            crops.append(str(path))
    own = align.aligned_similarity([str(p) for p in pictures], crops)
    neighbour = align.aligned_similarity([str(p) for p in pictures[:-1]], crops[1:])
    assert (own >= 0.96).mean() >= 0.9, own  # the aligned compare finds a photo's own crop
    assert (neighbour < 0.96).all(), np.sort(neighbour)[-3:]


def test_the_crop_code_is_the_phash_of_the_picture_cut_4_percent_per_side(tmp_path: Path):
    # The code comes from phash's own 32x32 picture; an actual 4% crop of a photo without
    # a border hashes within a few bits of it, the uncut picture does not.
    near, plain = [], []
    for src in SAMPLE[:30]:
        data = src.read_bytes()
        with Image.open(src) as im:
            cut = _crop(im.convert("RGB"), 0.04)
        d = hashing.prepare(data)
        buf = tmp_path / "cut.jpg"
        cut.save(buf, "JPEG", quality=95)
        copy = hashing.prepare(buf.read_bytes())
        code = align.crop_code(d.small)
        phash = hashing.METHODS["phash"].hash_decoded([copy])[0]
        near.append(bin(int(code) ^ int(phash)).count("1"))
        plain.append(bin(int(hashing.METHODS["phash"].hash_decoded([d])[0]) ^ int(phash)).count("1"))
    assert np.median(near) < np.median(plain), (near, plain)
    assert np.mean(np.array(near) <= align.CROP_THRESHOLD) >= 0.8, near


def test_sizes_say_a_same_scale_crop_only_for_a_smaller_frame_of_the_same_shape():
    # 224 -> 206 (4% per side), a 10%-padded 268 -> 206, a 60% resize (134), a wider frame
    got = align.same_scale([224, 268, 224, 224, 300], [224, 268, 224, 224, 224], [206, 206, 134, 224, 206],
                           [206, 206, 134, 224, 206])
    assert got.tolist() == [True, True, False, False, False]


# Product shots whose 3-5% crop was left alone beside the cluster their 10%-padded copy
# leads (the crop cuts the item, the pad's trim another side: only an aligned look meets
# it; 9 of 80 product shots, all of them here).
LED_BY_A_PAD = ("10070", "11015", "11043", "11083", "11361", "12089", "13105", "13714", "13803")


@needs_data
@pytest.mark.slow
def test_a_crop_joins_the_cluster_its_padded_copy_leads_and_another_colour_does_not(tmp_path: Path):
    files: dict[str, Image.Image | Path] = {}
    for k, name in enumerate(LED_BY_A_PAD + SHOES[1:]):
        files[name] = MYNTRA / f"{name}.jpg"
        with Image.open(MYNTRA / f"{name}.jpg") as im:
            files[f"{name}-pad"] = _pad(im.convert("RGB"), 0)
            files[f"{name}-crop"] = _crop(im.convert("RGB"), 0.03 + 0.01 * (k % 3))
            files[f"{name}-box"] = text_box(im.convert("RGB"), "bottom", k % 2 == 0)  # what the crop verifies with
    files["shoe-black"] = MYNTRA / f"{SHOES[0]}.jpg"  # the same pose as the brown one, another colour
    clusters = {c.keep: {m.image_id for m in c.members} for c in _run(tmp_path, files).clusters}
    for members in clusters.values():  # nothing foreign joins a photo's cluster
        assert len({m.split("-")[0] for m in members}) == 1, members
    # The pad has the most pixels, so it is kept; the crop is compared with it directly.
    whole = [n for n in LED_BY_A_PAD if {n, f"{n}-crop"} <= clusters.get(f"{n}-pad", set())]
    assert len(whole) >= 7, whole  # 8 of 9; 2 before the rejoin's aligned look
