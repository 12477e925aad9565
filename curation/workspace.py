"""The workspace folder: the ledger, content-addressed images, reports and exports."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

from ..errors import IfaError
from ..taxonomy import Taxonomy
from .ledger import Ledger

DEFAULT_WORKSPACE = Path("ifa-workspace")
ENV_VAR = "IFA_WORKSPACE"


def time_stamp(moment: datetime | None = None) -> str:
    """The UTC time as it appears in report and export names: 20261127-031500."""
    return (moment or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")


def refuse_links(base: Path, path: Path) -> Path:
    """`path` when neither it nor any folder between `base` and it is a symbolic link.

    ifa writes, renames and sweeps its own temp files under the paths it checks with this
    (reports/, exports/, images/.partial, caches, embeddings): a link among them would carry
    a write or a clean-up to wherever it points, outside the workspace. `base` itself may be
    a link (a workspace, or its images/, kept on another disk); a `path` outside `base` is
    not checked (an export folder the user named). Raises IfaError naming the first link."""
    base, path = Path(os.path.abspath(base)), Path(os.path.abspath(path))
    try:
        parts = path.relative_to(base).parts
    except ValueError:
        return path
    current = base
    for part in parts:
        current = current / part
        if current.is_symlink():
            raise IfaError(f"{current} is a link (to {os.readlink(current)}); ifa does not write through links inside a "
                           "workspace, so that nothing outside it is written or deleted. Replace the link with a real "
                           "folder or file (or remove it) and run this again.")
    return path


def default_root() -> Path:
    return Path(os.environ.get(ENV_VAR) or DEFAULT_WORKSPACE)


@dataclass
class Workspace:
    """An opened workspace. Use `Workspace.init` to create one and `Workspace.open` to
    use an existing one; close it (or use it as a context manager) when done."""

    root: Path
    command: str = "library"
    read_only: bool = False  # the command only reads: a read-only workspace is fine
    _ledger: Ledger | None = field(default=None, repr=False)

    # ---- layout -------------------------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return self.root / "ifa.db"

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    @property
    def taxonomy_dir(self) -> Path:
        return self.root / "taxonomy"

    # ---- lifecycle --------------------------------------------------------------------------
    @classmethod
    def init(cls, root: Path | None = None, *, label_map: Path | None = None, groups: Path | None = None,
             command: str = "init") -> "Workspace":
        """Create (or reopen) a workspace at `root`. A custom taxonomy (label map CSV plus
        cardinality CSV) is copied in and used by every later command.

        Raises IfaError when only one of label_map/groups is given, when the taxonomy does
        not load, or when the workspace already has a different taxonomy."""
        root = Path(root or default_root())
        if root.exists() and not root.is_dir():
            raise IfaError(f"{root} is a file, not a folder; give --workspace a folder to create or reuse.")
        if (label_map is None) != (groups is None):
            raise IfaError("A custom taxonomy needs both --taxonomy (the label map CSV) and --groups (the cardinality CSV).")
        ws = cls(root, command)
        if label_map is not None:
            Taxonomy.load(label_map, groups)  # validate before touching the workspace
            if ws.db_path.exists() and not ws.taxonomy_dir.exists():
                raise IfaError(f"{root} already uses the default taxonomy; start a new workspace for another one.")
        for d in (ws.root, ws.images_dir, ws.reports_dir, ws.exports_dir):
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise IfaError(f"Cannot create the workspace folder {d}: {exc.strerror}.") from None
        if label_map is not None:
            ws.taxonomy_dir.mkdir(exist_ok=True)
            shutil.copyfile(label_map, ws.taxonomy_dir / "labels.csv")
            shutil.copyfile(groups, ws.taxonomy_dir / "groups.csv")
        ws.ledger  # creates and migrates ifa.db
        return ws

    @classmethod
    def open(cls, root: Path | None = None, command: str = "library", read_only: bool = False) -> "Workspace":
        """Open an existing workspace. `read_only`: the command only reads, so a workspace
        that cannot be written is opened read-only (see Ledger). Raises IfaError when there
        is none at `root`."""
        root = Path(root or default_root())
        ws = cls(root, command, read_only)
        if root.exists() and not root.is_dir():
            raise IfaError(f"{root} is a file, not an ifa workspace folder; give --workspace the folder `ifa init` made.")
        if not ws.db_path.exists():
            raise IfaError(f"There is no ifa workspace at {root}. Create one with `ifa init --workspace {root}`.")
        return ws

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            self._ledger = Ledger(self.db_path, command=self.command, read_only=self.read_only)
        return self._ledger

    @cached_property
    def taxonomy(self) -> Taxonomy:
        if (self.taxonomy_dir / "labels.csv").exists():
            return Taxonomy.load(self.taxonomy_dir / "labels.csv", self.taxonomy_dir / "groups.csv")
        return Taxonomy.default()

    # ---- outputs ------------------------------------------------------------------------------
    def no_links(self, path: Path) -> Path:
        """`path`, checked for writing: IfaError when it or a folder between the workspace
        root and it is a link (see `refuse_links`)."""
        return refuse_links(self.root, path)

    def report_path(self, name: str, ext: str) -> Path:
        """A fresh `reports/<name>-<UTC time>.<ext>`; never overwrites an earlier report.
        Raises IfaError when reports/ is a link or cannot be written."""
        self.no_links(self.reports_dir)
        try:
            self.reports_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise IfaError(f"Cannot write reports to {self.reports_dir}: {exc.strerror}.") from None
        if not os.access(self.reports_dir, os.W_OK):
            raise IfaError(f"Cannot write reports to {self.reports_dir}: it is not writable (a read-only file system, "
                           "or no permission). Run this where the workspace is writable.")
        stamp = time_stamp()
        path = self.reports_dir / f"{name}-{stamp}.{ext}"
        n = 1
        while path.exists():
            n += 1
            path = self.reports_dir / f"{name}-{stamp}-{n}.{ext}"
        return path
