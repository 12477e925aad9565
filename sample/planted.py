"""A copy of the bundled sample with known problems planted, so every step of the demo
has something real to find: duplicates (exact and near, within train and leaking into
validation/test), confused attributes, and noisy training labels.

The planted truth is returned (and written as planted.json) so the demo can say how
many of them each step found.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image, ImageEnhance

from ..taxonomy import Taxonomy
from . import IMAGES_DIR, SAMPLE_DIR, split_file

SPLITS = ("train", "validation", "test")


@dataclass
class Planted:
    """What was planted, by kind: image ids (or (image id, label id) pairs for noise)."""

    exact_duplicates: list[str] = field(default_factory=list)  # byte-identical copies in train
    near_duplicates: list[str] = field(default_factory=list)  # re-encoded/resized copies
    leaked: list[str] = field(default_factory=list)  # train copies of validation/test images
    two_categories: list[str] = field(default_factory=list)
    sleeve_on_shoes: list[str] = field(default_factory=list)
    contradictions: list[str] = field(default_factory=list)  # Strapless + Turtlenecks
    unknown_label: list[str] = field(default_factory=list)
    noisy_labels: list[tuple[str, int]] = field(default_factory=list)  # (image, wrong label)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Draft:
    """The sample's challenge documents being edited, and the folder its images go to."""

    images: Path
    docs: dict[str, dict]
    labels: dict[str, list[int]]  # image id -> label ids, train and validation

    def add(self, split: str, new_id: str, source_id: str) -> None:
        """List `new_id` in `split` with `source_id`'s labels (no labels in test)."""
        self.docs[split]["images"].append({"imageId": new_id, "url": None})
        if split != "test":
            labels = [str(l) for l in self.labels.get(source_id, [])]
            self.docs[split]["annotations"].append({"imageId": new_id, "labelId": labels})

    def add_copy(self, source_id: str, split: str, new_id: str, transform) -> None:
        """Write a re-encoded, transformed copy of `source_id` as `new_id` in `split`."""
        with Image.open(self.images / f"{source_id}.jpg") as im:
            transform(im.convert("RGB")).save(self.images / f"{new_id}.jpg", quality=85)
        self.add(split, new_id, source_id)


def _shrink(im: Image.Image) -> Image.Image:
    return im.resize((im.width * 9 // 10, im.height * 9 // 10))


def _brighten(im: Image.Image) -> Image.Image:
    return ImageEnhance.Brightness(im).enhance(1.1)


def _plant_duplicates(draft: _Draft, rng: random.Random, labelled: list[str]) -> tuple[list[str], list[str]]:
    """Duplicates within train: 3 byte-identical copies, 3 re-encoded and slightly resized.
    Returns (exact copy ids, near copy ids)."""
    exact, near = [], []
    for n, source_id in enumerate(rng.sample(labelled, 6)):
        new_id = f"dup-{n}-{source_id[:8]}"
        if n < 3:
            shutil.copyfile(draft.images / f"{source_id}.jpg", draft.images / f"{new_id}.jpg")
            draft.add("train", new_id, source_id)
            exact.append(new_id)
        else:
            draft.add_copy(source_id, "train", new_id, _shrink)
            near.append(new_id)
    return exact, near


def _plant_leaks(draft: _Draft, rng: random.Random) -> list[str]:
    """Leakage: train gets brightened copies of 4 validation and 2 test images. Returns their ids."""
    evaluation = rng.sample([i["imageId"] for i in draft.docs["validation"]["images"]], 4) + \
        rng.sample([i["imageId"] for i in draft.docs["test"]["images"]], 2)
    leaked = []
    for n, source_id in enumerate(evaluation):
        new_id = f"leak-{n}-{source_id[:8]}"
        draft.add_copy(source_id, "train", new_id, _brighten)
        leaked.append(new_id)
    return leaked


def _plant_label_problems(draft: _Draft, rng: random.Random, tax: Taxonomy, labelled: list[str],
                          noise_rate: float) -> Planted:
    """Confused attributes and noisy categories on train images that were not copied.
    Returns a Planted with the label-problem fields filled."""
    labels = draft.labels
    train_ids = [i["imageId"] for i in draft.docs["train"]["images"]]
    classes = pd.read_csv(SAMPLE_DIR / "classes.csv").set_index("image_id")["source_class"]
    train_ann = {a["imageId"]: a for a in draft.docs["train"]["annotations"]}
    categories = set(tax.group("category").label_ids)
    sample_categories = sorted({l for i in labelled for l in labels[i] if l in categories})
    untouched = [i for i in labelled if i in train_ann]
    rng.shuffle(untouched)
    planted = Planted()

    def take(n: int) -> list[str]:
        return [untouched.pop() for _ in range(n)]

    for image_id in take(4):  # a second category: single-label group conflict
        other = rng.choice([c for c in sample_categories if c not in labels[image_id]])
        train_ann[image_id]["labelId"].append(str(other))
        planted.two_categories.append(image_id)
    for image_id in take(2):  # sleeve Strapless with neckline Turtlenecks
        train_ann[image_id]["labelId"] += [str(tax.by_name("Strapless").id), str(tax.by_name("Turtlenecks").id)]
        planted.contradictions.append(image_id)
    for image_id in take(1):
        train_ann[image_id]["labelId"].append("999")
        planted.unknown_label.append(image_id)
    shoes = [i for i in train_ids if classes.get(i) == "Shoes"][:3]
    for image_id in shoes:  # real shoe photos, labelled as sneakers with a sleeve
        train_ann[image_id]["labelId"] = [str(tax.by_name("Sneakers").id), str(tax.by_name("Long Sleeved").id)]
        planted.sleeve_on_shoes.append(image_id)
    # Noisy labels: swap the category of a share of the remaining train images.
    for image_id in take(int(noise_rate * len(labelled))):
        ann = train_ann[image_id]["labelId"]
        cats = [l for l in ann if int(l) in categories]
        if not cats:
            continue
        wrong = rng.choice([c for c in sample_categories if str(c) not in ann])
        ann[ann.index(cats[0])] = str(wrong)
        planted.noisy_labels.append((image_id, wrong))
    return planted


def plant_problems(dest: Path, seed: int = 0, noise_rate: float = 0.08) -> Planted:
    """Write `dest/images/` and `dest/{train,validation,test}.json` (challenge format): the
    sample plus planted problems. Returns what was planted."""
    rng = random.Random(seed)
    dest = Path(dest)
    images = dest / "images"
    images.mkdir(parents=True, exist_ok=True)
    for src in IMAGES_DIR.glob("*.jpg"):
        shutil.copyfile(src, images / src.name)
    docs = {s: json.loads(split_file(s).read_text()) for s in SPLITS}
    labels = {a["imageId"]: [int(l) for l in a["labelId"]] for s in ("train", "validation") for a in docs[s]["annotations"]}
    draft = _Draft(images, docs, labels)
    train_ids = [i["imageId"] for i in docs["train"]["images"]]
    labelled = sorted(i for i in train_ids if labels.get(i))

    exact, near = _plant_duplicates(draft, rng, labelled)
    leaked = _plant_leaks(draft, rng)
    planted = _plant_label_problems(draft, rng, Taxonomy.default(), labelled, noise_rate)
    planted.exact_duplicates, planted.near_duplicates, planted.leaked = exact, near, leaked

    for split, doc in docs.items():
        (dest / f"{split}.json").write_text(json.dumps(doc, indent=1))
    (dest / "planted.json").write_text(json.dumps(planted.to_dict(), indent=1))
    return planted
