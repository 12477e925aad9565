"""The review-cost benchmark's real Label Studio path at a tiny size, on the session's server.

The bundled sample's validation photos and labels are written as a shared-dataset folder
(labels.csv with imat_<group> columns); `benchmarks.review_live.live` imports them, runs a
round (a pool of six simulated annotators answering through the API, sync, `tiebreak
--when any` and `--when uncertain` on copies of the synced workspace, finalize) and the
table's invariants must hold. `benchmarks.review_clicks.clicks_live` answers two images
in headless Chromium in blind and check mode.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from ifa.sample import IMAGES_DIR, split_file
from ifa.taxonomy import Taxonomy

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def sample_data(tmp_path_factory) -> Path:
    """The sample's validation split as a shared-dataset folder (labels.csv, photos by path)."""
    tax = Taxonomy.default()
    folder = tmp_path_factory.mktemp("sample-data")
    data = json.loads(split_file("validation").read_text())
    with open(folder / "labels.csv", "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["image_file", "image_id", *(f"imat_{g}" for g in tax.group_names)])
        for a in data["annotations"]:
            names = {g: [] for g in tax.group_names}
            for lid in a["labelId"]:
                lab = tax.labels[int(lid)]
                names[lab.group].append(lab.name)
            out.writerow([str(IMAGES_DIR / f"{a['imageId']}.jpg"), a["imageId"],
                          *("|".join(names[g]) for g in tax.group_names)])
    return folder


def test_live_round_table_invariants(label_studio, sample_data, tmp_path):
    from ifa.benchmarks.review_live import live

    images = 20
    res = live(sample_data, images, 0.05, 0.95, seed=0, workdir=tmp_path, root=label_studio)
    # Every answer the simulated annotators posted is what sync read back, in both copies.
    assert res["posted"] > 2 * images and res["mismatched_pool"] == 0 and res["mismatched_after"] == 0
    any_, uncertain = res["outcomes"]
    assert (any_["rule"], uncertain["rule"]) == ("live any", "live uncertain")
    # The paper's rule asks all eight groups of every image it sends; uncertain asks no more.
    assert any_["tiebreak_groups"] == 8 * any_["tiebreak_images"] > 0
    assert uncertain["tiebreak_groups"] <= any_["tiebreak_groups"]
    for o in (any_, uncertain):
        assert o["group_answers_per_image"] == round(16 + o["tiebreak_groups"] / images, 3)
        # Two answers per image, each annotator's gold answers, one per tie-break task.
        assert o["annotations"] >= 2 * images + o["tiebreak_images"] + 6
        assert 0 < o["precision"] <= 1 and 0 < o["recall"] <= 1 and o["errors"] >= 0


@pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")), reason="needs chromium")
def test_clicks_on_the_real_page(label_studio, sample_data, tmp_path):
    from ifa.benchmarks.review_clicks import clicks_live

    res = clicks_live(sample_data, 2, 0, tmp_path, root=label_studio)
    # The page showed what each mode promises and the submitted answer is what sync reads.
    assert res["blind_synced_differently"] == 0 and res["check_synced_differently"] == 0
    assert res["check"]["clicks_per_image"] <= res["blind"]["clicks_per_image"]
    assert res["blind"]["clicks_per_image"] >= 1
    assert list(tmp_path.glob("labeling-check-*-before.png")) and list(tmp_path.glob("labeling-blind-*-before.png"))
