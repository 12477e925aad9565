"""Table 1 statistics over active images and labels."""

from __future__ import annotations

from pathlib import Path

from ifa.curation.ingest import importing
from ifa.curation import stats
from ifa.curation.ledger import Change


def test_stats_count_only_active(ws, write_json):
    doc = {"images": [{"imageId": i} for i in "abcd"],
           "annotations": [{"imageId": "a", "labelId": [83, 17, 14]},   # Heels; Black, Beige (colors)
                           {"imageId": "b", "labelId": [22, 17]},       # Boots; Black
                           {"imageId": "c", "labelId": [145]},          # Rain Boots
                           {"imageId": "d", "labelId": []}]}
    importing.import_imat(ws, write_json("t.json", doc), "train")
    ws.ledger.apply_changes([Change("set_aside", "c", rule="t"), Change("drop_label", "b", 17, rule="t")])
    s = stats.compute(ws.ledger, ws.taxonomy).splits["train"]
    assert (s.images, s.labels) == (3, 4)
    assert s.histogram == {0: 1, 1: 1, 3: 1}
    assert s.labels_per_image == {"min": 0, "mean": round(4 / 3, 3), "max": 3}
    cat, color = s.groups["category"], s.groups["color"]
    assert (cat.classes, cat.cardinality, cat.labels, cat.images) == (105, "single", 2, 2)
    assert (color.labels, color.images, color.percent_images) == (2, 1, 33.3)
    assert s.images_per_label == {14: 1, 17: 1, 22: 1, 83: 1}
    assert s.labels_under_500 == 228 and s.labels_over_10k == 0


def test_cli_stats_json_shape_and_plots(sample_ws, cli):
    sample_ws.close()
    data = cli.json("stats", "--workspace", sample_ws.root, "--json", "--plots")
    train = data["splits"]["train"]
    assert train["images"] == 220 and set(train["labels_per_image"]) == {"min", "mean", "max"}
    assert set(train["groups"]["category"]) >= {"classes", "cardinality", "labels", "images"}
    # two figures per split that has labels; the sample's test split has none, so no empty axes for it
    assert data["splits"]["test"]["labels"] == 0
    assert sorted(Path(p).name.split("-")[-3] for p in data["plots"]) == ["train", "train", "validation", "validation"]
    assert all(p.endswith(".png") and Path(p).exists() for p in data["plots"])
