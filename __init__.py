"""ifa: curate large multi-label image datasets and run their human review."""

__version__ = "0.1.0"
