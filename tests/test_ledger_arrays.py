"""The ledger's array reads and review queue against the plain SQL reads of the same rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ifa.curation.ledger import SPLITS, Change
from ifa.curation.ledger.arrays import LABEL_STATUSES, image_rows, label_arrays
from ifa.curation.ledger.review_queue import enqueue_review, review_queue, set_review_status
from ifa.errors import IfaError


def _as_frame(ws, arrays) -> pd.DataFrame:
    ids = image_rows(ws.ledger, arrays.image_pk)
    return pd.DataFrame({
        "image_id": ids["image_id"].to_numpy()[arrays.row_image],
        "split": [SPLITS[c] for c in arrays.split[arrays.row_image]],
        "label_id": arrays.label_id,
        "status": [LABEL_STATUSES[c] for c in arrays.status],
    })


@pytest.mark.parametrize("splits", [None, ["validation"], ["train", "test"]])
def test_label_arrays_match_labels_frame(sample_ws, splits):
    led = sample_ws.ledger
    some = led.images_frame(["train"])["image_id"].tolist()
    # ids outside the packed range, a quarantined id, a dropped label and a set-aside image
    led.apply_changes([Change("add_label", some[0], -5, rule="t"), Change("add_label", some[0], 2 ** 40, rule="t"),
                       Change("add_label", some[1], 777, rule="t"), Change("drop_label", some[2], 18, rule="t"),
                       Change("set_aside", some[3], rule="t")])
    led.apply_changes([Change("drop_label", some[1], 777, rule="t")])
    for statuses in (("active",), ("active", "quarantined"), ("active", "dropped", "quarantined")):
        arrays = label_arrays(led, splits, label_statuses=statuses)
        got = _as_frame(sample_ws, arrays)
        want = led.labels_frame(splits, label_status=statuses)[["image_id", "split", "label_id", "status"]]
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True), check_dtype=False)
        images = led.images_frame(splits)
        assert sorted(image_rows(led, arrays.image_pk)["image_id"]) == sorted(images["image_id"])
    assert np.all(np.diff(arrays.row_image) >= 0)
    assert some[3] not in set(image_rows(led, label_arrays(led).image_pk)["image_id"])


def test_subset_renumbers(sample_ws):
    arrays = label_arrays(sample_ws.ledger)
    pick = np.array([0, 5, 100, 250])
    small = arrays.subset(pick)
    assert small.n_images == 4 and list(small.image_pk) == list(arrays.image_pk[pick])
    for k, pos in enumerate(pick):
        assert list(small.label_id[small.row_image == k]) == list(arrays.label_id[arrays.row_image == pos])


def test_review_queue_is_idempotent_and_logged(sample_ws):
    led = sample_ws.ledger
    a, b = led.images_frame(["validation"])["image_id"].tolist()[:2]
    items = pd.DataFrame({"image_id": [a, b, a], "rule": ["r1", "r1", "r2"], "reason": ["x", "y", "z"]})
    assert enqueue_review(led, items) == 3
    assert enqueue_review(led, items) == 0
    assert len(review_queue(led)) == 3 and set(review_queue(led, rules=["r2"])["image_id"]) == {a}
    sent = set_review_status(led, "sent", image_ids=[a])
    assert sorted(sent["rule"]) == ["r1", "r2"]
    assert list(review_queue(led)["image_id"]) == [b]
    cancelled = set_review_status(led, "cancelled", rule="r1")  # only pending rows move by default
    assert list(cancelled["image_id"]) == [b]
    assert enqueue_review(led, items) == 1  # the cancelled one is queued again
    kinds = led.events_frame()["kind"].value_counts()
    assert kinds["review_pending"] == 4 and kinds["review_sent"] == 2 and kinds["review_cancelled"] == 1
    with pytest.raises(IfaError, match="no image 'nope'"):
        enqueue_review(led, pd.DataFrame({"image_id": ["nope"], "rule": ["r1"], "reason": [""]}))
    with pytest.raises(IfaError, match="Unknown review status"):
        set_review_status(led, "lost", rule="r1")
