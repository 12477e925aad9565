"""The routes of `ifa browse`: pages, the JSON API and files, as plain functions of a request.

The HTTP server (server.py) checks the host and the token, then calls `BrowseApp.handle`.
Reads and writes go through the ledger (ledger/browse.py, the same calls the CLI makes);
each request borrows a workspace from a small pool, so threads never share a connection.
"""

from __future__ import annotations

import json
import mimetypes
import queue
import re
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import parse_qs, unquote

from ..curation.ledger.browse import page, round_names
from ..curation.workspace import Workspace
from ..errors import IfaError
from . import actions, pages
from .facets import FacetIndex
from .filters import parse_filter, parse_page
from .thumbs import thumbnail

STATIC = Path(__file__).parent / "static"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes = b""


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(data, status: int = 200) -> Response:
    return Response(status, json.dumps(data, ensure_ascii=False, default=str).encode())


def error_response(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


class BrowseApp:
    """The web app over the workspace at `root`; `token` goes into the links of its pages."""

    def __init__(self, root: Path, token: str, pool_size: int = 4):
        self.root = Path(root)
        self.token = token
        self._closed = False
        self._pool: queue.Queue[Workspace] = queue.Queue()
        first = Workspace.open(self.root, command="browse")
        self.taxonomy = first.taxonomy
        self._pool.put(first)
        for _ in range(pool_size - 1):
            self._pool.put(Workspace.open(self.root, command="browse"))
        self._facet_ws = Workspace.open(self.root, command="browse")
        self.facets = FacetIndex(self._facet_ws.ledger, self.taxonomy)
        self.routes: list[tuple[str, re.Pattern, Callable[..., Response]]] = [
            ("GET", re.compile(r"/"), self.grid_page),
            ("GET", re.compile(r"/image/(?P<image_id>[^/]+)"), self.image_page),
            ("GET", re.compile(r"/static/(?P<name>[\w.-]+)"), self.static),
            ("GET", re.compile(r"/thumb/(?P<image_id>[^/]+)"), self.thumb),
            ("GET", re.compile(r"/file/(?P<image_id>[^/]+)"), self.file),
            ("GET", re.compile(r"/api/images"), self.api_images),
            ("GET", re.compile(r"/api/images/(?P<image_id>[^/]+)"), self.api_image),
            ("GET", re.compile(r"/api/facets"), self.api_facets),
            ("GET", re.compile(r"/api/labels"), self.api_labels),
            ("POST", re.compile(r"/api/images/(?P<image_id>[^/]+)/set-aside"), self.api_set_aside),
            ("POST", re.compile(r"/api/images/(?P<image_id>[^/]+)/restore"), self.api_restore),
            ("POST", re.compile(r"/api/images/(?P<image_id>[^/]+)/labels"), self.api_labels_change),
            ("POST", re.compile(r"/api/review"), self.api_review),
        ]

    def warm(self) -> threading.Thread:
        """Read the facet arrays in the background (seconds at a million images)."""
        thread = threading.Thread(target=self._read_facets, name="ifa-browse-facets", daemon=True)
        thread.start()
        return thread

    def _read_facets(self) -> None:
        try:
            self.facets.arrays()
        except Exception:  # noqa: BLE001 - stopped while reading: the next counts request reads again
            if not self._closed:
                raise

    def close(self) -> None:
        self._closed = True
        self._facet_ws.close()
        while not self._pool.empty():
            self._pool.get_nowait().close()

    @contextmanager
    def workspace(self) -> Iterator[Workspace]:
        ws = self._pool.get()
        try:
            yield ws
        finally:
            self._pool.put(ws)

    # ---- dispatch ---------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        """The response to one request (token and host already checked). A user error is a
        4xx JSON {"error": sentence}; an unknown path 404; a GET to an action 405."""
        allowed = set()
        for method, pattern, handler in self.routes:
            match = pattern.fullmatch(request.path)
            if not match:
                continue
            if method != request.method:
                allowed.add(method)
                continue
            try:
                return handler(request, **{k: unquote(v) for k, v in match.groupdict().items()})
            except IfaError as exc:  # the ledger's and show's unknown-image sentences say "has no image"
                return error_response(404 if "has no image" in str(exc) else 400, str(exc))
        if allowed:
            return Response(405, json.dumps({"error": f"Use {'/'.join(sorted(allowed))} for {request.path}."}).encode(),
                            headers={"Allow": ", ".join(sorted(allowed))})
        return error_response(404, f"Nothing at {request.path}.")

    # ---- pages ------------------------------------------------------------------------------
    def grid_page(self, request: Request) -> Response:
        with self.workspace() as ws:
            rounds = round_names(ws.ledger)
        return Response(200, pages.grid(self.token, self.taxonomy, rounds).encode(), "text/html; charset=utf-8")

    def image_page(self, request: Request, image_id: str) -> Response:
        with self.workspace() as ws:
            body = pages.image(ws, self.taxonomy, image_id, self.token)
        return Response(200, body.encode(), "text/html; charset=utf-8")

    def static(self, request: Request, name: str) -> Response:
        path = STATIC / name
        if not path.is_file():
            return error_response(404, f"No static file {name}.")
        return Response(200, path.read_bytes(), mimetypes.guess_type(name)[0] or "application/octet-stream",
                        {"Cache-Control": "no-cache"})

    def thumb(self, request: Request, image_id: str) -> Response:
        with self.workspace() as ws:
            row = ws.ledger.image(image_id)
        if row is None:
            return error_response(404, f"The workspace has no image {image_id!r}.")
        data = thumbnail(self.root, image_id, _local(self.root, row["path"]), row["sha256"])
        if data is None:
            return Response(200, pages.NO_PHOTO_SVG.encode(), "image/svg+xml")
        return Response(200, data, "image/jpeg", {"Cache-Control": "private, max-age=3600"})

    def file(self, request: Request, image_id: str) -> Response:
        with self.workspace() as ws:
            row = ws.ledger.image(image_id)
        path = _local(self.root, row["path"]) if row else None
        if not path or not Path(path).is_file():
            return Response(200, pages.NO_PHOTO_SVG.encode(), "image/svg+xml")
        return Response(200, Path(path).read_bytes(), mimetypes.guess_type(path)[0] or "application/octet-stream")

    # ---- the JSON API ---------------------------------------------------------------------------
    def api_images(self, request: Request) -> Response:
        f = parse_filter(request.query, self.taxonomy)
        after, limit = parse_page(request.query)
        driver = self.facets.driver(f)
        with self.workspace() as ws:
            rows = page(ws.ledger, f, after, limit, driver)
        names = self.taxonomy.labels
        images = [{"image_id": r.image_id, "split": r.split, "status": r.status,
                   "labels": [names[i].name if i in names else str(i) for i in r.label_ids]} for r in rows]
        return json_response({"images": images, "next": str(rows[-1].pk) if len(rows) == limit else None})

    def api_image(self, request: Request, image_id: str) -> Response:
        from ..curation.show import describe
        with self.workspace() as ws:
            return json_response(describe(ws.ledger, ws.taxonomy, image_id))

    def api_facets(self, request: Request) -> Response:
        f = parse_filter(request.query, self.taxonomy)
        counts = self.facets.counts(f)
        data = asdict(counts)
        names = self.taxonomy.labels
        data["label"] = [{"label_id": i, "label": names[i].name, "group": names[i].group, "images": n}
                         for i, n in sorted(counts.label.items(), key=lambda kv: -kv[1]) if i in names]
        return json_response(data)

    def api_labels(self, request: Request) -> Response:
        return json_response([{"label_id": lab.id, "label": lab.name, "group": lab.group}
                              for lab in self.taxonomy.labels.values()])

    def api_set_aside(self, request: Request, image_id: str) -> Response:
        body = _body(request)
        with self.workspace() as ws:
            return self._after_action(ws, actions.set_aside(ws.ledger, image_id, str(body.get("reason") or "")))

    def api_restore(self, request: Request, image_id: str) -> Response:
        body = _body(request)
        with self.workspace() as ws:
            return self._after_action(ws, actions.restore(ws.ledger, image_id, str(body.get("reason") or "")))

    def api_labels_change(self, request: Request, image_id: str) -> Response:
        body = _body(request)
        add, drop = body.get("add") or [], body.get("drop") or []
        if not isinstance(add, list) or not isinstance(drop, list) or not (add or drop):
            raise IfaError('Send {"add": [labels], "drop": [labels]} (names or ids) with at least one label.')
        with self.workspace() as ws:
            result = actions.change_labels(ws.ledger, ws.taxonomy, image_id, add, drop, str(body.get("reason") or ""))
            return self._after_action(ws, result)

    def api_review(self, request: Request) -> Response:
        body = _body(request)
        f = parse_filter({k: v if isinstance(v, list) else [str(v)] for k, v in (body.get("filter") or {}).items()},
                         self.taxonomy)
        annotators, tiebreaker = body.get("annotators") or [], body.get("tiebreaker") or []
        if isinstance(tiebreaker, str):
            tiebreaker = [tiebreaker]
        with self.workspace() as ws:
            return json_response(actions.send_to_review(ws, f, annotators, tiebreaker, body.get("name")))

    def _after_action(self, ws: Workspace, result: actions.ActionResult) -> Response:
        from ..curation.show import describe
        return json_response({"changed": result.changed, "image": describe(ws.ledger, ws.taxonomy, result.image_id)})


def _body(request: Request) -> dict:
    if not request.body:
        return {}
    try:
        data = json.loads(request.body)
    except ValueError:
        raise IfaError("The request body is not JSON; send a JSON object.") from None
    if not isinstance(data, dict):
        raise IfaError("The request body must be a JSON object.")
    return data


def _local(root: Path, path: str | None) -> str | None:
    """The image's file on disk: its path as recorded, relative paths under the workspace."""
    if not path:
        return None
    p = Path(path)
    return str(p if p.is_absolute() else root / p)


def parse_target(target: str) -> tuple[str, dict[str, list[str]]]:
    """(path, query) of a request target such as /api/images?split=test."""
    path, _, query = target.partition("?")
    return path, parse_qs(query, keep_blank_values=True)
