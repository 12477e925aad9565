"""`ifa curate check-images` on real JPEGs: the bundled CC0 photos plus problems the test
plants (a placeholder served for many ids, blank, tiny, banner, letterbox, grey, blurred)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from ifa.curation import restore
from ifa.curation.image_checks import check, rules as image_rules
from ifa.curation.ingest import importing
from ifa.errors import IfaError
from ifa.sample import IMAGES_DIR

REAL = sorted(IMAGES_DIR.glob("*.jpg"))[:60]


def _save(folder: Path, name: str, im: Image.Image, **kw) -> str:
    im.convert("RGB").save(folder / f"{name}.jpg", "JPEG", **({"quality": 90} | kw))
    return name


def _plant(folder: Path) -> dict[str, list[str]]:
    """The sample's first 60 photos under their own ids, and planted problems beside them."""
    for p in REAL:
        shutil.copy(p, folder / p.name)
    photo = lambda k: Image.open(REAL[k]).convert("RGB")  # noqa: E731
    placeholder = Image.new("RGB", (400, 400), (235, 235, 235))
    ImageDraw.Draw(placeholder).rectangle((120, 120, 280, 240), outline=(150, 150, 150), width=6)
    planted = {"placeholder": [_save(folder, f"ph-{k}", placeholder if k % 2 else placeholder.resize((300, 300)),
                                     quality=90 if k % 3 else 70) for k in range(25)]}
    planted["blank"] = [_save(folder, "blank-white", Image.new("RGB", (300, 300), "white")),
                        _save(folder, "blank-noise", Image.fromarray(np.clip(np.random.default_rng(0).normal(
                            128, 1.5, (300, 300, 3)), 0, 255).astype(np.uint8)))]
    planted["tiny"] = [_save(folder, "tiny-1", photo(0).resize((1, 1))), _save(folder, "tiny-31", photo(1).resize((31, 40)))]
    planted["odd-aspect"] = [_save(folder, "banner", photo(2).resize((1000, 150)))]
    frame = Image.new("RGB", (400, 533), "black")
    frame.paste(photo(3).resize((200, 266)), (100, 133))
    planted["mostly-border"] = [_save(folder, "letterbox", frame)]
    planted["grayscale"] = [_save(folder, "grey", photo(4).convert("L"))]
    planted["blurry"] = [_save(folder, "blurred", photo(5).filter(ImageFilter.GaussianBlur(4)))]
    return planted


@pytest.fixture
def planted_ws(ws, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    planted = _plant(folder)
    importing.import_folder(ws, folder, "train")
    return ws, planted


def test_finds_every_planted_kind_and_no_real_photo(planted_ws):
    ws, planted = planted_ws
    result = check.run(ws, workers=1)
    by_image = {f["image_id"]: set(f["rules"]) for f in result.flagged}
    for kind, ids in planted.items():
        for i in ids:
            assert kind in by_image.get(i, set()), (kind, i, by_image.get(i))
    set_aside_rules = {r for r, c in result.rules.items() if c.action == "set-aside"}
    assert not [p.stem for p in REAL if by_image.get(p.stem, set()) & set_aside_rules]
    assert result.rules["placeholder"].images == 25 and not result.applied
    assert result.measured == len(REAL) + sum(map(len, planted.values())) and result.cached == 0
    assert Path(result.report_csv).exists() and Path(result.report_html).exists()
    assert all(ws.ledger.query("SELECT status FROM images WHERE image_id = ?", (i,))[0][0] == "active"
               for i in planted["blank"])  # no --apply: nothing changes


def test_apply_sets_aside_once_rerun_decodes_nothing_and_restore_undoes(planted_ws):
    ws, planted = planted_ws
    first = check.run(ws, apply=True, workers=1)
    set_aside = sum(len(planted[k]) for k in ("placeholder", "blank", "tiny", "odd-aspect", "mostly-border"))
    assert first.set_aside == set_aside
    status = dict(ws.ledger.query("SELECT image_id, status_rule FROM images WHERE status = 'set_aside'"))
    assert status["blank-white"] == "blank" and status["letterbox"] == "mostly-border" and "grey" not in status
    again = check.run(ws, apply=True, workers=1)
    assert again.measured == 0 and again.cached == first.measured  # cached: nothing decoded again
    assert again.set_aside == 0 and again.rules == first.rules  # same findings, nothing new applied
    restore.restore(ws.ledger, rule="blank")
    assert ws.ledger.query("SELECT status FROM images WHERE image_id = 'blank-white'")[0][0] == "active"
    # a changed file is measured again
    Image.new("RGB", (300, 300), "white").save(next(ws.root.parent.glob("photos/blurred.jpg")))
    third = check.run(ws, workers=1)
    assert third.measured == 1 and "blank" in {r for f in third.flagged if f["image_id"] == "blurred" for r in f["rules"]}


def test_known_placeholders_folder_matches_a_picture_seen_once(planted_ws, tmp_path):
    ws, planted = planted_ws
    known = tmp_path / "known"
    known.mkdir()
    shutil.copy(IMAGES_DIR / f"{REAL[7].stem}.jpg", known / "shop-no-image.jpg")
    result = check.run(ws, placeholders=known, workers=1)
    assert "placeholder" in next(f["rules"] for f in result.flagged if f["image_id"] == REAL[7].stem)
    with pytest.raises(IfaError, match="not a folder"):
        check.run(ws, placeholders=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not a picture")
    with pytest.raises(IfaError, match="no readable image"):
        check.run(ws, placeholders=tmp_path / "empty")


def test_bad_rules_files_are_one_line_errors(tmp_path):
    cases = {"unknown stat": ('[[rule]]\nid = "x"\nkind = "threshold"\nwhen = [{stat = "sharpnes", below = 1}]\n', "sharpnes"),
             "nan bound": ('[[rule]]\nid = "x"\nkind = "threshold"\nwhen = [{stat = "spread", below = nan}]\n', "finite"),
             "bad action": ('[[rule]]\nid = "blank"\naction = "delete"\n', "action must be"),
             "bad min_ids": ('[[rule]]\nid = "placeholder"\nmin_ids = 0\n', "min_ids")}
    for name, (text, says) in cases.items():
        path = tmp_path / f"{name}.toml"
        path.write_text(text)
        with pytest.raises(IfaError, match=says):
            image_rules.load_rules(path)
    off = tmp_path / "off.toml"
    off.write_text('[[rule]]\nid = "grayscale"\nenabled = false\n[[rule]]\nid = "blurry"\naction = "set-aside"\n')
    loaded = {r.id: r for r in image_rules.load_rules(off)}
    assert "grayscale" not in loaded and loaded["blurry"].action == "set-aside" and "blank" in loaded


def test_cli_json_has_check_attributes_shape(planted_ws):
    ws, planted = planted_ws
    out = subprocess.run([sys.executable, "-m", "ifa.cli.app", "curate", "check-images", "--workers", "1", "--json",
                          "-w", str(ws.root)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "IFA_WORKSPACE": ""})
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout)
    assert data["applied"] is False
    assert data["rules"]["placeholder"] == {"images": 25, "action": "set-aside"}
    assert {"image_id": "letterbox", "split": "train", "rules": ["mostly-border"]} in data["flagged"]


def test_a_placeholder_dedup_kept_once_still_goes(planted_ws):
    """Dedup keeps one copy of a cluster; when the cluster is a placeholder, check-images run
    after it must still see every id sharing the picture and set the kept one aside too."""
    from ifa.curation.dedup import run as dedup

    ws, planted = planted_ws
    dedup.run(ws, apply=True, workers=1)
    active = [i for i in planted["placeholder"]
              if ws.ledger.query("SELECT status FROM images WHERE image_id = ?", (i,))[0][0] == "active"]
    assert 0 < len(active) < len(planted["placeholder"])  # dedup kept one (or a few) of them
    result = check.run(ws, apply=True, workers=1)
    assert result.rules["placeholder"].images == len(planted["placeholder"])
    assert all(ws.ledger.query("SELECT status FROM images WHERE image_id = ?", (i,))[0][0] == "set_aside"
               for i in planted["placeholder"])


def test_a_user_image_rule_cannot_take_a_built_in_or_attribute_rule_id(tmp_path):
    for rid, says in {"unreadable-file": "'unreadable-file' is reserved", "duplicate": "'duplicate' is reserved",
                      "review:r1": "'review:r1' is reserved", "no-labels": "'no-labels' is a rule of `ifa curate check-attributes`"}.items():
        path = tmp_path / "r.toml"
        path.write_text(f'[[rule]]\nid = "{rid}"\nkind = "threshold"\nwhen = [{{stat = "spread", below = 1}}]\n')
        with pytest.raises(IfaError, match=says):
            image_rules.load_rules(path)


def test_dedups_decode_pass_fills_the_statistics_cache(planted_ws):
    """One decode serves both commands: after `ifa curate dedup`, check-images decodes
    nothing, and its statistics equal those of its own decode."""
    from ifa.curation.dedup import run as dedup

    ws, planted = planted_ws
    dedup.run(ws, workers=1)
    after_dedup = check.run(ws, workers=1)
    assert after_dedup.measured == 0 and after_dedup.cached == len(REAL) + sum(map(len, planted.values()))
    own = check.run(ws, workers=1)  # cached again: same findings
    assert own.rules == after_dedup.rules and own.flagged == after_dedup.flagged
    folder = ws.root.parent / "photos"
    fresh = check.measure_batch([(0, str(folder / "letterbox.jpg"))])[0]
    stored = ws.ledger.query("SELECT s.stats FROM image_stats s JOIN images i ON i.pk = s.image_pk "
                             "WHERE i.image_id = 'letterbox'")[0][0]
    assert stored == fresh.stats


def test_compiled_statistics_equal_the_numpy_reference(planted_ws):
    from ifa.curation.dedup import hashing
    from ifa.curation.image_checks import statistics

    folder = planted_ws[0].root.parent / "photos"
    for path in sorted(folder.glob("*.jpg")):
        rgb, width, height = hashing.decode_rgb(path.read_bytes())
        fast, slow = statistics.measure_rgb(rgb, width, height), statistics.measure_rgb_reference(rgb, width, height)
        assert np.allclose(fast.values, slow.values, rtol=1e-5, atol=1e-4), (path.name, fast.values, slow.values)
        assert fast.thumb_hash == slow.thumb_hash
