"""What dedup's tests read from its result."""

from __future__ import annotations


def clusters_of(result) -> dict[str, set[str]]:
    """kept image id -> ids of every member of its cluster (a DedupResult's clusters)."""
    return {c.keep: {m.image_id for m in c.members} for c in result.clusters}
