"""Defaults of `ifa model` and `ifa curate flag-noise` that the CLI shows in --help, and the
time a cross-fit is expected to take: importable without torch or pandas, so the command
line starts fast."""

from __future__ import annotations

DEFAULT_MODEL_NAME = "baseline"  # <workspace>/models/<name>/
# Without --top, a flag is kept when its estimated probability of being an error is at least
# this (scores from probabilities calibrated per class, ranking.CALIBRATE). Chosen on the tuning
# noise models of benchmarks/noise_bench.py (uniform swaps and missing-label-heavy noise, myntra
# and clothing; out-of-sample probabilities of weak models, validation F1 0.24-0.56): the
# smallest of 0.50, 0.55 ... 0.90 whose pair precision is >= 0.35 (0.3 and a margin) on every
# tuning case where cleanlab's find_label_issues keeps less than 0.3. Precision (recall) at
# 0.65 / 0.7 / 0.75: clothing/missing 0.33 (0.13) / 0.37 (0.12) / 0.41 (0.09), clothing/uniform
# 0.49 (0.18) / 0.56 (0.16) / 0.58 (0.12), myntra/uniform 0.60 (0.40) / 0.63 (0.36) / 0.66 (0.31).
# Before calibration the threshold was 0.8 on raw scores, which kept only 0.23 on
# clothing/missing (0.29 even at 0.9): a weak model's overconfident probabilities made its
# scores overconfident too.
DEFAULT_MIN_SCORE = 0.7
DEFAULT_RUN = "flag-noise"

# flag-noise's cross-fit without --features: the settings benchmarks/noise_bench.py measures,
# chosen so 3,000 photos finish in under 5 minutes on 2 CPU cores. The earlier 64 px x 10
# epochs x 5 folds took 1,120 s there (busy machine) and 387 s on free cores; 32 px x 6
# epochs x 4 folds takes 53 s on free cores, 264 s on busy ones (validation F1 0.49 on myntra).
FLAG_NOISE_FOLDS = 4
FLAG_NOISE_EPOCHS = 6
FLAG_NOISE_IMAGE_SIZE = 32
FLAG_NOISE_LR = 2e-3

# Measured cross-fit throughput of the small CNN on 2 free CPU cores (load average under 2),
# every cost included (start-up, decoding, training, each epoch's validation, the held-out
# predictions, the ranking), in trained image-epochs per second: 3,000 photos at 32 px, 6
# epochs x 4 folds (54,000 image-epochs) in 52.7 s on myntra-products and 53.4 s on
# clothing-cc0 = 1,020/s; at 64 px, 10 x 5 (120,000) in 386.7 s = 310/s, so the rate falls
# as size ** 1.7 (`python -m benchmarks.flag_noise_time`, with `--options "--epochs 10
# --image-size 64 --folds 5"` for the second). Busy cores are slower: the defaults took 264 s
# on myntra at load 3-5.
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
