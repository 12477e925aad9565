"""`ifa curate dedup`'s summary on the terminal (the HTML and CSV reports come from the library)."""

from __future__ import annotations

from . import render


def show(result) -> None:
    """Warnings first, counts, the clusters that matter most, possible copies whose labels
    differ, then where the reports are. result: a dedup.run.DedupResult."""
    out = render.out
    for line in result.warnings:
        out.print(f"[bold yellow]warning:[/] {line}")
    how = ("identical files" if result.method is None else
           f"{result.method} <= {result.threshold} bits, verified at >= {result.min_similarity:g} + identical files")
    render.done(f"{result.images_considered:,} images ({how}): {result.images_hashed:,} hashed, "
                f"{result.images_cached:,} from cache, {len(result.unreadable):,} unreadable, "
                f"{len(result.skipped_no_file):,} without a local file (skipped)")
    out.print(render.table("Duplicates", ["", "#"], _counts(result)))
    if result.unreadable:
        counts: dict[str, int] = {}
        for u in result.unreadable:
            counts[u["reason"]] = counts.get(u["reason"], 0) + 1
        out.print(render.table("Unreadable images", ["reason", "#"], sorted(counts.items())))
    top = [(c.keep, len(c.members), ", ".join(_member(m) for m in c.members[1:4]) + (" ..." if len(c.members) > 4 else ""),
            "LARGE" if c.large else ("cross-split" if c.cross_split else ("narrow pass" if c.narrowest is not None else "")),
            "labels differ" if c.label_conflict else "") for c in result.clusters[:10]]
    if top:
        out.print(render.table("Clusters (large, cross-split, label conflicts, narrow passes first)",
                               ["keep", "#", "set aside", "", ""], top))
    narrow = result.narrow_passes()
    if narrow:
        out.print(render.table(f"Narrow passes (under {result.narrow_under:.3f}): look-alike items "
                               "of one shoot pass here; check by eye",
                               ["image", "kept image", "similarity"],
                               [(m.image_id, c.keep, f"{m.similarity:.3f}") for c, m in narrow[:10]]))
    if result.possible_copies:
        out.print(render.table("Possible copies, labels differ (action none: not set aside)",
                               ["image", "image", "similarity", "what differs", "64x64 grey difference"],
                               [(p.image_a, p.image_b, f"{p.similarity:.3f}", p.differs, f"{p.pixel_difference:.1f}")
                                for p in result.possible_copies[:10]]))
    for note in result.notes:
        out.print(f"[yellow]note:[/] {note}")
    if not result.applied and (result.set_aside or result.unreadable_set_aside):
        out.print("Nothing changed. Run again with --apply to set the duplicates aside.")
    out.print(f"report: {render.link(result.report_html)}\npairs:  {render.link(result.report_csv)}", soft_wrap=True)


def _counts(result) -> list[tuple[str, str]]:
    verb = "set aside" if result.applied else "would set aside"
    rows = [("clusters", f"{len(result.clusters):,}"),
            ("images in clusters", f"{sum(len(c.members) for c in result.clusters):,}"),
            ("identical-file pairs", f"{result.exact_pairs:,}"),
            ("candidate pairs (hash) / verified copies", f"{result.candidate_pairs:,} / {result.verified_pairs:,}"),
            ("near misses re-decoded", f"{result.redecoded_pairs:,}"),
            ("possible copies, labels differ (left alone)", f"{len(result.possible_copies):,}"),
            ("set aside on a narrow pass (check by eye)", f"{len(result.narrow_passes()):,}"),
            ("copies left in: restored by hand", f"{len(result.left_by_hand):,}"),
            ("validation images with a train duplicate", f"{result.cross_split_by_split.get('validation', 0):,}"),
            ("test images with a train duplicate", f"{result.cross_split_by_split.get('test', 0):,}"),
            ("clusters with conflicting labels", f"{result.label_conflicts:,}"),
            (verb, f"{len(result.set_aside):,}"),
            (f"{verb} as unreadable files (rule unreadable-file)", f"{len(result.unreadable_set_aside):,}")]
    if result.unreadable_restored:
        rows.append(("restored: readable again", f"{len(result.unreadable_restored):,}"))
    return rows


def _member(m) -> str:
    sim = "-" if m.similarity is None else f"{m.similarity:.3f}"
    differs = f", {m.labels_differ}" if m.labels_differ else ""
    return f"{m.image_id} ({m.split}, d={m.distance}, sim={sim}{differs})"
