"""`ifa review ...`: a pool of annotators (two per image), gold questions and a pool of
tie-breakers in Label Studio."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperCommand

from ..annotation import ENV_TOKEN, ENV_URL
from ..curation.ledger import id_list
from ..errors import IfaError
from . import render
from .options import DEFAULT_WS, ApplyOpt, JsonOpt, WorkspaceOpt, command_group, open_workspace

app = command_group("Review rounds in Label Studio: a pool of annotators, two of whom label each image "
                    "independently; gold questions measure each of them; a tie-breaker settles disagreements.")
annotators_app = command_group("Label Studio accounts of the annotators.")
app.add_typer(annotators_app, name="annotators")

UrlOpt = Annotated[Optional[str], typer.Option("--url", envvar=ENV_URL, show_envvar=True,
                                               help="An existing Label Studio instead of the embedded one.")]
TokenOpt = Annotated[Optional[str], typer.Option("--token", envvar=ENV_TOKEN, show_envvar=True,
                                                 help="API token for --url (Account & Settings > Access Token).")]
RoundOpt = Annotated[Optional[str], typer.Option("--round", "-r", help="Round name (default: the latest round).")]
PriorOpt = Annotated[Optional[Path], typer.Option(
    "--prior", help="Model probabilities (Parquet: image_id + one column per label id) weighed as one more vote "
                    "(default: the latest flag-noise cross-fit, if any).")]


class ManyValuesCommand(TyperCommand):
    """Lets `--annotators A B C` and `--tiebreaker T U` take several values after one flag
    (click options take a fixed number): the values up to the next option are rewritten
    as repeated options before parsing. `--annotators A --annotators B` works too."""

    many = ("--annotators", "--tiebreaker")

    def parse_args(self, ctx, args):
        out, current = [], None
        for arg in args:
            if arg in self.many:
                current = arg
                continue
            if arg.startswith("-"):
                current = None
            elif current is not None:
                out += [current, arg]
                continue
            out.append(arg)
        return super().parse_args(ctx, out)


def _client(ws, url, token):
    from ..annotation.client import Client, connection_for
    return Client(connection_for(ws.root, url, token))


def _sim(email: str, simulated: bool) -> str:
    return f"{email} [yellow](simulated)[/]" if simulated else email


# ---- serve ------------------------------------------------------------------------------------
@app.command("serve")
def serve(
    port: Annotated[Optional[int], typer.Option(help="Port on 127.0.0.1 (default 8080, or a free one if busy).")] = None,
    stop: Annotated[bool, typer.Option("--stop", help="Stop the embedded server.")] = False,
    foreground: Annotated[bool, typer.Option("--foreground", help="Stay attached; Ctrl-C stops the server.")] = False,
    workspace: WorkspaceOpt = DEFAULT_WS,
    json_out: JsonOpt = False,
) -> None:
    """Start the embedded Label Studio in the background, or stop it.

    SQLite, data in <workspace>/labelstudio/, bound to 127.0.0.1, telemetry off.

    \b
    Example: ifa review serve            (then open the printed URL)
             ifa review serve --stop
    """
    from ..annotation import server
    with open_workspace(workspace, "review serve") as ws:
        root = server.server_dir(ws.root)
    if stop:
        state = server.stop(root)
        if json_out:
            render.emit_json({"stopped": state is not None, **(state.public() if state else {})})
        elif state is None:
            render.out.print("No embedded Label Studio is running for this workspace.")
        else:
            render.done(f"stopped Label Studio (PID {state.pid}) at {state.url}; its data stays in {state.data_dir}")
        return
    state, started = server.start(root, port=port, progress=render.RichProgress(quiet=json_out))
    if json_out:
        render.emit_json({"started": started, **state.public()})
    else:
        render.done(f"Label Studio {'started' if started else 'already running'} at [bold]{state.url}[/] (PID {state.pid})")
        render.out.print(f"  log in as {state.admin_email}; the password is in {root / server.STATE_FILE} (readable only by you)")
        render.out.print("  annotators log in with their own accounts: ifa review annotators add EMAIL --password-from-env VAR")
        render.out.print("  stop it with: ifa review serve --stop")
    if foreground:
        try:
            server.wait(state)
        except KeyboardInterrupt:
            server.stop(root)
            render.done("stopped Label Studio")


# ---- annotators -----------------------------------------------------------------------------
@annotators_app.command("add")
def annotators_add(
    emails: Annotated[list[str], typer.Argument(help="Annotator emails.")],
    password_from_env: Annotated[Optional[str], typer.Option(
        "--password-from-env", metavar="VAR", help="Give the new accounts the password in this environment variable.")] = None,
    url: UrlOpt = None, token: TokenOpt = None, workspace: WorkspaceOpt = DEFAULT_WS, json_out: JsonOpt = False,
) -> None:
    """Make each email a Label Studio user who can annotate.

    Example: ANNOTATOR_PW=... ifa review annotators add ana@example.com bo@example.com --password-from-env ANNOTATOR_PW
    """
    from ..annotation import annotators as annotators_lib
    password = None
    if password_from_env:
        password = os.environ.get(password_from_env)
        if not password:
            raise IfaError(f"The environment variable {password_from_env} is not set or empty.")
    with open_workspace(workspace, "review annotators add") as ws:
        result = annotators_lib.add(ws, _client(ws, url, token), emails, password)
    if json_out:
        render.emit_json(result.to_dict())
        return
    rows = [(a.email, a.user_id, a.action, "yes" if a.can_log_in else "no", a.note) for a in result.annotators]
    render.out.print(render.table(f"annotators on {result.server}", ["email", "user id", "action", "can log in", "note"], rows))


@annotators_app.command("list")
def annotators_list(url: UrlOpt = None, token: TokenOpt = None, workspace: WorkspaceOpt = DEFAULT_WS,
                    json_out: JsonOpt = False) -> None:
    """Every Label Studio user, with the rounds and roles they work in.

    Example: ifa review annotators list
    """
    from ..annotation import annotators as annotators_lib
    with open_workspace(workspace, "review annotators list") as ws:
        result = annotators_lib.listing(ws, _client(ws, url, token))
    if json_out:
        render.emit_json(result.to_dict())
        return
    rows = [(_sim(a.email, a.simulated), a.user_id, a.name, "yes" if a.known else "", ", ".join(a.rounds))
            for a in result.annotators]
    render.out.print(render.table(f"users on {result.server}", ["email", "user id", "name", "added by ifa", "rounds"], rows))


# ---- create ------------------------------------------------------------------------------------
@app.command("create", cls=ManyValuesCommand)
def create(
    split: Annotated[str, typer.Option("--split", "-s", help="validation or test (train for noise review).")],
    annotators: Annotated[list[str], typer.Option(
        "--annotators", help="The pool's emails: A B [C ...] (two or more; each gets a project of their own).")],
    tiebreaker: Annotated[list[str], typer.Option(
        "--tiebreaker", help="Tie-breaker(s): T [U ...]; each disagreement goes to one who did not label the image.")],
    per_image: Annotated[int, typer.Option("--per-image", help="Distinct annotators per image.")] = 2,
    gold: Annotated[Optional[Path], typer.Option(
        "--gold", help="Gold images (ids, one per line, or a CSV with image_id; any split) whose current labels are "
                       "trusted: mixed into every queue, scored, never changed.")] = None,
    gold_rate: Annotated[float, typer.Option(
        "--gold-rate", help="Gold questions per annotator: max(1, round(rate x their tasks)).")] = 0.05,
    images_from: Annotated[Optional[Path], typer.Option(
        "--images-from", help="Only these images: a text file of ids (one per line) or a CSV with image_id.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Round name (default <split>-<n>).")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N images.")] = None,
    mode: Annotated[str, typer.Option(
        "--mode", help="blind: label from an empty page; check: edit the image's current labels, pre-filled "
                       "(gold pre-filled with planted mistakes).")] = "blind",
    url: UrlOpt = None, token: TokenOpt = None, workspace: WorkspaceOpt = DEFAULT_WS, json_out: JsonOpt = False,
) -> None:
    """Create a review round: one project per annotator, each image to --per-image of them.

    Task counts differ by at most one and the pairs rotate so every two annotators share images; the assignment is fixed by the round's name, and a rerun after a crash finishes it without duplicating a task. With two annotators, both label every image.

    Example: ifa review create --split test --annotators ana@x.com bo@x.com cy@x.com dee@x.com --tiebreaker lead@x.com --gold trusted.txt
    """
    from ..annotation import rounds
    ids = rounds.read_image_ids(images_from) if images_from else None
    gold_ids = rounds.read_image_ids(gold) if gold else None
    with open_workspace(workspace, "review create") as ws:
        result = rounds.create_round(ws, split=split, annotators=list(annotators), tiebreaker=list(tiebreaker),
                                     image_ids=ids, name=name, limit=limit, per_image=per_image, gold_ids=gold_ids,
                                     gold_rate=gold_rate, mode=mode, client=_client(ws, url, token),
                                     progress=render.RichProgress(quiet=json_out))
    if json_out:
        render.emit_json(result.to_dict())
        return
    verb = "finished" if result.resumed else "created"
    render.done(f"round [bold]{result.round}[/] {verb}: {result.images:,} {result.split} images"
                + (f", {result.gold:,} gold images" if result.gold else "")
                + (" [yellow](simulated annotators)[/]" if result.simulated else ""))
    rows = [(p.role, p.email, p.project_id, f"{p.tasks:,}", f"{result.tasks_added.get(p.role, 0):,}", p.url)
            for p in result.projects]
    render.out.print(render.table("projects", ["role", "annotator", "project", "#tasks", "#added now", "url"], rows))
    for why, ids in result.skipped.items():
        render.out.print(f"  skipped {len(ids):,} images ({why}): {id_list(ids)}")


# ---- sync ----------------------------------------------------------------------------------------
@app.command("sync")
def sync(round_name: RoundOpt = None,
         full: Annotated[bool, typer.Option("--full", help="List every annotated task, not only those updated since "
                                                           "the last sync.")] = False,
         url: UrlOpt = None, token: TokenOpt = None, workspace: WorkspaceOpt = DEFAULT_WS,
         json_out: JsonOpt = False) -> None:
    """Pull the round's annotations into the ledger (a rerun changes nothing).

    After the first sync only tasks Label Studio updated since the last one are listed.

    Example: ifa review sync --round validation-1
    """
    from ..annotation import sync as sync_lib
    with open_workspace(workspace, "review sync") as ws:
        result = sync_lib.sync_round(ws, round_name, _client(ws, url, token), progress=render.RichProgress(quiet=json_out),
                                     full=full)
    if json_out:
        render.emit_json(result.to_dict())
        return
    render.done(f"round {result.round}: {result.fetched:,} annotations read; {result.new:,} new, {result.updated:,} "
                f"updated, {result.deleted:,} deleted in Label Studio ({result.seconds:.1f} s)")
    if result.invalid or result.wrong_annotator or result.skipped or result.ignored:
        render.out.print(f"  flagged: {result.invalid} invalid ({result.problems or {}}), {result.wrong_annotator} by "
                         f"someone other than the project's annotator (not counted), {result.skipped} skipped, "
                         f"{result.ignored} on tasks outside the round")


# ---- status ----------------------------------------------------------------------------------
@app.command("status")
def status(round_name: RoundOpt = None, prior: PriorOpt = None, workspace: WorkspaceOpt = DEFAULT_WS,
           json_out: JsonOpt = False) -> None:
    """Progress per annotator and agreement so far (from the last sync).

    Example: ifa review status --json
    """
    from ..annotation import status as status_lib
    with open_workspace(workspace, "review status") as ws:
        result = status_lib.status(ws, round_name, prior=prior)
    if json_out:
        render.emit_json(result.to_dict())
        return
    title = (f"round {result.round} ({result.split}, {result.images:,} images, {result.mode} mode)"
             + (" — SIMULATED annotators" if result.simulated else ""))
    rows = [(role, _sim(r["email"], r["simulated"]), f"{r['done']:,}/{r['tasks']:,}", r["skipped"], r["invalid"],
             r["wrong_annotator"], "" if r["lead_time_median_s"] is None else f"{r['lead_time_median_s']:.0f} s")
            for role, r in result.roles.items()]
    render.out.print(render.table(title, ["role", "annotator", "done", "skipped", "invalid", "not theirs", "median time"], rows))
    o = result.outcomes
    render.out.print(f"  agreed {o['agreed']:,} · both discarded {o['discarded']:,} · disagree {o['disagree']:,} · "
                     f"waiting {o['waiting']:,} · tie-break {result.tiebreak['done']}/{result.tiebreak['tasks']} · "
                     f"decided {result.decided:,}")
    if result.checked:
        render.out.print("  a short check: its tasks ask only " + ", ".join(f"{g} ({n:,} images)"
                                                                         for g, n in result.checked.items()))
    if result.agreement:
        rows = []
        for g, a in result.agreement.items():
            if a["cardinality"] == "single":
                rows.append((g, "single", f"{a['exact']:.3f}", _f(a["kappa"]), "", ""))
            else:
                rows.append((g, "multiple", f"{a['exact']:.3f}", "", f"{a['jaccard']:.3f}", _f(a["alpha_masi"])))
        render.out.print(render.table(f"agreement over {result.compared:,} images both answered",
                                      ["group", "per image", "exact", "Cohen's kappa", "Jaccard", "alpha (MASI)"], rows))
    if result.confused:
        rows = [(c["group"], c["label_a"], c["label_b"], c["images"]) for c in result.confused]
        render.out.print(render.table("most confused label pairs", ["group", "label", "label", "images"], rows))
    if result.annotators:
        rows = [(a["email"], a["role"], f"{a['done']:,}/{a['assigned']:,}", a["gold"]["answered"],
                 _f(a["gold"]["accuracy"]), _f(a["agreement"]["overall"]),
                 "" if a["median_seconds"] is None else f"{a['median_seconds']:.0f} s") for a in result.annotators]
        render.out.print(render.table(f"annotators ({result.gold:,} gold images)",
                                      ["annotator", "role", "done", "gold answered", "gold accuracy", "agreement",
                                       "median time"], rows))


def _f(x) -> str:
    return "n/a" if x is None or x != x else f"{x:.3f}"


# ---- tiebreak --------------------------------------------------------------------------------
@app.command("tiebreak", cls=ManyValuesCommand)
def tiebreak(
    round_name: RoundOpt = None,
    tiebreaker: Annotated[Optional[list[str]], typer.Option(
        "--tiebreaker", help="Tie-breaker(s): T [U ...] (default: the pool named at create).")] = None,
    when: Annotated[str, typer.Option(
        "--when", help="any: every image whose answers differ, all groups (the paper's rule); uncertain: only the "
                       "groups whose posterior, weighing each annotator's reliability, is below --min-confidence.")] = "any",
    min_confidence: Annotated[float, typer.Option(
        "--min-confidence", help="With --when uncertain: a group below this posterior goes to a tie-breaker.")] = 0.95,
    prior: PriorOpt = None,
    url: UrlOpt = None, token: TokenOpt = None, workspace: WorkspaceOpt = DEFAULT_WS, json_out: JsonOpt = False,
) -> None:
    """Send disagreements (or only the groups in doubt) to a tie-breaker, who sees both answers.

    Run `ifa review sync` first; rerun as more answers come in.

    Example: ifa review tiebreak --round validation-1
    """
    from ..annotation import tiebreak as tiebreak_lib
    with open_workspace(workspace, "review tiebreak") as ws:
        result = tiebreak_lib.tiebreak(ws, round_name, list(tiebreaker) if tiebreaker else None, _client(ws, url, token),
                                       progress=render.RichProgress(quiet=json_out), when=when,
                                       min_confidence=min_confidence, prior=prior)
    if json_out:
        render.emit_json(result.to_dict())
        return
    what = "disagreements" if result.when == "any" else f"images with a group in doubt ({result.groups:,} groups)"
    render.done(f"round {result.round}: {result.disagreements:,} {what}, {result.added:,} new tie-break tasks for "
                + ", ".join(f"{e} ({p['added']:,} at {p['url']})" for e, p in result.pool.items()))
    render.out.print(f"  agreed {result.agreed:,} · both discarded {result.discarded:,} · waiting for an annotator {result.waiting:,}")


# ---- finalize --------------------------------------------------------------------------------
@app.command("finalize")
def finalize(round_name: RoundOpt = None, apply: ApplyOpt = False, prior: PriorOpt = None,
             workspace: WorkspaceOpt = DEFAULT_WS, json_out: JsonOpt = False) -> None:
    """Make the round's decisions the images' labels; discards are set aside.

    Labels get source review:<round>. Without --apply, only reports.
    Undo with `ifa curate restore --rule review:<round>`.

    Example: ifa review finalize --round validation-1 --apply
    """
    from ..annotation import finalize as finalize_lib
    with open_workspace(workspace, "review finalize") as ws:
        result = finalize_lib.finalize(ws, round_name, apply=apply, prior=prior)
    if json_out:
        render.emit_json(result.to_dict())
        return
    verb = "applied" if result.applied else "would apply (rerun with --apply)"
    render.done(f"round {result.round}{' (SIMULATED annotators)' if result.simulated else ''}: {verb}: "
                f"{result.labels_added:,} labels added, {result.labels_dropped:,} dropped, "
                f"{result.images_set_aside:,} images set aside, on {result.changed_images:,} images")
    render.out.print(f"  decided {result.decided} · undecided {result.undecided or 0}")
    render.out.print(f"  report: {render.link(result.report)}", soft_wrap=True)


# ---- report ------------------------------------------------------------------------------------
@app.command("report")
def report(round_name: RoundOpt = None, workspace: WorkspaceOpt = DEFAULT_WS, json_out: JsonOpt = False) -> None:
    """Write an HTML report (and PNGs) on the round's annotators, from the last sync.

    Agreement matrix, gold accuracy and accuracy against final decisions, the most confused label pairs per group with thumbnails, throughput over time; annotators far below the pool are flagged.

    Example: ifa review report --round test-1
    """
    from ..annotation import report as report_lib
    with open_workspace(workspace, "review report") as ws:
        result = report_lib.report(ws, round_name)
    if json_out:
        render.emit_json(result.to_dict())
        return
    render.done(f"round {result.round}: report {result.html}")
    for email, reasons in result.flagged.items():
        render.out.print(f"  [red]flagged[/] {email}: {'; '.join(reasons)}")
    if not result.flagged:
        render.out.print("  no annotator stands out from the pool")


# ---- reassign ----------------------------------------------------------------------------------
@app.command("reassign")
def reassign(
    round_name: Annotated[str, typer.Option("--round", "-r", help="Round name.")],
    from_email: Annotated[str, typer.Option("--from", help="The annotator whose unanswered tasks move.")],
    to_email: Annotated[str, typer.Option("--to", help="Who takes them (a project is made if they are new).")],
    url: UrlOpt = None, token: TokenOpt = None, workspace: WorkspaceOpt = DEFAULT_WS, json_out: JsonOpt = False,
) -> None:
    """Move an annotator's unanswered tasks to someone else; their finished work stays.

    Images the new annotator already has in the round stay put (an image's annotators stay distinct). Syncs first; a rerun after a crash finishes the move.

    Example: ifa review reassign --round test-1 --from ana@x.com --to eve@x.com
    """
    from ..annotation import reassign as reassign_lib
    with open_workspace(workspace, "review reassign") as ws:
        result = reassign_lib.reassign(ws, round_name, from_email, to_email, _client(ws, url, token),
                                       progress=render.RichProgress(quiet=json_out))
    if json_out:
        render.emit_json(result.to_dict())
        return
    render.done(f"round {result.round}: {result.moved:,} tasks moved from {result.from_email} to {result.to_email} "
                f"({result.to_role}, project {result.to_project_id}); {result.deleted:,} removed from the old project")
    if result.kept:
        render.out.print(f"  {len(result.kept):,} stay with {result.from_email}: {result.to_email} already has those "
                         f"images ({id_list(result.kept)})")
