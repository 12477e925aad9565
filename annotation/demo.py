"""The review step of `ifa demo`: a whole round on the embedded Label Studio, answered by
SIMULATED annotators, with nothing to set up and every process stopped at the end.

    summary, data = review_step(ws)      # ws holds the sample; returns a one-line summary

Steps: start the embedded server (bound to 127.0.0.1, killed with this process if it
dies), sign up three simulated annotators, create a round over the validation split,
have annotator 1 (10% label swaps) and annotator 2 (25% swaps, 4% discards) answer
through the API as themselves, sync, send disagreements to the simulated tie-breaker
(who sides with annotator 1), sync, finalize with apply, stop the server.
"""

from __future__ import annotations

from ..curation.ledger.review import ReviewStore
from ..curation.workspace import Workspace
from ..progress import SILENT, Progress
from . import server, simulate, state
from .client import Client, connection_for
from .finalize import finalize
from .rounds import create_round
from .status import status
from .sync import sync_round
from .tiebreak import tiebreak

DEMO_ROUND = "demo-simulated"


def review_step(ws: Workspace, progress: Progress = SILENT, split: str = "validation",
                limit: int | None = None, keep_server: bool = False) -> tuple[str, dict]:
    """Run the simulated review round on `ws`; returns (one-line summary, data). The
    embedded server is started if it is not running and stopped again if this started it,
    unless keep_server (then data["server"] holds its URL and admin login).
    Raises IfaError when Label Studio cannot start or refuses a step."""
    root = server.server_dir(ws.root)
    info, started = server.start(root, progress=progress, die_with_parent=not keep_server)
    try:
        client = Client(connection_for(ws.root))
        a1, a2, third = (simulate.annotator(ws, client, simulate.email(n))
                         for n in ("annotator-1", "annotator-2", "tiebreaker"))
        created = create_round(ws, split=split, annotators=[a1.email, a2.email], tiebreaker=third.email,
                               name=DEMO_ROUND, limit=limit, client=client, progress=progress)
        tax = ws.taxonomy
        with progress.task("simulated annotators answering"):
            simulate.answer_role(ws, client.url, a1, "annotator1", simulate.noisy_chooser(tax, 1, swap=0.10), DEMO_ROUND)
            simulate.answer_role(ws, client.url, a2, "annotator2",
                                 simulate.noisy_chooser(tax, 2, swap=0.25, discard=0.04), DEMO_ROUND)
        sync_round(ws, DEMO_ROUND, client, progress=progress)
        sent = tiebreak(ws, DEMO_ROUND, client=client, progress=progress)
        first = state.load(ReviewStore(ws.ledger), DEMO_ROUND).answers["annotator1"]
        with progress.task("simulated tie-breaker answering"):
            simulate.answer_role(ws, client.url, third, "tiebreak", simulate.siding_chooser(first), DEMO_ROUND)
        sync_round(ws, DEMO_ROUND, client, progress=progress)
        st = status(ws, DEMO_ROUND)
        final = finalize(ws, DEMO_ROUND, apply=True)
    finally:
        if started and not keep_server:
            server.stop(root)
    kappa = st.agreement.get("category", {}).get("kappa")
    kappa = "n/a" if kappa is None or kappa != kappa else f"{kappa:.2f}"
    summary = (f"SIMULATED review round {DEMO_ROUND} in Label Studio {info.url}: {created.images} {split} images, "
               f"2 simulated annotators agreed on {st.outcomes['agreed']}, {sent.disagreements} went to the simulated "
               f"tie-breaker; category kappa {kappa}; finalize added {final.labels_added}, dropped "
               f"{final.labels_dropped} labels, set aside {final.images_set_aside} images")
    data = {"round": DEMO_ROUND, "simulated": True, "images": created.images, "outcomes": st.outcomes,
            "tiebreak": sent.disagreements, "agreement": st.agreement, "finalize": final.to_dict(),
            "server_stopped": started and not keep_server}
    if keep_server:
        data["server"] = {"url": info.url, "email": info.admin_email, "password": info.admin_password,
                          "stop": f"ifa review serve --stop --workspace {ws.root}"}
    return summary, data
