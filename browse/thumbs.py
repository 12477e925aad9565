"""Thumbnails for the grid: made on first view, then read from the workspace's cache
(thumbs/<size>/<ab>/<key>.jpg, keyed by the file's sha256), so a million-image workspace
pays only for the pages someone looks at."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

THUMB_PX = 224


def cache_path(root: Path, image_id: str, path: str, sha256: str | None, size: int = THUMB_PX) -> Path:
    """Where the thumbnail of this file lives: by content when its sha256 is known, else by
    image id, path and modification time (a replaced file gets a new thumbnail)."""
    if sha256:
        key = sha256
    else:
        try:
            stamp = os.stat(path).st_mtime_ns
        except OSError:
            stamp = 0
        key = hashlib.sha256(f"{image_id}\0{path}\0{stamp}".encode()).hexdigest()
    return Path(root) / "thumbs" / str(size) / key[:2] / f"{key}.jpg"


def thumbnail(root: Path, image_id: str, path: str | None, sha256: str | None, size: int = THUMB_PX) -> bytes | None:
    """The JPEG bytes of the image's thumbnail (longest side `size`), made and cached on
    first use; None when the image has no local file or it cannot be decoded."""
    if not path:
        return None
    target = cache_path(root, image_id, path, sha256, size)
    try:
        return target.read_bytes()
    except OSError:
        pass
    data = _make(path, size)
    if data is not None and _cacheable(root, target):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)  # two requests for one thumbnail: either write wins whole
    return data


def _cacheable(root: Path, target: Path) -> bool:
    """Whether the thumbnail may be cached at `target`: not when a folder on the way (thumbs/
    and below) is a link, which would carry the write outside the workspace; it is served
    uncached then."""
    from ..curation.workspace import refuse_links
    from ..errors import IfaError
    try:
        refuse_links(root, target)
    except IfaError:
        return False
    return True


def _make(path: str, size: int) -> bytes | None:
    from PIL import Image, ImageOps
    try:
        with Image.open(path) as im:
            im.draft("RGB", (size * 2, size * 2))  # decode JPEGs at reduced scale
            im = ImageOps.exif_transpose(im)
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.convert("RGB").save(buf, "JPEG", quality=82)
            return buf.getvalue()
    except Exception:  # noqa: BLE001 - any decoder error means "no thumbnail"; the page says the file is unreadable
        return None
