"""One image as the ledger knows it: split, status and why, labels by group, history."""

from __future__ import annotations

from ..errors import IfaError
from ..taxonomy import Taxonomy
from .ledger import Ledger
from .ledger.file_problems import file_problem
from .ledger.raw_labels import raw_label_names


def describe(ledger: Ledger, taxonomy: Taxonomy, image_id: str) -> dict:
    """A plain dict: image_id, split, status, status_reason, status_rule, path, url, sha256,
    width, height, file_problem ({"reason", "detail"} when the image's file is known
    unreadable, else None), labels [{label, label_id, group, source, status,
    status_reason}] in taxonomy group order, and events (oldest first). A label kept as
    raw text at import (an unknown name such as 'Banana Hat') has label_id None, its text
    as label and group 'unknown'. Read in one snapshot of the ledger. Raises IfaError for
    an unknown id."""
    with ledger.snapshot():
        return _describe(ledger, taxonomy, image_id)


def _describe(ledger: Ledger, taxonomy: Taxonomy, image_id: str) -> dict:
    image = ledger.image(image_id)
    if image is None:
        raise IfaError(f"The workspace has no image {image_id!r}.")
    order = {g: i for i, g in enumerate(taxonomy.group_names)}
    rows = ledger.image_label_records(image_id)
    raw = raw_label_names(ledger, [int(r["label_id"]) for r in rows])
    labels = []
    for row in rows:
        label_id = int(row["label_id"])
        lab = taxonomy.labels.get(label_id)
        labels.append({
            "label": lab.name if lab else raw.get(label_id, f"<unknown id {label_id}>"),
            "label_id": None if label_id in raw else label_id,
            "group": lab.group if lab else "unknown",
            "source": row["source"],
            "status": row["status"],
            "status_reason": row["status_reason"],
        })
    labels.sort(key=lambda l: (order.get(l["group"], len(order)), l["label"]))
    events = ledger.image_events(image_id)
    for ev in events:
        del ev["event_id"]
        if ev.get("label_id") is not None:
            ev["label_id"] = int(ev["label_id"])
            lab = taxonomy.labels.get(ev["label_id"])
            ev["label"] = lab.name if lab else raw_label_names(ledger, [ev["label_id"]]).get(ev["label_id"])
    return {**image, "file_problem": file_problem(ledger, image_id), "labels": labels, "events": events}
