"""Shared fixtures: real workspaces with a real SQLite ledger and the bundled photos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ifa.curation.ingest import importing
from ifa.curation.workspace import Workspace
from ifa.sample import IMAGES_DIR, split_file
from ifa.tests.support.cli import Cli


@pytest.fixture
def ws(tmp_path: Path):
    """An empty workspace in a temp folder."""
    with Workspace.init(tmp_path / "ws", command="test") as w:
        yield w


@pytest.fixture
def sample_ws(ws: Workspace):
    """A workspace holding the bundled sample (310 real photos, three splits)."""
    for split in ("train", "validation", "test"):
        importing.import_imat(ws, split_file(split), split, images_dir=IMAGES_DIR)
    return ws


@pytest.fixture
def cli() -> Cli:
    """`ifa` commands run in this process: cli(*args) gives click's Result, cli.ok(*args)
    asserts success, cli.json(*args) asserts success and parses stdout (tests/support/cli.py)."""
    return Cli()


@pytest.fixture
def write_json(tmp_path: Path):
    """Write an object as JSON into the temp folder and return the path."""
    def write(name: str, data) -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        return path
    return write


# ---- ifa review (issue 5): one real Label Studio for the session ----------------------------
@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    """A real Label Studio on 127.0.0.1 (a free port, a temp data dir), started once per
    session through ifa's own `annotation.server.start` and stopped by PID at the end,
    also when tests fail (finally, atexit, and a parent-death signal if pytest is killed).
    Yields the server folder; `server.read_state(root)` gives URL, token and PID. The
    first start runs migrations: ~30 s on a quiet machine, over a minute on a busy one."""
    import atexit

    from ifa.annotation import server

    root = tmp_path_factory.mktemp("labelstudio")
    atexit.register(server.stop, root)
    server.start(root, port=server.free_port(), die_with_parent=True)
    try:
        yield root
    finally:
        server.stop(root)
