"""Noisy training labels: `ifa model train|predict` and `ifa curate flag-noise`.

Start with `flag.py` (the command: out-of-sample probabilities, flags, reports);
`ranking.py` scores each (image, label) pair; `model/` is the baseline classifier
(data, backbones, training, cross-fitting) and `augment.py` the paper's augmentation.
"""
