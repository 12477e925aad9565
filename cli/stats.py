"""`ifa stats`: the paper's Table 1, labels per image and the long tail."""

from __future__ import annotations

from typing import Annotated

import typer

from . import render
from .options import DEFAULT_WS, JsonOpt, SplitOpt, WorkspaceOpt, open_workspace, single_command


def stats(
    split: SplitOpt = None,
    plots: Annotated[bool, typer.Option("--plots", help="Write Fig. 2 and Fig. 3 style PNGs to reports/.")] = False,
    workspace: WorkspaceOpt = DEFAULT_WS,
    json_out: JsonOpt = False,
) -> None:
    """Dataset statistics in the paper's terms: Table 1, labels per image, the long tail.

    Per split: classes, cardinality, #labels, #images and % of images per group (Table 1);
    labels per image (min/mean/max and the histogram of Fig. 2); images per label (the long
    tail of Fig. 3: labels under 500 and over 10K images). Counts only active images and
    labels.

    Example: ifa stats --split train --plots
    """
    from ..curation import stats as stats_lib
    with open_workspace(workspace, "stats", read_only=True) as ws:
        result = stats_lib.run(ws, [split] if split else None, plots)
        names = ws.taxonomy
    if json_out:
        d = result.to_dict()
        for s in d["splits"].values():
            s["groups"] = {g: {k: v for k, v in gs.items() if k != "percent_images"} | {"percent": gs["percent_images"]}
                           for g, gs in s["groups"].items()}
        render.emit_json(d)
        return
    if not result.splits:
        render.out.print("The workspace has no active images yet. Import some with `ifa import`.")
    for split_name, s in result.splits.items():
        rows = [(g, gs.classes, gs.cardinality, f"{gs.labels:,}", f"{gs.images:,}", f"{gs.percent_images:.1f}")
                for g, gs in s.groups.items()]
        render.out.print(render.table(f"{split_name}: {s.images:,} images, {s.labels:,} labels",
                                      ["group", "classes", "per image", "#labels", "#images", "% images"], rows))
        lpi = s.labels_per_image
        render.out.print(f"  labels per image: min {lpi['min']}, mean {lpi['mean']:.2f}, max {lpi['max']}; "
                         f"histogram {dict(s.histogram)}")
        top = list(s.images_per_label.items())
        head = ", ".join(f"{names.names([k])[0]} {v:,}" for k, v in top[:5])
        render.out.print(f"  images per label: {len(top)} labels used; most frequent: {head}; "
                         f"{s.labels_under_500} labels under 500 images, {s.labels_over_10k} over 10K")
        if s.unreadable_files:
            render.out.print(f"  [yellow]{s.unreadable_files:,} active images have a file known to be unreadable[/] "
                             "(empty, not an image, truncated...; `ifa show ID` says which and why)")
    for p in result.plots:
        render.out.print(f"plot: {render.link(p)}", soft_wrap=True)


app = single_command(stats)
