"""Rebuild the bundled sample from ../shared/data/clothing-cc0 (a developer tool; the
sample it writes is committed, so nothing runs this at install or test time).

    python sample/make_sample.py ../shared/data/clothing-cc0

Picks 20 photos of each class that maps to an iMaterialist category (15 classes) and 5
each of Hat and Shoes, which map to no category and stay unlabelled: real images with no
labels, for `check-attributes` to find. Splits follow the source's small-subset split
where it has one; the rest are drawn with a fixed seed so each split holds every class.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd

from ifa.taxonomy import Taxonomy

PER_CLASS = 20
UNLABELLED = {"Hat": 5, "Shoes": 5}
SPLIT_SHARE = {"train": 14, "validation": 3, "test": 3}  # of each class's 20
URL = "https://raw.githubusercontent.com/alexeygrigorev/clothing-dataset/master/images/{}.jpg"


def main(source: Path, out: Path) -> None:
    tax = Taxonomy.default()
    data = pd.read_csv(source / "labels.csv")
    picked = []
    for label, group in data.groupby("label"):
        n = UNLABELLED.get(label, PER_CLASS if group["imat_category"].notna().any() else 0)
        group = group.sample(frac=1.0, random_state=7).head(n).reset_index(drop=True)
        if label in UNLABELLED:
            group["split"] = "train"
        else:
            group["split"] = [s for s, k in SPLIT_SHARE.items() for _ in range(k)][: len(group)]
        picked.append(group)
    sample = pd.concat(picked, ignore_index=True).sort_values("image_id")
    (out / "images").mkdir(parents=True, exist_ok=True)
    for split in SPLIT_SHARE:
        rows = sample[sample["split"] == split]
        doc = {"images": [{"imageId": r.image_id, "url": URL.format(r.image_id)} for r in rows.itertuples()]}
        if split != "test":
            doc["annotations"] = [
                {"imageId": r.image_id,
                 "labelId": [str(tax.by_name(v).id) for v in (r.imat_category, r.imat_sleeve, r.imat_neckline) if isinstance(v, str)]}
                for r in rows.itertuples()
            ]
        (out / f"{split}.json").write_text(json.dumps(doc, indent=1))
        for r in rows.itertuples():
            shutil.copyfile(source / r.image_file, out / "images" / f"{r.image_id}.jpg")
    # The source's own class per photo (e.g. Shoes, Hat), for the demo to plant realistic problems.
    sample[["image_id", "label", "split"]].rename(columns={"label": "source_class"}).to_csv(out / "classes.csv", index=False)
    shutil.copyfile(source / "LICENSE", out / "LICENSE")
    print(sample.groupby(["split"]).size().to_string())


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).parent / "clothing-cc0")
