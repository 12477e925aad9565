"""Shared fixtures: real workspaces with a real SQLite ledger and the bundled photos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ifa.curation import importing
from ifa.curation.workspace import Workspace
from ifa.sample import IMAGES_DIR, split_file


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
def write_json(tmp_path: Path):
    """Write an object as JSON into the temp folder and return the path."""
    def write(name: str, data) -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        return path
    return write
