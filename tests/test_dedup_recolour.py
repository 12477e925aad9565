"""Recoloured copies and look-alike items of one shoot are not merged; boxed copies still are.
Real photos from ../shared/data (IFA_SHARED_DATA elsewhere), variants made here with the
benchmark's own transforms (benchmarks/dedup_bench.py)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from ifa.benchmarks.dedup_bench import _pad, recolour, text_box
from ifa.curation.dedup import recheck, run as dedup, verify
from ifa.curation.ingest import importing
from ifa.curation.workspace import Workspace

DATA = Path(os.environ.get("IFA_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
MYNTRA = DATA / "myntra-products" / "images"
CC0 = DATA / "clothing-cc0" / "images"
needs_data = pytest.mark.skipif(not (MYNTRA.is_dir() and CC0.is_dir()), reason=f"real photos not found under {DATA}")

# Opened at full size: a white sneaker; a black belt; a black loafer and a black lace-up shoe
# of one shoot; two striped short-sleeved shirts on one red bedspread (another collar).
WHITE_SNEAKER, BLACK_BELT = "13078", "14176"
LACE_UP, LOAFER = "10275", "10297"
SHIRT, OTHER_SHIRT = "084214ae-f8d8-4ef2-80fa-f840c8376169", "2701fe7b-49f6-4fba-8ac5-ab7f836b8681"
BOXED_SHIRT = "12044"  # a model in a shirt: its boxed copy must still meet its padded copy


def _rgb(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def _item_chroma(im: Image.Image, changed: np.ndarray) -> float:
    lab = verify.to_lab(np.asarray(im, dtype=np.float64))
    return float(np.hypot(lab[..., 1], lab[..., 2])[changed].mean())


@needs_data
def test_the_charcoal_recolour_of_a_white_item_is_another_colour():
    original = _rgb(MYNTRA / f"{WHITE_SNEAKER}.jpg")
    out = recolour(original, 1)  # the recolour that lifts a dark item to charcoal
    changed = np.abs(np.asarray(out, np.int16) - np.asarray(original, np.int16)).max(axis=2) > 12
    assert changed.mean() > 0.01
    # Lifted to charcoal, the white sneaker stayed a white sneaker with grey blotches (chroma ~1).
    assert _item_chroma(out, changed) > 15 > _item_chroma(original, changed)


@needs_data
def test_a_black_item_is_still_lifted_to_charcoal():
    original = _rgb(MYNTRA / f"{BLACK_BELT}.jpg")
    out = recolour(original, 1)
    grey = np.asarray(out.convert("L"), np.float64)
    was = np.asarray(original.convert("L"), np.float64)
    item = was < 60
    assert grey[item].mean() > was[item].mean() + 30  # black to charcoal
    assert _item_chroma(out, item) < 6  # still a grey, not a tint


def _clusters(tmp_path: Path, files: dict[str, Image.Image]) -> set[frozenset[str]]:
    folder = tmp_path / "in"
    folder.mkdir()
    for name, im in files.items():
        im.save(folder / f"{name}.jpg", "JPEG", quality=95)
    ws = Workspace.init(tmp_path / "ws", command="test")
    importing.import_folder(ws, folder, "train")
    try:
        r = dedup.run(ws, workers=1, report=False)
        return {frozenset((c.keep, m.image_id)) for c in r.clusters for m in c.members if m.image_id != c.keep}
    finally:
        ws.close()


@needs_data
def test_a_recoloured_white_sneaker_joins_neither_its_original_nor_its_padded_copy(tmp_path: Path):
    original = _rgb(MYNTRA / f"{WHITE_SNEAKER}.jpg")
    together = _clusters(tmp_path, {"original": original, "padded": _pad(original, 0),
                                    "recoloured": recolour(original, 13168)})
    assert frozenset(("original", "padded")) in together  # the pad: a copy
    assert not any("recoloured" in p for p in together), together


@needs_data
def test_another_loafer_does_not_pass_the_box_look_placed_at_16_px():
    # The lace-up shoe with a light box in a corner, the loafer recoloured to charcoal: placed by
    # their trimmed boxes at 16 px they scored 0.969; at 32 px 0.84.
    boxed = text_box(_rgb(MYNTRA / f"{LACE_UP}.jpg"), "bl", False)
    other = recolour(_rgb(MYNTRA / f"{LOAFER}.jpg"), 6187)
    assert _box_look(boxed, other) < verify.DEFAULT_MIN_SIMILARITY


@needs_data
def test_another_striped_shirt_does_not_pass_the_box_look():
    a = ImageEnhance.Contrast(_rgb(CC0 / f"{SHIRT}.jpg")).enhance(0.85)
    b = ImageEnhance.Contrast(_rgb(CC0 / f"{OTHER_SHIRT}.jpg")).enhance(0.85)
    assert _box_look(a, b) < verify.DEFAULT_MIN_SIMILARITY


@needs_data
def test_a_boxed_copy_still_passes_the_box_look_against_its_padded_copy():
    original = _rgb(MYNTRA / f"{BOXED_SHIRT}.jpg")
    assert _box_look(text_box(original, "tr", True), _pad(original, 1)) >= verify.DEFAULT_MIN_SIMILARITY


def _box_look(a: Image.Image, b: Image.Image) -> float:
    """The second look's box route (recheck.redecoded_similarity with a box) of two pictures."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = [str(Path(tmp) / f"{k}.jpg") for k in "ab"]
        for im, p in zip((a, b), paths):
            im.save(p, "JPEG", quality=95)
        return float(recheck.redecoded_similarity(paths[:1], paths[1:], np.ones(1, bool),
                                                  enough=verify.DEFAULT_MIN_SIMILARITY)[0])
