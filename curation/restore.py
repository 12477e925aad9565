"""Undo: put set-aside images and dropped labels back, by the rule that changed them or
by image. Nothing in ifa is hard-deleted, so everything can come back."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import IfaError
from .ledger import Change, Ledger, by_hand_reason
from .ledger.review_queue import review_queue, set_review_status


@dataclass
class RestoreResult:
    images: list[str] = field(default_factory=list)
    labels: list[tuple[str, int]] = field(default_factory=list)
    applied: bool = False
    reviews: list[tuple[str, str]] = field(default_factory=list)  # (image_id, rule) taken off the review queue
    unadded: list[tuple[str, int]] = field(default_factory=list)  # labels the rule had added, dropped again

    def to_dict(self) -> dict:
        return {"images": self.images, "labels": [{"image_id": i, "label_id": l} for i, l in self.labels],
                "reviews": [{"image_id": i, "rule": r} for i, r in self.reviews],
                "unadded": [{"image_id": i, "label_id": l} for i, l in self.unadded], "applied": self.applied}


def restore(ledger: Ledger, rule: str | None = None, image_id: str | None = None, apply: bool = True) -> RestoreResult:
    """Restore what `rule` set aside or dropped (or everything done to `image_id`).

    Naming one image (image_id, with or without a rule) is a person's judgement of it: its
    restore event says RESTORED_BY_HAND, and dedup does not set it aside again.

    Labels quarantined at import come back only with rule="import". Images the rule queued
    for review and no round has taken yet are taken off the queue (status cancelled).
    Raises IfaError when neither rule nor image is given, or the image or rule is unknown
    (naming the rules that have changed something)."""
    if rule is None and image_id is None:
        raise IfaError("Say what to restore: --rule RULE_ID or --image IMAGE_ID.")
    if image_id is not None and ledger.image(image_id) is None:
        raise IfaError(f"The workspace has no image {image_id!r}.")
    if rule is not None:
        known = ledger.rule_names()
        if rule not in known:
            listed = ", ".join(known) if known else "none yet (nothing has been set aside or dropped)"
            raise IfaError(f"No rule {rule!r} has changed anything in this workspace; the rules that have: {listed}.")
    statuses = ("dropped", "quarantined") if rule == "import" else ("dropped",)
    images = ledger.set_aside_images(rule=rule, image_id=image_id)
    labels = ledger.dropped_labels(rule=rule, image_id=image_id, statuses=statuses)
    queued = review_queue(ledger, rules=None if rule is None else [rule], statuses=("pending",), image_id=image_id)
    result = RestoreResult(images["image_id"].tolist(), list(zip(labels["image_id"], labels["label_id"].astype(int))),
                           reviews=list(zip(queued["image_id"], queued["rule"])))
    if rule is not None:
        # A rule that added labels (a review round's decisions) is undone by dropping them
        # again, under a rule of their own so a second restore does not bring them back.
        added = ledger.added_labels(rule, image_id=image_id)
        result.unadded = list(zip(added["image_id"], added["label_id"].astype(int)))
    if apply:
        # One image named: a person's judgement of it, which dedup honours (`Ledger.restored_by_hand`).
        by_hand = {} if image_id is None else {
            i: by_hand_reason(why) for i, why in zip(images["image_id"], images["status_reason"])}
        changes = [Change("restore_image", i, reason=by_hand.get(i, "")) for i in result.images]
        changes += [Change("restore_label", i, l) for i, l in result.labels]
        changes += [Change("drop_label", i, l, reason=f"restore: undo {rule}", rule=f"undo:{rule}")
                    for i, l in result.unadded]
        with ledger.transaction():
            ledger.apply_changes(changes)
            if result.reviews:
                set_review_status(ledger, "cancelled", rule=rule, image_ids=None if image_id is None else [image_id],
                                  reason="restored")
        result.applied = True
    return result
