"""The paper's augmentation: crop sizes, the five positions, determinism, shapes."""

from __future__ import annotations

import torch

from ifa.curation.noise import augment


def test_crop_sizes_are_the_papers_fractions():
    assert augment.crop_sizes(256) == (256, 240, 224)
    assert augment.crop_sizes(64) == (64, 60, 56)


def test_crop_origins_are_corners_and_centre():
    n, h, w = 64, 56, 60
    origins = [augment.crop_origin(p, n, h, w) for p in range(len(augment.POSITIONS))]
    assert origins == [(0, 0), (0, 4), (8, 0), (8, 4), (4, 2)]


def test_train_view_is_seeded_and_varied():
    images = torch.randint(0, 256, (16, 32, 32, 3), dtype=torch.uint8)
    a = augment.train_view(images, 28, torch.Generator().manual_seed(3))
    b = augment.train_view(images, 28, torch.Generator().manual_seed(3))
    c = augment.train_view(images, 28, torch.Generator().manual_seed(4))
    assert a.shape == (16, 3, 28, 28) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.min() >= -1.0 - 1e-5 and a.max() <= 1.0 + 1e-5


def test_full_crop_without_flip_is_the_resized_image():
    # A left-right symmetric image looks the same flipped, so any full-size crop equals eval_view.
    half = torch.randint(0, 256, (1, 16, 8, 3), dtype=torch.uint8)
    image = torch.cat([half, half.flip(2)], dim=2)
    views = [augment.train_view(image, 12, torch.Generator().manual_seed(s)) for s in range(40)]
    full = augment.eval_view(image, 12)
    assert any(torch.allclose(v, full, atol=1e-5) for v in views)
    assert any(not torch.allclose(v, full, atol=1e-3) for v in views)  # and other crops differ
