"""Defaults of `ifa model` and `ifa curate flag-noise` that the CLI shows in --help:
importable without torch or pandas, so the command line starts fast."""

DEFAULT_MODEL_NAME = "baseline"  # <workspace>/models/<name>/
# Without --top, a flag is kept when its estimated probability of being an error is at least
# this: "more likely wrong than right". Measured (myntra, 8% injected noise, a 48 px CNN at
# validation F1 0.51): the confident-learning rule alone flags 8,211 pairs on 2,295 of 2,500
# images at precision 0.08; with score >= 0.5, 2,006 pairs at precision 0.29, recall 0.53.
DEFAULT_MIN_SCORE = 0.5
DEFAULT_RUN = "flag-noise"
