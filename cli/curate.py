"""`ifa curate ...`: the cleaning steps, and `restore` to undo any of them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..curation.noise.defaults import (DEFAULT_MIN_SCORE, DEFAULT_RUN, FLAG_NOISE_EPOCHS, FLAG_NOISE_FOLDS,
                                       FLAG_NOISE_IMAGE_SIZE, FLAG_NOISE_LR)
from ..curation.noise.model.backbones import DEFAULT_BACKBONE
from ..errors import IfaError
from . import model as model_cli
from . import render
from .options import DEFAULT_WS, ApplyOpt, JsonOpt, SplitsOpt, WorkspaceOpt, command_group, open_workspace

app = command_group("Clean the dataset: attribute checks, dedup, noisy labels; restore undoes.")


@app.command("restore")
def restore(
    rule: Annotated[Optional[str], typer.Option(help="Undo everything this rule (or round, or 'duplicate') did.")] = None,
    image: Annotated[Optional[str], typer.Option(help="Undo everything done to this image; dedup then leaves it in "
                                                     "(a person said it is no copy).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be restored.")] = False,
    workspace: WorkspaceOpt = DEFAULT_WS,
    json_out: JsonOpt = False,
) -> None:
    """Put set-aside images and dropped labels back (applies at once; --dry-run to look first).

    Example: ifa curate restore --rule single-group-conflict
    """
    from ..curation import restore as restore_lib
    with open_workspace(workspace, "curate restore") as ws:
        result = restore_lib.restore(ws.ledger, rule=rule, image_id=image, apply=not dry_run)
    if json_out:
        render.emit_json(result.to_dict())
        return
    verb = "restored" if result.applied else "would restore"
    extra = f"; {len(result.reviews):,} taken off the review queue" if result.reviews else ""
    extra += f"; dropped again {len(result.unadded):,} labels it had added" if result.unadded else ""
    render.done(f"{verb} {len(result.images):,} images and {len(result.labels):,} labels{extra}")

# check-attributes and check-images read rules files the same way (curation/rule_files.py).
RulesOpt = Annotated[Optional[Path], typer.Option(
    "--rules", help="A rules TOML that extends the defaults (same id: overrides; `extend = false`: replaces them).",
    exists=True, dir_okay=False)]


@app.command("check-attributes")
def check_attributes(
    split: SplitsOpt = None,
    rules: RulesOpt = None,
    apply: ApplyOpt = False,
    workspace: WorkspaceOpt = DEFAULT_WS,
    json_out: JsonOpt = False,
) -> None:
    """Check every image's labels against the attribute rules; set confused images aside.

    The default rules (taxonomy/rules.toml) catch two labels in a single-label group,
    unknown label ids, images without labels, sleeves or necklines on shoes and
    contradictory pairs (Strapless with Turtlenecks, Neutral with Male, ...); they also
    report rare labels and label pairs never seen in train.

    A rule's action sets the image aside, drops the labels that broke it, queues the
    image for review, or only reports. Without --apply nothing changes. Reports:
    reports/check-attributes-*.csv and .html. Undo: ifa curate restore --rule RULE_ID.

    Example: ifa curate check-attributes --split train --rules my-rules.toml --apply
    """
    from ..curation.attributes import check as attributes
    with open_workspace(workspace, "curate check-attributes") as ws:
        result = attributes.run(ws, rules, split, apply, render.RichProgress(quiet=json_out))
    if json_out:
        render.emit_json_text(result.json_chunks())  # streamed: 243k flagged images at 1M
        return
    rows = [(r.id, r.action, f"{r.images:,}", *(f"{r.by_split.get(s, 0):,}" for s in result.splits),
             f"{r.changes:,}" if r.action != "report" else "")
            for r in result.rules.values()]
    title = f"Attribute check: {result.images_checked:,} active images ({', '.join(result.splits)})"
    render.out.print(render.table(title, ["rule", "action", "images", *(f"#{s}" for s in result.splits), "# changes"], rows))
    for note in result.notes:
        render.err.print(f"[yellow]note:[/] {note}")
    c = result.changes
    what = (f"{c['set_aside']:,} images set aside, {c['drop_label']:,} labels dropped, "
            f"{c['review']:,} images queued for review")
    if result.applied:
        render.done(f"applied: {what}; undo with `ifa curate restore --rule RULE_ID`")
    else:
        render.done(f"dry run, would do: {what}; rerun with --apply to apply")
    # soft_wrap: a path cut across lines cannot be copied
    render.out.print(f"report: {render.link(result.report_csv)}\nreport: {render.link(result.report_html)}", soft_wrap=True)
    for split_name, path in result.review_files.items():
        render.out.print(f"pending review ({split_name}): {path}\n  next: ifa review create --split {split_name} "
                         f"--images-from {path}", soft_wrap=True)


@app.command("check-images")
def check_images(
    split: SplitsOpt = None,
    rules: RulesOpt = None,
    placeholders: Annotated[Optional[Path], typer.Option(
        "--placeholders", help="A folder of known placeholder pictures: any image showing one of them is a placeholder.",
        exists=True, file_okay=False)] = None,
    apply: ApplyOpt = False,
    workers: Annotated[Optional[int], typer.Option(help="Local processes for decoding (default: all CPUs).")] = None,
    scheduler: Annotated[Optional[str], typer.Option(help="Decode on a Dask cluster instead: tcp://HOST:PORT "
                                                          "(its workers must see the same image paths).")] = None,
    workspace: WorkspaceOpt = DEFAULT_WS,
    json_out: JsonOpt = False,
) -> None:
    """Find pictures that are not product photos: placeholders, blank, tiny, odd-shaped, grey, blurred.

    Each picture is decoded once and its statistics cached in the ledger (a rerun decodes
    only new or changed files). The default rules (curation/image_checks/rules.toml) set
    aside placeholders shared by many ids, blank frames, pictures under 32 px, banners over
    4:1 and heavy letterboxes, and report greyscale and blurred pictures. Without --apply
    nothing changes. Reports: reports/check-images-*.csv and .html, worst first.
    Undo: ifa curate restore --rule RULE_ID.

    Example: ifa curate check-images --split train --placeholders ./known-placeholders --apply
    """
    from ..curation.image_checks import check as image_checks
    with open_workspace(workspace, "curate check-images") as ws:
        result = image_checks.run(ws, split, rules, apply, placeholders, workers, scheduler,
                                  render.RichProgress(quiet=json_out))
    if json_out:
        render.emit_json(result.to_dict())
        return
    rows = [(rule_id, r.action, f"{r.images:,}", r.test) for rule_id, r in result.rules.items()]
    render.out.print(render.table(f"Image check: {result.images_checked:,} images", ["rule", "action", "images", "test"], rows))
    render.done(f"{result.measured:,} pictures measured, {result.cached:,} from cache, {result.unreadable:,} unreadable, "
                f"{result.without_file:,} without a local file")
    to_set_aside = sum(r.images for r in result.rules.values() if r.action == "set-aside")
    if result.applied:
        render.done(f"applied: {result.set_aside:,} images set aside; undo with `ifa curate restore --rule RULE_ID`")
    elif to_set_aside:
        render.done(f"dry run: set-aside rules found {to_set_aside:,} images; rerun with --apply to set them aside")
    render.out.print(f"report: {render.link(result.report_csv)}\nreport: {render.link(result.report_html)}", soft_wrap=True)


@app.command("dedup")
def dedup(
    split: SplitsOpt = None,
    method: Annotated[str, typer.Option(help="Perceptual hash: phash, dhash, whash or ahash.")] = "phash",
    threshold: Annotated[Optional[int], typer.Option(help="Largest Hamming distance (bits of 64) that makes a "
                                                          "candidate pair; default 8 for phash.")] = None,
    min_similarity: Annotated[Optional[float], typer.Option("--min-similarity", help="Verification score (0-1) a "
                                                            "candidate pair needs to count as a copy; default 0.96. "
                                                            "Higher: fewer, surer copies (0.972 leaves the narrow "
                                                            "passes in).")] = None,
    exact_only: Annotated[bool, typer.Option("--exact-only", help="Only identical files (sha256); decodes nothing.")] = False,
    keep: Annotated[Optional[str], typer.Option(help="Keep policy, rules in order "
                                                     "(default split,resolution,clean,bytes,id).")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Local processes for hashing and for re-decoding pairs "
                                                        "(default: all CPUs; 1: this process only).")] = None,
    scheduler: Annotated[Optional[str], typer.Option(help="Hash on a Dask cluster instead: tcp://HOST:PORT "
                                                          "(its workers must see the same image paths; pairs are "
                                                          "still re-decoded in local processes).")] = None,
    apply: ApplyOpt = False,
    workspace: WorkspaceOpt = DEFAULT_WS,
    json_out: JsonOpt = False,
) -> None:
    """Find exact and near-duplicate images within and across splits; keep one per cluster.

    Two stages: hashes within --threshold make candidate pairs; each is verified by
    comparing small colour thumbnails of the two pictures (borders trimmed), and only
    pairs scoring --min-similarity or more are copies. Pairs whose colour or
    single-label labels differ are set aside only when their pixels match; otherwise
    the report lists them as possible copies and nothing is done. An image is set aside only as a
    copy of its cluster's kept image itself, never through a chain of near neighbours.
    Copies that passed narrowly (under --min-similarity + 0.012: look-alike items of one
    shoot pass there) come first in the report, marked "check by eye"; one you restore
    by hand (ifa curate restore --image ID) is never set aside again.

    Keep policy: test beats validation beats train, then more pixels, then a picture
    with no text box painted over it (the clean photo, not its "SALE" copy), then the
    larger file, then the smaller id. With --apply the other copies are set aside (reason
    duplicate-of:<kept id>) and so are files that cannot be decoded (rule
    unreadable-file); `ifa curate restore --rule duplicate` (or --rule unreadable-file)
    brings them back. Hashes are cached in the ledger: a rerun reads only new or
    changed files.

    Example: ifa curate dedup --split train --split test --threshold 6 --apply
    """
    from ..curation.dedup import run as dedup_lib
    with open_workspace(workspace, "curate dedup") as ws:
        result = dedup_lib.run(ws, splits=split, method=method, threshold=threshold, min_similarity=min_similarity,
                               exact_only=exact_only,
                               apply=apply, workers=workers, scheduler=scheduler, keep=keep,
                               progress=render.RichProgress(quiet=json_out))
    if json_out:
        render.emit_json(result.to_dict())
        return
    from .dedup_report import show
    show(result)


_ProbsOpt = Annotated[Optional[Path], typer.Option(
    "--probs", help="Parquet of OUT-OF-SAMPLE probabilities (image_id + one column per label id), e.g. from your own "
    "cross-validation. Probabilities from a model that trained on these very labels have memorised their errors and "
    "hide them. Without --probs, ifa cross-fits its baseline model.")]
_FoldsOpt = Annotated[int, typer.Option("--folds", help="K for cross-fitting: each image is scored by a model trained on the other K-1 folds.")]
_TopOpt = Annotated[Optional[int], typer.Option("--top", help="Keep only the N most likely errors.")]
_MinScoreOpt = Annotated[Optional[float], typer.Option("--min-score", help=(
    f"The cut: flags whose estimated probability of being an error is at least this are acted on (--apply, --review) "
    f"and, without --top, listed (default {DEFAULT_MIN_SCORE}). --top lists the rest below the cut."))]
_ApplyOpt = Annotated[bool, typer.Option("--apply", help=(
    "Drop the wrong labels flagged at or above the cut; swaps and missing labels are never applied. Applying again "
    "changes nothing (undo: ifa curate restore --rule flag-noise)."))]
_ReviewOpt = Annotated[bool, typer.Option("--review", help=(
    "Send each image flagged at or above the cut to a short check (needs --annotators A B and --tiebreaker C): its "
    "current labels pre-filled and only the flagged groups asked; finalize changes nothing else "
    "(undo: ifa curate restore --rule review:<round>)."))]
_AnnotatorsOpt = Annotated[Optional[tuple[str, str]], typer.Option("--annotators", help="The two annotators of the review round: --annotators A B.")]
_TiebreakerOpt = Annotated[Optional[str], typer.Option("--tiebreaker", help="Who breaks ties in the review round.")]
_RunOpt = Annotated[str, typer.Option("--name", help="Folder under <workspace>/models/ for the cross-fitted fold models.")]
_NoiseRulesOpt = Annotated[Optional[Path], typer.Option(
    "--rules", help="Attribute rules TOML (as check-attributes): a suggested label that would break one is not shown.",
    exists=True, dir_okay=False)]


@app.command("flag-noise")
def flag_noise(
    probs: _ProbsOpt = None, folds: _FoldsOpt = FLAG_NOISE_FOLDS, top: _TopOpt = None, min_score: _MinScoreOpt = None,
    apply: _ApplyOpt = False, review: _ReviewOpt = False, annotators: _AnnotatorsOpt = None,
    tiebreaker: _TiebreakerOpt = None, run: _RunOpt = DEFAULT_RUN,
    backbone: model_cli.BackboneOpt = DEFAULT_BACKBONE, loss: model_cli.LossOpt = "bce",
    epochs: model_cli.EpochsOpt = FLAG_NOISE_EPOCHS, batch_size: model_cli.BatchOpt = 64, lr: model_cli.LrOpt = FLAG_NOISE_LR,
    image_size: model_cli.ImageSizeOpt = FLAG_NOISE_IMAGE_SIZE, input_size: model_cli.InputSizeOpt = None,
    seed: model_cli.SeedOpt = 0, weights: model_cli.WeightsOpt = None, features: model_cli.FeaturesOpt = None,
    device: model_cli.DeviceOpt = "cpu", rules: _NoiseRulesOpt = None,
    workspace: WorkspaceOpt = DEFAULT_WS, json_out: JsonOpt = False,
) -> None:
    """Rank the train split's (image, label) pairs most likely in error: given labels that
    are likely wrong and absent labels that are likely missing.

    Each flag's score is the estimated probability that the label is in error (per-class
    confident learning on calibrated probabilities). A suggestion in a single-label group
    beside the image's label there is a swap (old -> new), never a second label; one that
    would break an attribute rule (a neckline on shoes, Male with Female) is left out.
    Classes the model cannot tell apart are never flagged: the reports (CSV, HTML with
    thumbnails, in reports/) list them. --json: flags (image_id, label, kind
    wrong|missing|swap, score, replaces), min_score, expected_seconds, seconds (README).

    Time: without --probs or --features, a small CNN is cross-fitted on the photos
    (4 folds x 6 epochs at 32 px). It times its first batches and states the expected time
    from them, then updates it after each fold. A million photos want --features
    (embeddings, e.g. from `ifa model embed`, with a linear head) or a GPU (--device cuda).

    Example: ifa curate flag-noise --top 500
    Example: ifa model embed --onnx resnet50.onnx && ifa curate flag-noise --features embeddings --backbone mlp
    Example: ifa curate flag-noise --probs oos.parquet --review --annotators ann1 ann2 --tiebreaker lead
    """
    from ..curation.noise import flag as flag_lib
    config = model_cli.make_config(backbone, loss, epochs, batch_size, lr, image_size, input_size, seed, weights, features)
    if not review and (annotators or tiebreaker):
        raise IfaError("--annotators and --tiebreaker go with --review.")
    request = flag_lib.ReviewRequest(list(annotators or []), tiebreaker) if review else None
    if request:
        request.check(apply)
    from ..curation.attributes.rules import load_rules
    with open_workspace(workspace, "curate flag-noise") as ws:
        result = flag_lib.flag_noise(ws, probs=probs, config=config, folds=folds, run=run, device=device, top=top,
                                     min_score=min_score, apply=apply, rules=load_rules(rules, ws.taxonomy),
                                     progress=render.RichProgress(quiet=json_out))
        created = _review_round(ws, result, request, json_out) if request else None
    if json_out:
        render.emit_json(result.to_dict() | ({"review": created} if created else {}))
        return
    _flag_noise_report(result, created)


def _review_round(ws, result, request, quiet: bool) -> dict:
    """Send the images flagged at or above the cut to a short check of their flagged groups
    (only annotation/ talks to Label Studio); the round's description."""
    asked = result.groups_to_review()
    if not asked:
        raise IfaError("No image was flagged at or above the --min-score cut, so there is nothing to review; "
                       "lower --min-score.")
    from ..annotation import rounds
    created = rounds.create_round(ws, split="train", annotators=list(request.annotators), tiebreaker=request.tiebreaker,
                                  image_ids=list(asked), mode="check", asked=asked,
                                  progress=render.RichProgress(quiet=quiet))
    return created.to_dict()


def _flag_noise_report(result, created: dict | None) -> None:
    """flag-noise's summary: the top 20 flags (a swap as old -> new), what was left out, the reports."""
    head = result.flags.head(20)
    rows = [(i, f"{o} -> {l} ({g})" if k == "swap" else f"{l} ({g})", k, f"{s:.3f}", f"{p:.3f}")
            for i, l, g, k, s, p, o in zip(head["image_id"], head["label"], head["group"], head["kind"], head["score"],
                                           head["prob"], head["replaces_label"])]
    render.out.print(render.table(f"{len(result.acted_on):,} likely label errors (score >= {result.min_score:.2f}) "
                                  f"and {len(result.flags) - len(result.acted_on):,} below the --min-score cut on "
                                  f"{result.images_flagged:,} of {result.images_assessed:,} train images (top 20)",
                                  ["image", "label", "kind", "score", "model p"], rows))
    if result.suggestions_dropped:
        render.out.print(f"{sum(result.suggestions_dropped.values()):,} suggested labels left out: they would break "
                         + ", ".join(f"{r} ({n})" for r, n in result.suggestions_dropped.items()))
    if result.unjudged is not None and len(result.unjudged):
        names = ", ".join(result.unjudged["label"].head(8))
        more = f" and {len(result.unjudged) - 8} more" if len(result.unjudged) > 8 else ""
        render.out.print(f"[yellow]{len(result.unjudged)} classes the model could not judge (never flagged): "
                         f"{names}{more}; see {result.unjudged_csv}[/]")
    render.done(f"reports: {render.link(result.csv)}  {render.link(result.html)}")
    render.done(f"out-of-sample probabilities: {result.probs}")
    if result.expected_seconds is not None:
        render.done(f"took {result.seconds:,.0f} s (expected {result.expected_seconds:,.0f} s once the first batches were timed)")
    if result.applied:
        render.done(f"dropped {result.labels_dropped:,} wrong labels scoring >= {result.min_score:.2f} "
                    f"(undo: ifa curate restore --rule {result.rule})")
    elif created:
        render.done(f"review round {created['round']}: {created['images']:,} images sent as a short check ("
                    + ", ".join(f"{g} {n:,}" for g, n in created["asked"].items()) + ") to "
                    + ", ".join(f"{p['email']} ({p['url']})" for p in created["projects"]))
    else:
        render.out.print("Nothing changed: --apply drops the flagged wrong labels, --review sends the images to people.")
