"""Hashing: the one decode path, odd formats, unreadable files, and equality with imagehash."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageEnhance

from ifa.curation.dedup import hashing, pairs, verify
from ifa.sample import IMAGES_DIR

PHOTOS = sorted(IMAGES_DIR.glob("*.jpg"))


def photo(i: int = 0) -> Image.Image:
    return Image.open(PHOTOS[i]).convert("RGB")


def phash_of(data: bytes, trim: bool = True) -> int:
    picture, _, _ = hashing.decode(data, trim)
    return int(hashing.METHODS["phash"].hash_pictures([picture])[0])


def encode(im: Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def distance(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


# ---- equality with imagehash ------------------------------------------------------------------
@pytest.mark.parametrize("name, reference", [
    ("phash", imagehash.phash),
    ("dhash", imagehash.dhash),
    ("ahash", imagehash.average_hash),
    ("whash", lambda im: imagehash.whash(im, image_scale=32)),
])
def test_methods_compute_imagehash_bits(name, reference):
    method = hashing.METHODS[name]
    for path in PHOTOS[:20]:
        # At the method's own size the resize is the identity for both, so only the
        # algorithm is compared, bit for bit.
        small = Image.open(path).convert("L").resize(method.size, Image.Resampling.LANCZOS)
        ours = int(method.hash_pictures([small])[0])
        assert ours == int(str(reference(small)), 16), path.name


def test_resize_is_pillows_lanczos_horizontal_pass_first():
    rng = np.random.default_rng(0)
    pictures = [np.asarray(Image.open(p).convert("L").reduce(8)) for p in PHOTOS[:30]]
    pictures += [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(33, 40), (200, 31), (1, 1), (32, 32), (5, 300)]]
    for size in [(32, 32), (9, 8), (8, 8)]:
        ours = hashing.resize_lanczos(pictures, size)
        for pic, got in zip(pictures, ours):
            im = Image.fromarray(pic)
            want = im.resize((size[0], im.height), Image.Resampling.LANCZOS).resize(size, Image.Resampling.LANCZOS)
            assert np.array_equal(got, np.asarray(want)), (pic.shape, size)


def test_compiled_grey_is_pillows_l_conversion():
    rng = np.random.default_rng(1)
    pictures = [hashing.decode_rgb(p.read_bytes())[0] for p in PHOTOS[:20]]
    pictures += [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(1, 1, 3), (7, 300, 3), (64, 65, 3)]]
    pictures.append(np.full((9, 9, 3), 255, dtype=np.uint8))
    for rgb in pictures:
        assert np.array_equal(hashing.grey_of(rgb), np.asarray(Image.fromarray(rgb, "RGB").convert("L"))), rgb.shape


# What the decode path gave for the first 60 bundled photos before it was made faster (the
# compiled grey, LANCZOS and statistics passes): digests of every product `hash_batch`
# caches. A speed change must leave them alone; a change of what is measured changes them
# on purpose (and the cache's version). Tied to the pinned decoders (simplejpeg, Pillow).
# "signature" is its thumbnail; "overlay" the version, flags and overlay codes around it (version 4: only
# that byte changed); "crop" the crop code.
GOLDEN = {"phash": "abbb4afdbaf98a60", "dhash": "22888b5d0e2023b0", "signature": "17c0c9fb4db9301a",
          "overlay": "27ec2322cfd93241", "stats": "d577f02f426941c3", "thumb_hash": "13aaed916104a94e",
          "crop": "6c915acef32a8ea3"}


def test_compiled_box_and_bilinear_resize_are_pillows_on_real_photos():
    # Each way the decode path resizes: the signature's and the re-decode's BOX thumbnails
    # (whole and trimmed box), check-images' 17x16 grey, the trimmed cut-out (BILINEAR, a
    # fractional box). Pillow 13 runs some of these vertical pass first (`resample`).
    vertical_first = 0
    for path in PHOTOS[:40]:
        rgb, _, _ = hashing.decode_rgb(path.read_bytes())
        grey = hashing.grey_of(rgb)
        h, w = grey.shape
        t, b, l, r = hashing.refine_box(grey, hashing.trim_box(grey))
        tall = np.ascontiguousarray(rgb[:, : max(8, w // 3)])  # a tall strip: vertical pass first
        cases = [(rgb, (12, 12), Image.Resampling.BOX, (l, t, r, b)), (rgb, (24, 24), Image.Resampling.BOX, None),
                 (grey, (17, 16), Image.Resampling.BOX, None), (tall, (6, 9), Image.Resampling.BOX, None),
                 (np.ascontiguousarray(tall[:, :, 1]), (6, 9), Image.Resampling.BOX, None),
                 (grey, (max(1, round(r - l)), max(1, round(b - t))), Image.Resampling.BILINEAR, (l, t, r, b))]
        for pixels, size, kind, box in cases:
            want = np.asarray(Image.fromarray(pixels).resize(size, kind, box=box))
            got = hashing.resample(pixels, size, hashing.BOX if kind == Image.Resampling.BOX else hashing.BILINEAR, box)
            assert got.shape == want.shape and np.array_equal(got, want), (path.name, size, kind, box)
            vertical_first += pixels.shape[0] - size[1] > 2 * (pixels.shape[1] - size[0])
    assert vertical_first >= 40  # the tall strips took the vertical-first order


def test_a_batch_gets_the_codes_each_file_gets_alone():
    # hash_batch makes the overlay codes of FINISH_BATCH pictures at once: across that
    # boundary, every signature and hash is what `prepare` gives the file by itself.
    paths = (PHOTOS * 3)[:hashing.FINISH_BATCH + 5]
    batch = hashing.hash_batch([hashing.FileJob(i, str(p)) for i, p in enumerate(paths)], ("phash", "dhash"))
    for path, r in zip(paths, batch):
        alone = hashing.prepare(path.read_bytes(), with_stats=True)
        assert r.signature == alone.signature, path.name
        assert r.picture_stats.values.tobytes() == alone.stats.values.tobytes()
        assert r.hashes["phash"] == int(hashing.METHODS["phash"].hash_decoded([alone])[0])
    smalls = np.stack([hashing.prepare(p.read_bytes()).small for p in PHOTOS[:6]])
    wholes = [None, smalls[0] * 0.5, None, smalls[3][::-1].copy(), None, None]
    assert np.array_equal(hashing.overlay_codes_many(smalls, wholes),
                          [hashing.overlay_codes(s, w) for s, w in zip(smalls, wholes)])


def test_compiled_ring_is_the_lower_median_of_the_outer_lines():
    for path in PHOTOS[:30]:
        grey = hashing.grey_of(hashing.decode_rgb(path.read_bytes())[0])
        for g in (grey, grey[:1], grey[:, :1], np.ascontiguousarray(grey[::-1, 5:])):
            ring = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
            median = int(np.sort(ring)[(len(ring) - 1) // 2])
            near = int((np.abs(ring.astype(int) - median) <= hashing.FLAT_TOLERANCE).sum())
            assert hashing._ring(g) == (median, near >= hashing.TEXT_BOX_RING * len(ring))


def test_decode_products_are_unchanged_by_the_faster_passes():
    import hashlib

    rs = hashing.hash_batch([hashing.FileJob(i, str(p)) for i, p in enumerate(PHOTOS[:60])], ("phash", "dhash"))
    parts = {"phash": [r.hashes["phash"].to_bytes(8, "big") for r in rs],
             "dhash": [r.hashes["dhash"].to_bytes(8, "big") for r in rs],
             "signature": [r.signature[verify.HEADER:verify.HEADER + verify.THUMB_BYTES] for r in rs],
             "overlay": [r.signature[:verify.HEADER] + r.signature[verify.HEADER + verify.THUMB_BYTES:verify.CROP_AT]
                         for r in rs],
             "crop": [r.signature[verify.CROP_AT:] for r in rs],
             "stats": [r.picture_stats.values.tobytes() for r in rs],
             "thumb_hash": [r.picture_stats.thumb_hash for r in rs]}
    got = {name: hashlib.sha256(b"".join(p)).hexdigest()[:16] for name, p in parts.items()}
    assert got == GOLDEN


def test_fast_jpeg_decode_matches_pillow_draft(monkeypatch):
    datas = [p.read_bytes() for p in PHOTOS[:25]]
    fast = [hashing.decode(d) for d in datas]
    monkeypatch.setattr(hashing, "_simplejpeg", None)
    slow = [hashing.decode(d) for d in datas]
    for (a, wa, ha), (b, wb, hb) in zip(fast, slow):
        assert (wa, ha) == (wb, hb)
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_draft_decode_stays_close_to_imagehash_phash():
    # Untrimmed: imagehash hashes the whole picture (dedup trims borders first, by design).
    d = [distance(phash_of(p.read_bytes(), trim=False), int(str(imagehash.phash(Image.open(p))), 16)) for p in PHOTOS[:40]]
    # Measured: mean 1.25 bits on these 40 (phash distances are even: most are 0 or 2).
    assert np.mean(d) <= 2.0 and max(d) <= 6


# ---- odd formats: hashed, and hashed correctly ---------------------------------------------------
def test_exif_rotation_is_applied():
    base = photo(1)
    want = phash_of(encode(base, quality=95))
    for orientation, undo in [(3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_90),
                              (8, Image.Transpose.ROTATE_270), (2, Image.Transpose.FLIP_LEFT_RIGHT)]:
        exif = Image.Exif()
        exif[0x0112] = orientation
        # Store the pixels turned the other way; a viewer applying the tag shows `base`.
        data = encode(base.transpose(undo), quality=95, exif=exif.tobytes())
        assert hashing.exif_orientation(data) == orientation
        _, w, h = hashing.decode(data)
        assert (w, h) == base.size
        assert distance(phash_of(data), want) <= 4, orientation


def test_alpha_is_composited_on_white():
    base = photo(2)
    rgba = base.convert("RGBA")
    alpha = Image.new("L", base.size, 255)
    alpha.paste(0, (0, 0, base.width // 3, base.height))  # left third transparent
    rgba.putalpha(alpha)
    on_white = Image.new("RGB", base.size, "white")
    on_white.paste(base.crop((base.width // 3, 0, base.width, base.height)), (base.width // 3, 0))
    assert distance(phash_of(encode(rgba, "PNG")), phash_of(encode(on_white, "PNG"))) <= 2
    # The transparent pixels' colour must not matter: black or not, it is white now.
    black = rgba.copy()
    black.paste((0, 0, 0, 0), (0, 0, base.width // 3, base.height))
    assert phash_of(encode(black, "PNG")) == phash_of(encode(rgba, "PNG"))


def test_palette_cmyk_16bit_and_grey_hash_like_the_rgb_original():
    base = photo(3)
    want = phash_of(encode(base, "PNG"))
    grey16 = Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257)  # mode I;16
    variants = {
        "palette": encode(base.convert("P", palette=Image.Palette.ADAPTIVE, colors=256), "PNG"),
        "cmyk jpeg": encode(base.convert("CMYK"), "JPEG", quality=95),
        "16-bit png": encode(grey16, "PNG"),
        "grey": encode(base.convert("L"), "PNG"),
        "palette with transparency": encode(base.convert("P", palette=Image.Palette.ADAPTIVE), "PNG", transparency=0),
    }
    for name, data in variants.items():
        assert distance(phash_of(data), want) <= 6, name
    assert Image.open(io.BytesIO(variants["16-bit png"])).mode.startswith("I")


def test_animated_gif_hashes_its_first_frame():
    frames = [photo(4).convert("P"), photo(5).convert("P")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(io.BytesIO(buf.getvalue())).n_frames == 2
    assert distance(phash_of(buf.getvalue()), phash_of(encode(frames[0], "GIF"))) == 0


# ---- unreadable files: a reason each, never an exception ----------------------------------------
def decompression_bomb() -> bytes:
    """A tiny PNG whose header claims 30000 x 30000 pixels (over Pillow's 2x limit)."""
    data = bytearray(encode(Image.new("L", (8, 8)), "PNG"))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", 30000, 30000)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr:ihdr + 17])))
    return bytes(data)


@pytest.mark.parametrize("make, reason", [
    (lambda: b"", "empty-file"),
    (lambda: b"this is not an image, just text\n" * 10, "not-an-image"),
    (lambda: PHOTOS[0].read_bytes()[:4000], "truncated"),
    (decompression_bomb, "decompression-bomb"),
])
def test_unreadable_files_get_a_reason(tmp_path: Path, make, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(make())
    good = tmp_path / "good.jpg"
    good.write_bytes(PHOTOS[0].read_bytes())
    results = hashing.hash_batch([hashing.FileJob(1, str(path)), hashing.FileJob(2, str(good))], ("phash",))
    assert results[0].reason == reason and not results[0].decoded and not results[0].hashes
    assert results[0].sha256 is not None  # the bytes were read: the failure is cached per content
    assert results[1].reason is None and "phash" in results[1].hashes  # the batch went on


def test_missing_file_is_reported_not_raised(tmp_path: Path):
    [r] = hashing.hash_batch([hashing.FileJob(7, str(tmp_path / "gone.jpg"))], ("phash",))
    assert r.reason == "missing-file" and r.sha256 is None


def test_cached_file_is_not_read_again(tmp_path: Path):
    path = tmp_path / "a.jpg"
    path.write_bytes(PHOTOS[0].read_bytes())
    [first] = hashing.hash_batch([hashing.FileJob(1, str(path))], ("phash",))
    assert first.decoded and first.width and first.height
    known = hashing.FileJob(1, str(path), first.bytes, first.mtime_ns, first.sha256, ("phash",), False, False)
    [again] = hashing.hash_batch([known], ("phash",))
    assert not again.read and not again.decoded and again.sha256 == first.sha256
    path.write_bytes(PHOTOS[1].read_bytes())  # new content: read and hashed again
    [changed] = hashing.hash_batch([known], ("phash",))
    assert changed.decoded and changed.sha256 != first.sha256


def test_transformed_copies_stay_near_and_other_photos_far():
    base = photo(6)
    copies = [
        encode(base, quality=50),
        encode(base.resize((base.width // 2, base.height // 2), Image.Resampling.LANCZOS), quality=90),
        encode(ImageEnhance.Brightness(base).enhance(1.2), quality=90),
    ]
    want = phash_of(encode(base, quality=95))
    assert all(distance(phash_of(c), want) <= 6 for c in copies)
    others = np.array([phash_of(p.read_bytes()) for p in PHOTOS[10:40]], dtype=np.uint64)
    assert pairs.popcount(others ^ np.uint64(want)).min() > 6


def test_unknown_method_fails_before_touching_files():
    with pytest.raises(KeyError, match="unknown hash method"):
        hashing.hash_batch([hashing.FileJob(1, "/nonexistent")], ("nope",))
