"""What Label Studio may serve: a round's image files and nothing else.

Label Studio's local-files view (`/data/local-files/?d=PATH`) gives any logged-in member
every file below a folder that some project's local-files storage names, and reads PATH
relative to its LOCAL_FILES_DOCUMENT_ROOT. A storage on a real folder therefore also
serves whatever lies beside the images; a storage on a common ancestor serves the home
folder and the workspace (the admin token in `labelstudio/server.json`).

So the embedded server never gets a storage on a real folder. Its document root is
`<workspace>/labelstudio/files`, fixed when it starts, and holds nothing but links, one
per image a round sent, at the image's real path (`files/home/ana/photos/1.jpg` links to
`/home/ana/photos/1.jpg`, so task URLs read as earlier rounds wrote them); each project's
storage names a top folder of that tree. A server started before a round exists needs no
restart: a round only adds links. An annotator reads the images rounds sent, and no file
beside them.

A server ifa does not run (`--url`) cannot get links on its host. There each storage is
an image's own real folder, one storage per folder (never their common ancestor), and a
folder that is `/`, the home folder, or holds the workspace is refused.

Either way an image counts by its real path (links resolved): a file that is a link into
another folder, or a file of the workspace's own (the ledger, the server's folder), is
refused, never served.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from ..errors import IfaError
from . import server
from .client import Connection

if TYPE_CHECKING:
    import pandas as pd

    from ..curation.workspace import Workspace

REFUSED = "image file not served (a link into another folder, or a file of the workspace)"


@dataclass
class TaskFiles:
    """The task data of a set of images and what Label Studio must serve for them.

    data: per image id, {"image": the URL Label Studio loads, "image_id": id};
    roots: the folders the projects' local-files storages must name;
    missing: image ids with neither a file nor a URL;
    refused: image ids whose file may not be served (see the module's docstring)."""

    data: dict[str, dict] = field(default_factory=dict)
    roots: set[str] = field(default_factory=set)
    missing: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def merged(self, other: TaskFiles) -> TaskFiles:
        """Both sets of images in one (the other's data wins for an image in both)."""
        return TaskFiles({**self.data, **other.data}, self.roots | other.roots, self.missing + other.missing,
                         self.refused + other.refused)


def document_root(server_root: Path) -> Path:
    """The embedded server's LOCAL_FILES_DOCUMENT_ROOT: the links folder under `server_root`."""
    return Path(server_root) / server.LINKS_DIR


def task_data(ws: Workspace, sources: pd.DataFrame, conn: Connection) -> TaskFiles:
    """Task data for `sources` (image_id, url, path rows of the ledger) on `conn`'s server.

    A local file is served through Label Studio's local-files storage (a raw http URL is
    blocked by the browser unless its server sends CORS headers); on the embedded server
    a link to it is made in the links tree first. An image with only a URL is passed as
    the URL. Raises IfaError when the embedded server runs with another document root
    (started by an older ifa: it must be restarted)."""
    out = TaskFiles()
    links = _links_root(conn) if conn.embedded else None
    made: set[Path] = set()
    judge = _Judge(ws.root, conn)
    for row in sources.itertuples():
        found = judge.real_file(row.path)
        if found is not None and (conn.embedded or not isinstance(row.url, str)):
            real, moved = found
            if judge.refused(real, moved):
                out.refused.append(row.image_id)
                continue
            where, root = _link(links, Path(real), made) if links is not None else (real.lstrip("/"),
                                                                                  os.path.dirname(real))
            out.data[row.image_id] = {"image": f"/data/local-files/?d={quote(where)}", "image_id": row.image_id}
            out.roots.add(root)
        elif isinstance(row.url, str) and row.url:
            out.data[row.image_id] = {"image": row.url, "image_id": row.image_id}
        else:
            out.missing.append(row.image_id)
    return out


class _Judge:
    """Finds each stored file's real path and decides, once per folder, whether files there
    may be served (see the module's docstring). Real paths of folders are cached: a whole
    dataset lives in a few folders."""

    def __init__(self, ws_root: Path, conn: Connection):
        self.ws_root = Path(ws_root)
        self.ws = os.path.realpath(ws_root)
        own = [os.path.join(self.ws, server.DIR_NAME)]  # the server's folder: its token, its database
        if conn.embedded_root is not None:
            own.append(os.path.realpath(conn.embedded_root))
        self.own = tuple(o.rstrip("/") + "/" for o in own)
        self.embedded = conn.embedded
        self.real_folder: dict[str, str] = {}
        self.verdict: dict[str, bool] = {}

    def real_file(self, stored: object) -> tuple[str, bool] | None:
        """(real path, whether it leaves the folder the ledger names) of a stored file
        (relative paths are the workspace's); None when there is none (on the embedded
        server: or it does not exist)."""
        if not isinstance(stored, str) or not stored:
            return None
        path = stored if os.path.isabs(stored) else os.path.abspath(self.ws_root / stored)
        folder, name = os.path.split(path)
        if folder not in self.real_folder:
            self.real_folder[folder] = os.path.realpath(folder)
        real = os.path.realpath(path) if os.path.islink(path) else os.path.join(self.real_folder[folder], name)
        if self.embedded and not os.path.exists(real):
            return None
        return real, os.path.dirname(real) != self.real_folder[folder]

    def refused(self, real: str, moved: bool) -> bool:
        """True when the file must not be served: a link into another folder (`moved`), a
        file of the workspace's own, or (on a server ifa does not run) a folder too wide
        to be a storage root."""
        folder = os.path.dirname(real)
        if folder not in self.verdict:
            self.verdict[folder] = (folder == self.ws or (folder + "/").startswith(self.own)
                                    or not self.embedded and not safe_root(Path(folder), Path(self.ws)))
        return moved or self.verdict[folder]


def safe_root(folder: Path, ws_root: Path) -> bool:
    """Whether a real folder may be a local-files storage root on a server ifa does not
    run: not `/`, not the home folder, and holding neither the workspace nor the home."""
    home = Path(os.path.realpath(Path.home()))
    return all(folder != p and folder not in p.parents for p in (home, ws_root)) and folder != folder.parent


def _links_root(conn: Connection) -> Path:
    """The embedded server's folder of links (made when missing). Raises IfaError when
    the running server serves another document root."""
    state = server.read_state(conn.embedded_root)
    root = document_root(conn.embedded_root)
    if state is not None and os.path.realpath(state.document_root or "/") != os.path.realpath(root):
        raise IfaError(f"The embedded Label Studio on {state.url} was started by an older ifa and may serve any "
                       "file of this machine to annotators; restart it (ifa review serve --stop, then ifa review "
                       "serve) and rerun.")
    root.mkdir(exist_ok=True)
    return Path(os.path.realpath(root))  # storage paths must read as below the server's own document root


def _link(links: Path, real: Path, made: set[Path]) -> tuple[str, str]:
    """A link at `links/<real path>` to the real file (kept when it is already right);
    returns (its path relative to the document root, the storage root: the link tree's
    top folder). Mirroring the real path keeps task URLs as earlier rounds wrote them."""
    rel = str(real).lstrip("/")
    link = links / rel
    _real_dirs(links, link.parent, made)
    try:
        right = os.readlink(link) == str(real)
    except FileNotFoundError:
        os.symlink(real, link)  # creating never follows anything at `link`
        right = True
    except OSError:
        right = False
    if not right:
        # A fresh link renamed over the old one: replacing never writes through a link.
        tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(real, tmp)
        os.replace(tmp, link)
    return rel, str(links / rel.split("/")[0])


def _real_dirs(links: Path, folder: Path, made: set[Path]) -> None:
    """Make `folder` below `links` out of real directories: a link in the way (a file that
    became a folder since) is removed, so nothing is ever made inside a real folder."""
    if folder in made or folder == links:
        return
    _real_dirs(links, folder.parent, made)
    if os.path.islink(folder):
        os.unlink(folder)
    if not folder.is_dir():
        folder.mkdir()
    made.add(folder)
