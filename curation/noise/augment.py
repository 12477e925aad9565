"""The paper's training augmentation, on batches of tensors (any device).

iMaterialist Fashion paper, Sec. 5: images are resized to N x N (256), a crop whose width
and height are each drawn from {N, 0.9375N, 0.875N} (256, 240, 224) is taken at one of
five fixed positions (the four corners or the centre), resized to M x M (224) and flipped
horizontally at random. At evaluation time the whole N x N image is resized to M x M.

Images arrive already resized to N x N (the pixel cache stores them that way), as uint8
(B, N, N, 3); the functions here return float (B, 3, M, M) in [-1, 1]. Randomness comes
only from the `torch.Generator` passed in, so a seeded run augments identically every time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CROP_FRACTIONS = (1.0, 0.9375, 0.875)  # paper: {256, 240, 224} of 256
POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right", "centre")


def crop_sizes(n: int) -> tuple[int, ...]:
    """The crop side lengths for an N x N image: N, 0.9375N, 0.875N (rounded)."""
    return tuple(max(1, round(n * f)) for f in CROP_FRACTIONS)


def crop_origin(position: int, n: int, height: int, width: int) -> tuple[int, int]:
    """Top-left (row, col) of a `height` x `width` crop at one of the five POSITIONS."""
    name = POSITIONS[position]
    if name == "centre":
        return (n - height) // 2, (n - width) // 2
    row = 0 if name.startswith("top") else n - height
    col = 0 if name.endswith("left") else n - width
    return row, col


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) scaled to [-1, 1]."""
    return images.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def train_view(images: torch.Tensor, out_size: int, generator: torch.Generator) -> torch.Tensor:
    """Randomly cropped, resized and flipped views of uint8 (B, N, N, 3) images.

    Returns float (B, 3, out_size, out_size). Draws, per image, a crop height and width
    (independently) from `crop_sizes(N)`, one of the five positions, and a flip; the
    draws come from `generator` (a CPU generator), so they are reproducible."""
    b, n = images.shape[0], images.shape[1]
    sizes = crop_sizes(n)
    draws = torch.randint(0, 1 << 30, (b, 4), generator=generator)
    h_idx, w_idx = draws[:, 0] % len(sizes), draws[:, 1] % len(sizes)
    pos, flip = draws[:, 2] % len(POSITIONS), draws[:, 3] % 2
    x = to_float(images)
    out = torch.empty((b, 3, out_size, out_size), dtype=x.dtype, device=x.device)
    # Images sharing a crop shape are resized together: at most 9 shapes x 5 positions,
    # so a batch costs a handful of interpolate calls instead of one per image.
    keys = (h_idx * len(sizes) + w_idx) * len(POSITIONS) + pos
    for key in torch.unique(keys).tolist():
        sel = torch.nonzero(keys == key).flatten()
        h, w = sizes[key // len(POSITIONS) // len(sizes)], sizes[key // len(POSITIONS) % len(sizes)]
        r, c = crop_origin(key % len(POSITIONS), n, h, w)
        crop = x[sel.to(x.device), :, r:r + h, c:c + w]
        out[sel.to(x.device)] = _resize(crop, out_size)
    flip = flip.bool().to(x.device)
    out[flip] = out[flip].flip(-1)
    return out


def eval_view(images: torch.Tensor, out_size: int) -> torch.Tensor:
    """The whole uint8 (B, N, N, 3) image resized to float (B, 3, out_size, out_size)."""
    return _resize(to_float(images), out_size)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
