"""What a person reviewing dedup sees and decides: the copies set aside on a narrow pass come
first and are marked "check by eye", and an image that person restores by hand stays in on
the next --apply. Real Myntra photos from ../shared/data (IFA_SHARED_DATA elsewhere)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from ifa.browse import actions
from ifa.cli.app import app
from ifa.curation import restore
from ifa.curation.dedup import run as dedup
from ifa.curation.ingest import importing
from ifa.curation.workspace import Workspace

DATA = Path(os.environ.get("IFA_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
MYNTRA = DATA / "myntra-products" / "images"
needs_data = pytest.mark.skipif(not MYNTRA.is_dir(), reason=f"real photos not found under {DATA}")

# Two pairs of other items from one shoot that the verifier passes just over its bar (opened at
# full size: a wingtip brogue and a plain derby; a vest and one with wider straps), and two
# pictures of one photo (the same jeans scaled in the frame, the same trousers).
LOOK_ALIKES = [("12482", "12486"), ("15818", "15820")]
SAME_PHOTO = [("13261", "13262"), ("13228", "13229")]


def _workspace(tmp_path: Path) -> Workspace:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in {n for pair in LOOK_ALIKES + SAME_PHOTO for n in pair}:
        shutil.copy(MYNTRA / f"{name}.jpg", folder / f"{name}.jpg")
    with Image.open(MYNTRA / "13261.jpg") as im:  # and a re-encoded copy, a sure one
        im.convert("RGB").save(folder / "13261-q80.jpg", "JPEG", quality=80)
    ws = Workspace.init(tmp_path / "ws", command="test")
    importing.import_folder(ws, folder, "train")
    return ws


@needs_data
def test_copies_set_aside_on_a_narrow_pass_are_listed_first_for_a_look_by_eye(tmp_path: Path):
    ws = _workspace(tmp_path)
    try:
        r = dedup.run(ws, workers=1)
        set_aside = {image for image, _ in r.set_aside}
        look_alikes = {max(pair) for pair in LOOK_ALIKES}
        assert look_alikes <= set_aside  # the verifier still passes them: the report has to say so
        narrow = r.narrow_passes()
        assert {m.image_id for _, m in narrow} == look_alikes, [(m.image_id, m.similarity) for _, m in narrow]
        assert all(r.min_similarity <= m.similarity < r.min_similarity + dedup.CHECK_MARGIN for _, m in narrow)
        assert [m.similarity for _, m in narrow] == sorted(m.similarity for _, m in narrow)
        # The pictures of one photo (and the q80 copy) are clustered together, none of them marked,
        # and the marked clusters come first.
        together = [{m.image_id for m in c.members} for c in r.clusters]
        assert {"13261", "13262", "13261-q80"} in together and {"13228", "13229"} in together, together
        assert [c.narrowest is not None for c in r.clusters] == [True] * 2 + [False] * (len(r.clusters) - 2)
        html = Path(r.report_html).read_text()
        assert "Set aside on a narrow pass: check by eye (2)" in html
        assert html.count("narrow pass (under 0.972): check by eye") == 2
        assert html.index("Set aside on a narrow pass") < html.index("Other duplicates")
        assert html.count("class='card big'") == 4  # both pictures of each pair large enough to compare
    finally:
        ws.close()
    out = CliRunner().invoke(app, ["curate", "dedup", "--workspace", str(tmp_path / "ws"), "--workers", "1", "--json"])
    assert out.exit_code == 0, out.output
    listed = json.loads(out.stdout)["check_by_eye"]
    assert {x["image_id"] for x in listed} == look_alikes
    assert all(x["keep"] == min(p) for x in listed for p in LOOK_ALIKES if x["image_id"] == max(p))


@needs_data
def test_an_image_restored_by_hand_is_not_set_aside_again(tmp_path: Path):
    ws = _workspace(tmp_path)
    try:
        first = dedup.run(ws, workers=1, apply=True, report=False)
        assert ("12486", "12482") in first.set_aside
        restore.restore(ws.ledger, image_id="12486")  # a person looked: a brogue, not the derby
        actions.restore(ws.ledger, "15820")  # the other vest, restored with the browser's button
        again = dedup.run(ws, workers=1, apply=True, report=False)
        assert not {"12486", "15820"} & {image for image, _ in again.set_aside}
        assert sorted(again.left_by_hand) == ["12486", "15820"]
        assert ws.ledger.image("12486")["status"] == "active"
        member = next(m for c in again.clusters for m in c.members if m.image_id == "12486")
        assert member.by_hand and not member.narrow  # still shown in its cluster, marked
        # Undoing the whole run is no judgement of one image: its copies go again on the next --apply.
        restore.restore(ws.ledger, rule="duplicate")
        third = dedup.run(ws, workers=1, apply=True, report=False)
        others = {image for image, _ in first.set_aside} - {"12486", "15820"}
        assert len(others) == 3 and {image for image, _ in third.set_aside} == others
        assert all(ws.ledger.image(image)["status"] == "set_aside" for image in others)
    finally:
        ws.close()
