"""A review test module's setting: a workspace holding the sample's validation split, a client
of the session's real Label Studio, and simulated annotators signed up on it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Iterable


def review_setting(label_studio: Path, folder: Path, annotators: Iterable[str], email_prefix: str = "") -> SimpleNamespace:
    """ws, root (the server folder), client, sims (key -> simulated annotator, emails
    `simulate.email(email_prefix + key)`), labels (the validation labels frame), store, tax.
    The caller closes ws."""
    from ifa.annotation import server, simulate
    from ifa.annotation.client import Client, Connection
    from ifa.curation.ingest import importing
    from ifa.curation.ledger.review import ReviewStore
    from ifa.curation.workspace import Workspace
    from ifa.sample import IMAGES_DIR, split_file

    state = server.read_state(label_studio)
    ws = Workspace.init(folder / "ws", command="test")
    importing.import_imat(ws, split_file("validation"), "validation", images_dir=IMAGES_DIR)
    client = Client(Connection(state.url, state.token, embedded_root=label_studio), retries=2, backoff=0.2)
    sims = {k: simulate.annotator(ws, client, simulate.email(email_prefix + k), secrets_dir=label_studio)
            for k in annotators}
    return SimpleNamespace(ws=ws, root=label_studio, client=client, sims=sims,
                           labels=ws.ledger.labels_frame(["validation"]), store=ReviewStore(ws.ledger), tax=ws.taxonomy)


def labels_before(labels, image_ids: Iterable[str]) -> dict[str, set[int]]:
    """image id -> its label ids in `labels` (a labels frame)."""
    return {i: set(labels.loc[labels["image_id"] == i, "label_id"].astype(int)) for i in image_ids}
