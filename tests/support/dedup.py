"""Dedup's test scenario (a workspace of copies, near copies and broken files made from the
bundled photos) and what the tests read from dedup's result."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance

from ifa.curation.ingest import importing
from ifa.curation.workspace import Workspace
from ifa.sample import IMAGES_DIR


def clusters_of(result) -> dict[str, set[str]]:
    """kept image id -> ids of every member of its cluster (a DedupResult's clusters)."""
    return {c.keep: {m.image_id for m in c.members} for c in result.clusters}


PHOTOS = sorted(IMAGES_DIR.glob("*.jpg"))
READABLE = 15  # files that decode: 18 files less trunc, empty and text (nofile has no file)


def product_copies(folder: Path, photos: Path, names: tuple[str, ...]) -> list[str]:
    """Each photo photos/NAME.jpg of names and a brightened (+15%), a boxed (a dark box in the
    bottom right corner) and a cropped (4% a side) copy of it, saved as JPEGs (q90) in folder
    as NAME.jpg, NAME-bright.jpg, NAME-box.jpg, NAME-crop.jpg. Returns their paths in that order."""
    out = []
    for name in names:
        with Image.open(photos / f"{name}.jpg") as im:
            rgb = im.convert("RGB")
        w, h = rgb.size
        boxed = rgb.copy()
        ImageDraw.Draw(boxed).rectangle((w * 0.7, h * 0.85, w - 1, h - 1), fill=(30, 30, 30))
        copies = {"": rgb, "-bright": ImageEnhance.Brightness(rgb).enhance(1.15), "-box": boxed,
                  "-crop": rgb.crop((round(w * 0.04), round(h * 0.04), round(w * 0.96), round(h * 0.96)))}
        for suffix, im in copies.items():
            path = folder / f"{name}{suffix}.jpg"
            im.save(path, "JPEG", quality=90)
            out.append(str(path))
    return out


def _jpeg(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", **kw)
    return buf.getvalue()


def _half(im: Image.Image) -> Image.Image:
    return im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS)


def build_files(folder: Path) -> dict[str, dict[str, list[str]]]:
    """Write the scenario's files; returns {split: {image_id: labels}}."""
    folder.mkdir(parents=True, exist_ok=True)
    p = [Image.open(path) for path in PHOTOS[:10]]
    files = {
        "a": PHOTOS[0].read_bytes(), "a-copy": PHOTOS[0].read_bytes(),
        "b": PHOTOS[1].read_bytes(),
        "c-big": PHOTOS[2].read_bytes(), "c-small": _jpeg(_half(p[2]), quality=90),
        "d1": _jpeg(p[3], quality=95), "d2": _jpeg(p[3], quality=60),
        "9": PHOTOS[4].read_bytes(), "10": PHOTOS[4].read_bytes(),
        "e": PHOTOS[5].read_bytes(),
        "trunc": PHOTOS[6].read_bytes()[:5000], "empty": b"", "text": b"not an image\n" * 20,
        "v-a": _jpeg(p[0], quality=50), "v-f": PHOTOS[7].read_bytes(),
        "t-a": _jpeg(_half(p[0]), quality=90), "t-b": _jpeg(ImageEnhance.Brightness(p[1].convert("RGB")).enhance(1.2), quality=90),
        "t-g": PHOTOS[8].read_bytes(),
    }
    for name, data in files.items():
        (folder / f"{name}.jpg").write_bytes(data)
    labels = {
        "train": {"a": ["91"], "a-copy": ["91"], "b": ["38"], "c-big": ["49"], "c-small": ["49"], "d1": ["91"],
                  "d2": ["38"], "9": ["49"], "10": ["49"], "e": ["91"], "trunc": ["91"], "empty": ["91"],
                  "text": ["91"], "nofile": ["91"]},
        "validation": {"v-a": ["91"], "v-f": ["38"]},
        "test": {"t-a": [], "t-b": [], "t-g": []},
    }
    return labels


def make_workspace(root: Path) -> Workspace:
    folder = root / "images-in"
    labels = build_files(folder)
    ws = Workspace.init(root / "ws", command="test")
    for split, images in labels.items():
        doc = {"images": [{"imageId": i, "url": f"https://example.invalid/{i}.jpg"} for i in images]}
        if split != "test":
            doc["annotations"] = [{"imageId": i, "labelId": l} for i, l in images.items()]
        path = root / f"{split}.json"
        path.write_text(json.dumps(doc))
        importing.import_imat(ws, path, split, images_dir=folder)
    return ws
