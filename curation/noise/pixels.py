"""One image file to a square of uint8 pixels: the one decode the models share (the
baseline's pixel cache and `ifa model embed`). Imports neither torch nor onnxruntime, so
decoding worker processes stay light."""

from __future__ import annotations

from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps


def decode(source: str | BinaryIO, size: int) -> np.ndarray | None:
    """One image (a path or an open binary file) as uint8 (size, size, 3), squashed to a
    square as the paper resizes; None when the file is missing or unreadable (callers
    count it)."""
    try:
        with Image.open(source) as im:
            im.draft("RGB", (size * 2, size * 2))  # JPEG: decode at reduced scale, much faster
            im = ImageOps.exif_transpose(im).convert("RGB")
            return np.asarray(im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0))
    except Exception:  # noqa: BLE001 - any decoder error means "no pixels"
        return None
