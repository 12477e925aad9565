"""What the browser may change, each through the ledger call the CLI's commands use
(`Ledger.apply_changes`, `annotation.rounds.create_round`): one event per change, under
the rule `browse`, so `ifa curate restore --image ID` (or `--rule browse`) undoes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ..curation.ledger import Change, Ledger, by_hand_reason
from ..curation.ledger.browse import BrowseFilter, label_rows, page
from ..curation.workspace import Workspace
from ..errors import IfaError
from ..taxonomy import Taxonomy

RULE = "browse"  # `ifa curate restore --rule browse` undoes every change made in the browser
MAX_REVIEW_IMAGES = 50_000


@dataclass
class ActionResult:
    """What an action changed: counts per change kind that took effect (0: it was already so)."""

    image_id: str
    changed: dict[str, int] = field(default_factory=dict)


def set_aside(ledger: Ledger, image_id: str, reason: str = "") -> ActionResult:
    """Set the image aside with `reason`. Raises IfaError for an unknown image."""
    done = ledger.apply_changes([Change("set_aside", str(image_id), reason=reason.strip() or "set aside in ifa browse",
                                       rule=RULE)])
    return ActionResult(str(image_id), {"set_aside": done["set_aside"]})


def restore(ledger: Ledger, image_id: str, reason: str = "") -> ActionResult:
    """Make a set-aside image active again: a person's judgement of it, as `ifa curate restore
    --image` (its event's reason starts RESTORED_BY_HAND, then the reason given or what set it
    aside, so dedup does not set it aside again). Raises IfaError for an unknown image."""
    row = ledger.image(str(image_id)) or {}
    done = ledger.apply_changes([Change("restore_image", str(image_id),
                                        reason=by_hand_reason(row.get("status_reason"), reason, "in ifa browse"))])
    return ActionResult(str(image_id), {"restore_image": done["restore_image"]})


def change_labels(ledger: Ledger, taxonomy: Taxonomy, image_id: str, add: Sequence = (), drop: Sequence = (),
                  reason: str = "") -> ActionResult:
    """Add and drop labels (names or ids) of one image in one transaction. Adding a label
    the image had dropped restores that row (its source stays); a new one gets source
    `browse`. Raises IfaError for an unknown image or label, or a label both added and dropped."""
    add_ids = [taxonomy.lookup(v).id for v in add]
    drop_ids = [taxonomy.lookup(v).id for v in drop]
    both = set(add_ids) & set(drop_ids)
    if both:
        raise IfaError(f"Label {', '.join(taxonomy.names(sorted(both)))} is both added and dropped; ask for one.")
    if ledger.image(image_id) is None:
        raise IfaError(f"The workspace has no image {image_id!r}.")
    have = label_rows(ledger, image_id)
    why = reason.strip()
    changes = [Change("restore_label", str(image_id), i, reason=why or "restored in ifa browse", rule=RULE)
               if have.get(i) in ("dropped", "quarantined") else
               Change("add_label", str(image_id), i, reason=why or "added in ifa browse", rule=RULE, source=RULE)
               for i in add_ids]
    changes += [Change("drop_label", str(image_id), i, reason=why or "dropped in ifa browse", rule=RULE)
                for i in drop_ids if i in have]
    missing = [i for i in drop_ids if i not in have]
    if missing:
        raise IfaError(f"Image {image_id!r} has no label {', '.join(taxonomy.names(missing))} to drop.")
    done = ledger.apply_changes(changes)
    return ActionResult(str(image_id), {k: v for k, v in done.items() if v or k in {c.kind for c in changes}})


def slice_ids(ledger: Ledger, f: BrowseFilter, most: int = MAX_REVIEW_IMAGES) -> list[str]:
    """The image ids of a slice, in pk order, read page by page. Raises IfaError when it
    holds more than `most`."""
    ids: list[str] = []
    after = 0
    while rows := page(ledger, f, after, 5000):
        ids += [r.image_id for r in rows]
        after = rows[-1].pk
        if len(ids) > most:
            raise IfaError(f"The selection holds more than {most:,} images; narrow it before sending it to review.")
    return ids


def send_to_review(ws: Workspace, f: BrowseFilter, annotators: Sequence[str], tiebreaker: Sequence[str],
                   name: str | None = None) -> dict:
    """A review round over the slice's active images, made by `ifa review create
    --images-from`'s library call on the workspace's Label Studio server. The slice must
    name one split. Returns the round's description (`CreateResult.to_dict()`).
    Raises IfaError when the slice names no split or is empty, or as create_round does."""
    from ..annotation import rounds  # only annotation/ talks to Label Studio

    if f.split is None:
        raise IfaError("A review round takes the images of one split: choose a split first.")
    ids = slice_ids(ws.ledger, BrowseFilter(**{**f.__dict__, "status": "active"}))
    if not ids:
        raise IfaError("The selection holds no active image to review.")
    return rounds.create_round(ws, split=f.split, annotators=list(annotators), tiebreaker=list(tiebreaker),
                               image_ids=ids, name=name or None).to_dict()
