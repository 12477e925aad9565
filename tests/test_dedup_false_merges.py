"""Dedup allows a text box only where the painted picture's box was found: a boxed copy still
joins its original, a look-alike item of the same shoot does not join the boxed copy. Real
Myntra photos from ../shared/data (IFA_SHARED_DATA elsewhere), copies made here."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from ifa.benchmarks.dedup_bench import text_box
from ifa.curation.dedup import hashing, run as dedup, verify
from ifa.curation.ingest import importing
from ifa.curation.workspace import Workspace

DATA = Path(os.environ.get("IFA_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
MYNTRA = DATA / "myntra-products" / "images"
needs_data = pytest.mark.skipif(not MYNTRA.is_dir(), reason=f"real photos not found under {DATA}")

# Two different black formal shoes, same angle and background (opened at full size).
SHOE, OTHER_SHOE = "11895", "11896"


@needs_data
def test_a_dark_box_along_the_bottom_is_placed_in_the_flags():
    with Image.open(MYNTRA / f"{SHOE}.jpg") as im:
        out = io.BytesIO()
        text_box(im.convert("RGB"), "bottom", True).save(out, "JPEG", quality=90)
    flags = hashing.prepare(out.getvalue()).signature[1]
    assert flags & verify.TEXT_BOX
    assert (flags >> verify.CORNERS_SHIFT) & 15 == 4 | 8  # both bottom corners: a banner


@needs_data
def test_another_black_shoe_does_not_join_a_boxed_copy_of_the_first(tmp_path: Path):
    folder = tmp_path / "in"
    folder.mkdir()
    for n in (SHOE, OTHER_SHOE):
        shutil.copy(MYNTRA / f"{n}.jpg", folder / f"{n}.jpg")
    with Image.open(MYNTRA / f"{SHOE}.jpg") as im:
        text_box(im.convert("RGB"), "bottom", True).save(folder / f"{SHOE}-boxed.jpg", "JPEG", quality=95)
    ws = Workspace.init(tmp_path / "ws", command="test")
    importing.import_folder(ws, folder, "train")
    try:
        r = dedup.run(ws, workers=1, report=False)
        together = {frozenset((c.keep, m.image_id)) for c in r.clusters for m in c.members if m.image_id != c.keep}
        assert frozenset((SHOE, f"{SHOE}-boxed")) in together  # the same shoe boxed: a copy
        assert not any(OTHER_SHOE in p for p in together), together  # another shoe: never
    finally:
        ws.close()
