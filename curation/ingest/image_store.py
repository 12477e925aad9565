"""The workspace's content-addressed image store and the checks a body passes to enter it.

A file lives at `images/ab/cd/<sha256>.<ext>` (ab, cd: the hash's first two byte pairs,
so no folder holds more than a few hundred files at a million images). It is written to
`images/.partial/`, fsynced and renamed into place, so a kill -9 never leaves a
half-written file under a name that passes as an image; the staging folder sits on the
same filesystem (the rename is atomic) and a rerun empties it without walking the tree.

`verify` is the gate: size cap, magic bytes of a known image format, then a full Pillow
decode with its decompression-bomb guard (Image.MAX_IMAGE_PIXELS). A full decode costs
0.9 ms for the sample's 400x711 JPEGs on this machine, far below a download's round trip.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..workspace import refuse_links
from .downloader import FetchError

REASONS: dict[str, tuple[bool, str]] = {
    "empty": (False, "a zero-byte body"),
    "not-an-image": (False, "the body is not a known image format (an HTML error page sent as image/jpeg, ...)"),
    "decode-error": (False, "image bytes that Pillow cannot decode"),
    "decompression-bomb": (False, "more pixels than Pillow's decompression-bomb limit"),
}


@dataclass(frozen=True)
class ImageFormat:
    """A format the store accepts: Pillow's name, the file extension, and a magic-bytes
    test on the first 16 bytes."""

    pillow: str
    ext: str
    matches: Callable[[bytes], bool]


FORMATS: tuple[ImageFormat, ...] = (
    ImageFormat("JPEG", "jpg", lambda h: h.startswith(b"\xff\xd8\xff")),
    ImageFormat("PNG", "png", lambda h: h.startswith(b"\x89PNG\r\n\x1a\n")),
    ImageFormat("GIF", "gif", lambda h: h[:6] in (b"GIF87a", b"GIF89a")),
    ImageFormat("WEBP", "webp", lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP"),
    ImageFormat("BMP", "bmp", lambda h: h[:2] == b"BM"),
    ImageFormat("TIFF", "tif", lambda h: h[:4] in (b"II*\x00", b"MM\x00*")),
)
_BY_PILLOW = {f.pillow: f for f in FORMATS}


@dataclass(frozen=True)
class Verified:
    """A body that passed every check."""

    sha256: str
    ext: str
    bytes: int
    width: int
    height: int


def sniff(data: bytes) -> ImageFormat | None:
    """The format whose magic bytes `data` starts with, or None."""
    head = data[:16]
    return next((f for f in FORMATS if f.matches(head)), None)


def verify(data: bytes, max_bytes: int) -> Verified:
    """Check a downloaded body. Raises FetchError with reason empty, too-large,
    not-an-image, truncated, decode-error or decompression-bomb."""
    from PIL import Image  # Pillow loads when a body is verified, not with the CLI
    if not data:
        raise FetchError("empty", "the server sent a zero-byte body")
    if len(data) > max_bytes:
        raise FetchError("too-large", f"{len(data):,} bytes is over the cap of {max_bytes:,}")
    fmt = sniff(data)
    if fmt is None:
        start = data[:40].decode("latin-1").replace("\n", " ")
        raise FetchError("not-an-image", f"the body starts with {start!r}, not an image's magic bytes")
    try:
        with Image.open(io.BytesIO(data), formats=[fmt.pillow]) as im:
            width, height = im.size
            # Checked here, not only by Pillow: its guard only warns between 1x and 2x the
            # limit, and catching that warning is not thread-safe.
            if width * height > Image.MAX_IMAGE_PIXELS:
                raise FetchError("decompression-bomb", f"{width}x{height} is over {Image.MAX_IMAGE_PIXELS:,} pixels")
            im.load()
    except FetchError:
        raise
    except Image.DecompressionBombError as exc:
        raise FetchError("decompression-bomb", str(exc)) from None
    except EOFError as exc:
        raise FetchError("truncated", f"the image data ends early: {exc}") from None
    except Exception as exc:  # noqa: BLE001 (Pillow raises many types for bad data)
        reason = "truncated" if "truncated" in str(exc).lower() else "decode-error"
        raise FetchError(reason, f"{fmt.pillow}: {type(exc).__name__}: {exc}") from None
    return Verified(hashlib.sha256(data).hexdigest(), _BY_PILLOW[fmt.pillow].ext, len(data), width, height)


class ImageStore:
    """The content-addressed folder under a workspace's `images/`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.partial = refuse_links(self.root, self.root / ".partial")  # its files are deleted: never through a link

    def path_for(self, sha256: str, ext: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / f"{sha256}.{ext}"

    def put(self, data: bytes, facts: Verified) -> Path:
        """Store verified bytes; returns the final path. Identical content already stored
        (the same photo behind two URLs) is not written again."""
        dest = self.path_for(facts.sha256, facts.ext)
        try:
            if dest.stat().st_size == facts.bytes:
                return dest
        except FileNotFoundError:
            pass
        self.partial.mkdir(parents=True, exist_ok=True)
        tmp = self.partial / f"{facts.sha256}.{uuid.uuid4().hex}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
        return dest

    def clear_partial(self) -> int:
        """Delete what a killed run left half-written; returns how many files."""
        if not self.partial.is_dir():
            return 0
        n = 0
        for p in self.partial.glob("*.tmp"):  # only what put() writes there
            if p.is_file() and not p.is_symlink():
                p.unlink(missing_ok=True)
                n += 1
        return n

    @staticmethod
    def rehash(path: Path) -> str | None:
        """sha256 of a stored file, or None when it is missing or unreadable."""
        h = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except OSError:
            return None
        return h.hexdigest()
