"""The baseline multi-label model: backbones, training with checkpoints, prediction,
and K-fold cross-fitting for out-of-sample probabilities."""
