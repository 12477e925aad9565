"""`ifa export`: formats, the change log, the datasheet, atomicity and the round trip."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from ifa.curation import export
from ifa.curation.ingest import importing
from ifa.curation.ledger import Change
from ifa.curation.workspace import Workspace
from ifa.errors import IfaError
from ifa.sample import IMAGES_DIR


@pytest.fixture
def curated(sample_ws):
    """The sample with a set-aside duplicate, a dropped label, a relabelled category and
    a label added by review."""
    led = sample_ws.ledger
    train = led.labels_frame(["train"])
    cats = train[train["label_id"].isin([l for l in sample_ws.taxonomy.group("category").label_ids])]
    dup, dropped, relabelled = cats["image_id"].iloc[0], cats.iloc[1], cats.iloc[2]
    keep = led.images_frame(["test"])["image_id"].iloc[0]
    led.apply_changes([
        Change("set_aside", dup, reason=f"duplicate-of:{keep}", rule="duplicate"),
        Change("drop_label", dropped.image_id, int(dropped.label_id), reason="two categories", rule="single-group-conflict"),
        Change("drop_label", relabelled.image_id, int(relabelled.label_id), reason="third annotator", rule="review:r1"),
        Change("add_label", relabelled.image_id, 18, reason="third annotator", rule="review:r1", source="review:r1"),
    ])
    return sample_ws, dup, dropped, relabelled


def active_state(ws: Workspace) -> tuple[set, set]:
    labels = ws.ledger.labels_frame()
    return (set(zip(*[ws.ledger.images_frame()[c] for c in ("image_id", "split")])),
            set(zip(labels["image_id"], labels["label_id"].astype(int))))


def test_imat_round_trip_reproduces_the_cleaned_ledger(curated, tmp_path):
    ws, dup, dropped, relabelled = curated
    result = export.export(ws, tmp_path / "out")
    doc = json.loads((tmp_path / "out" / "train.json").read_text())
    assert set(doc) == {"images", "annotations"} and "imageId" in doc["images"][0]
    assert dup not in {i["imageId"] for i in doc["images"]}
    assert result.splits["train"]["images"] == 219
    fresh = Workspace.init(tmp_path / "fresh")
    for split in ("train", "validation", "test"):
        r = importing.import_imat(fresh, tmp_path / "out" / f"{split}.json", split, images_dir=IMAGES_DIR)
        assert r.problems == {}
    assert active_state(fresh) == active_state(ws)


def test_changes_csv_and_datasheet(curated, tmp_path):
    ws, dup, dropped, relabelled = curated
    export.export(ws, tmp_path / "out")
    changes = pd.read_csv(tmp_path / "out" / "changes.csv", keep_default_na=False)
    by_image = changes.set_index("image_id")
    assert by_image.loc[dup, "change"] == "set aside" and by_image.loc[dup, "rule"] == "duplicate"
    assert by_image.loc[dropped.image_id, "change"] == "label dropped"
    row = by_image.loc[relabelled.image_id]
    assert row["change"] == "relabelled" and row["new"] == "Blouses" and row["rule"] == "review:r1"
    assert row["old"] == ws.taxonomy.by_id(int(relabelled.label_id)).name
    assert len(changes) == 3
    sheet = (tmp_path / "out" / "DATASHEET.md").read_text()
    assert "| train | 220 | 219 |" in sheet
    assert "1 images set aside as duplicates (train: 1); 1 of them were copies of an image in another split" in sheet
    assert "| single-group-conflict |" in sheet and "| review:r1 |" in sheet
    assert (tmp_path / "out" / "plots").is_dir() and any((tmp_path / "out" / "plots").glob("*.png"))


def test_csv_parquet_and_labelstudio(curated, tmp_path):
    ws, dup, *_ = curated
    export.export(ws, tmp_path / "csv", fmt="csv", splits=["validation"])
    frame = pd.read_csv(tmp_path / "csv" / "validation.csv")
    assert len(frame) == 45 and set(frame.columns) >= {"image_id", "label_ids", "labels"}
    export.export(ws, tmp_path / "pq", fmt="parquet", splits=["train"], include_set_aside=True)
    table = pq.read_table(tmp_path / "pq" / "train.parquet").to_pandas()
    assert len(table) == 220 and table.set_index("image_id").loc[dup, "status"] == "set_aside"
    assert not (tmp_path / "pq" / "validation.parquet").exists()
    export.export(ws, tmp_path / "ls", fmt="labelstudio", splits=["validation"])
    tasks = json.loads((tmp_path / "ls" / "validation.labelstudio.json").read_text())
    first = tasks[0]["annotations"][0]["result"][0]
    assert first["from_name"] == "category" and first["type"] == "choices" and first["value"]["choices"]


def test_keys_and_integer_ids_follow_the_import(ws, write_json, tmp_path):
    importing.import_imat(ws, write_json("t.json", {"images": [{"image_id": 7, "url": "http://x/7.jpg"}],
                                                    "annotations": [{"image_id": 7, "label_id": [83]}]}), "train")
    export.export(ws, tmp_path / "a")
    doc = json.loads((tmp_path / "a" / "train.json").read_text())
    assert doc["images"] == [{"image_id": 7, "url": "http://x/7.jpg"}] and doc["annotations"][0]["label_id"] == [83]
    export.export(ws, tmp_path / "b", keys="camel")
    assert "imageId" in json.loads((tmp_path / "b" / "train.json").read_text())["images"][0]


def test_failed_export_leaves_nothing_and_existing_folder_is_refused(curated, tmp_path, monkeypatch):
    ws = curated[0]

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setitem(export.FORMATS, "csv", broken)  # a writer that fails halfway
    with pytest.raises(RuntimeError):
        export.export(ws, tmp_path / "out", fmt="csv")
    assert list(tmp_path.iterdir()) == [ws.root]  # no out/, no temp folder
    export.export(ws, tmp_path / "out")
    with pytest.raises(IfaError, match="not empty"):
        export.export(ws, tmp_path / "out")
    export.export(ws, tmp_path / "out", fmt="parquet", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.suffix) == ["DATASHEET.md", "changes.csv", "test.parquet",
                                                                                  "train.parquet", "validation.parquet"]


def test_cli_export_json(curated, tmp_path, cli):
    ws = curated[0]
    ws.close()
    data = cli.json("export", tmp_path / "o", "--workspace", ws.root, "--json", "--split", "test")
    assert list(data["splits"]) == ["test"] and data["splits"]["test"]["images"] == 45
