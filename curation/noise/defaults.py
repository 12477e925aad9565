"""Defaults of `ifa model` and `ifa curate flag-noise` that the CLI shows in --help, and the
time a cross-fit is expected to take: importable without torch or pandas, so the command
line starts fast."""

from __future__ import annotations

DEFAULT_MODEL_NAME = "baseline"  # <workspace>/models/<name>/
# Without --top, keep a flag whose calibrated error probability reaches this: the smallest
# threshold with pair precision >= 0.35 on every tuning case (benchmarks/noise_bench.py --tune).
DEFAULT_MIN_SCORE = 0.7
DEFAULT_RUN = "flag-noise"

# The cross-fit without --features: 3,000 photos in under 5 minutes on 2 CPU cores at a
# validation F1 close to slower settings (benchmarks/noise_bench.py, benchmarks/flag_noise_time.py).
FLAG_NOISE_FOLDS = 4
FLAG_NOISE_EPOCHS = 6
FLAG_NOISE_IMAGE_SIZE = 32
FLAG_NOISE_LR = 2e-3

# The small CNN's cross-fit rate on 2 free CPU cores in trained image-epochs per second, every
# cost included, and how it falls with image size (benchmarks/flag_noise_time.py).
CNN_RATE_AT_32PX = 1020.0
RATE_SIZE_EXPONENT = 1.7
MILLION_HINT = ("A million photos want --features (embeddings, e.g. from `ifa model embed`, and a linear head) "
                "or --device cuda.")


def expected_cross_fit_seconds(images: int, epochs: int, folds: int, image_size: int) -> float:
    """Seconds a small-CNN cross-fit of `images` train photos is expected to take on 2 CPU
    cores: each of `folds` models trains `epochs` passes over (folds - 1) / folds of them,
    at the measured rate for `image_size` (see CNN_RATE_AT_32PX)."""
    image_epochs = folds * epochs * images * (folds - 1) / max(folds, 1)
    rate = CNN_RATE_AT_32PX * (32.0 / max(image_size, 8)) ** RATE_SIZE_EXPONENT
    return image_epochs / rate


def describe_seconds(seconds: float) -> str:
    """'about 40 s', 'about 4 min', 'about 3.5 h'."""
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"
