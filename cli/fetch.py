"""`ifa fetch`: download the images' URLs into the workspace, resumably."""

from __future__ import annotations

from typing import Annotated

import typer

from ..curation.ingest import fetch as fetch_lib
from ..curation.ingest.downloader import Backoff
from . import render
from .options import DEFAULT_WS, JsonOpt, SplitOpt, WorkspaceOpt, open_workspace, single_command

_DEFAULTS = fetch_lib.FetchSettings()


def fetch(
    split: SplitOpt = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Downloads at once.")] = _DEFAULTS.concurrency,
    timeout: Annotated[float, typer.Option(help="Seconds for one attempt: connect, headers and body.")] = _DEFAULTS.timeout,
    retries: Annotated[int, typer.Option(help="Retries after the first attempt, for retried reasons only.")] = _DEFAULTS.retries,
    max_bytes: Annotated[int, typer.Option("--max-bytes", help="Largest body accepted, in bytes.")] = _DEFAULTS.max_bytes,
    max_redirects: Annotated[int, typer.Option("--max-redirects", help="Redirects followed per attempt.")] = _DEFAULTS.max_redirects,
    backoff: Annotated[float, typer.Option(help="First retry waits about this many seconds; each next one doubles (with jitter).")] = _DEFAULTS.backoff.base,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Also try images whose last fetch failed.")] = False,
    workspace: WorkspaceOpt = DEFAULT_WS,
    json_out: JsonOpt = False,
) -> None:
    settings = fetch_lib.FetchSettings(
        concurrency=concurrency, timeout=timeout, retries=retries, max_bytes=max_bytes, max_redirects=max_redirects,
        backoff=Backoff(base=backoff, cap=_DEFAULTS.backoff.cap, max_retry_after=_DEFAULTS.backoff.max_retry_after),
    )
    with open_workspace(workspace, "fetch") as ws:
        result = fetch_lib.fetch_images(ws, split, settings, retry_failed, render.RichProgress(quiet=json_out))
    if json_out:
        render.emit_json(result.to_dict())
        return
    render.done(
        f"{result.fetched:,} fetched ({result.recovered:,} recovered from an interrupted run), "
        f"{result.skipped:,} already local, {sum(result.failed.values()):,} failed "
        f"in {result.seconds:,.1f} s ({result.images_per_s:,.1f} images/s)"
    )
    if result.failed:
        rows = [(reason, f"{n:,}", "yes" if fetch_lib.REASONS[reason][0] else "no", fetch_lib.REASONS[reason][1])
                for reason, n in sorted(result.failed.items(), key=lambda kv: -kv[1])]
        render.out.print(render.table("Failed images by reason", ["reason", "#", "retried", "meaning"], rows))
        if result.not_retried:
            render.out.print(f"{result.not_retried:,} of them failed in an earlier run; `ifa fetch --retry-failed` tries them again.")
    if result.without_url:
        render.out.print(f"{result.without_url:,} images have neither a local file nor a URL; nothing can fetch them.")
    render.out.print(f"report: {render.link(result.report)}", soft_wrap=True)


fetch.__doc__ = (
    "Download every image that has a URL and no local file into the workspace.\n\n"
    "Files go to the content-addressed store (images/ab/cd/<sha256>.<ext>); path, sha256, size and "
    "dimensions are recorded in the ledger.\n\n"
    "Resumable: a rerun (even after kill -9) skips what is fetched; images whose last try failed are "
    "tried again only with --retry-failed. Retries use exponential backoff with jitter and honour "
    "Retry-After; only http and https are followed, at most --max-redirects hops. Every body is checked: "
    "size cap, magic bytes, a full Pillow decode with the decompression-bomb guard.\n\n"
    "Failure reasons (retried within a run: *):\n\n"
    + "\n\n".join(f"  {name}{' *' if retry else ''}: {meaning}" for name, (retry, meaning) in fetch_lib.REASONS.items())
    + '\n\n--json prints {"fetched": N, "skipped": N, "failed": {"<reason>": N}, ...}; '
    "reports/fetch-<time>.csv lists every failed image with its reason, attempts and last error.\n\n"
    "Example: ifa fetch --split train --concurrency 64"
)


app = single_command(fetch)
