"""One image as the ledger knows it: split, status and why, labels by group, history."""

from __future__ import annotations

from ..errors import IfaError
from ..taxonomy import Taxonomy
from .ledger import Ledger


def describe(ledger: Ledger, taxonomy: Taxonomy, image_id: str) -> dict:
    """A plain dict: image_id, split, status, status_reason, status_rule, path, url, sha256,
    width, height, labels [{label, label_id, group, source, status, status_reason}] in
    taxonomy group order, and events (oldest first). Raises IfaError for an unknown id."""
    image = ledger.image(image_id)
    if image is None:
        raise IfaError(f"The workspace has no image {image_id!r}.")
    order = {g: i for i, g in enumerate(taxonomy.group_names)}
    labels = []
    for row in ledger.image_label_records(image_id):
        lab = taxonomy.labels.get(int(row["label_id"]))
        labels.append({
            "label": lab.name if lab else f"<unknown id {row['label_id']}>",
            "label_id": int(row["label_id"]),
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
            ev["label"] = lab.name if lab else None
    return {**image, "labels": labels, "events": events}
