"""One connection to Label Studio: which server, and calls with retries and clear errors.

Every review command finds its server the same way: `--url`/`IFA_LS_URL` with
`--token`/`IFA_LS_TOKEN` (e.g. a team's Label Studio on PostgreSQL), else the workspace's
embedded server started by `ifa review serve`. Calls go through `Client.call`, which
retries a server that is restarting or briefly unreachable with exponential backoff and
then raises one IfaError that says what to do, never a traceback.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from ..errors import IfaError
from . import ENV_TOKEN, ENV_URL, server

# 0.5 + 1 + 2 + 4 s: rides out a server restart (~3 s) or a busy moment, then gives up.
RETRIES = int(os.environ.get("IFA_LS_RETRIES", "4"))
BACKOFF_S = 0.5
TIMEOUT_S = 600.0  # one import of 5,000 tasks on a busy machine can take a minute
PAGE_SIZE = 1000
LS_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"  # Label Studio's Datetime filter format (data_manager.managers)

T = TypeVar("T")


class NotFound(IfaError):
    """Label Studio answered 404 (a project or task ifa recorded is gone)."""


@dataclass(frozen=True)
class Connection:
    """Where the server is. `embedded_root` is the workspace's `labelstudio/` folder when
    the server is ifa's own (then ifa can also set passwords on its host)."""

    url: str
    token: str
    embedded_root: Path | None = None

    @property
    def embedded(self) -> bool:
        return self.embedded_root is not None


def connection_for(workspace_root: Path, url: str | None = None, token: str | None = None) -> Connection:
    """The server review commands use: `url`/`token` (or IFA_LS_URL/IFA_LS_TOKEN), else
    the embedded server recorded in the workspace. Raises IfaError when neither is set up."""
    url = url or os.environ.get(ENV_URL)
    token = token or os.environ.get(ENV_TOKEN)
    if url:
        if not token:
            raise IfaError(f"A Label Studio URL was given ({url}) but no API token: pass --token or set {ENV_TOKEN} "
                           "(Account & Settings > Access Token in Label Studio).")
        return Connection(url.rstrip("/"), token)
    root = server.server_dir(workspace_root)
    state = server.read_state(root)
    if state is None:
        raise IfaError("This workspace has no Label Studio yet. Start the embedded one with `ifa review serve`, "
                       f"or point ifa at yours with --url/{ENV_URL} and --token/{ENV_TOKEN}.")
    return Connection(state.url, state.token, root)


class Client:
    """Label Studio calls for one connection. `sdk` is the label-studio-sdk client; use
    `call` around its methods, and `get`/`post` for endpoints the SDK does not model well."""

    def __init__(self, conn: Connection, retries: int = RETRIES, backoff: float = BACKOFF_S,
                 timeout: float = TIMEOUT_S):
        self.conn = conn
        self.retries = retries
        self.backoff = backoff
        # max_retries=0: retrying is ours, so a POST is never resent after it may have landed.
        self.sdk = LabelStudio(base_url=conn.url, api_key=conn.token, timeout=timeout, max_retries=0)

    @property
    def url(self) -> str:
        return self.conn.url

    # ---- calls -----------------------------------------------------------------------------
    def call(self, what: str, fn: Callable[..., T], *args, idempotent: bool = True, **kwargs) -> T:
        """Run `fn(*args, **kwargs)`, retrying with backoff while the server is unreachable
        or answers 5xx. A non-idempotent call (one that creates something) is retried only
        when the connection was refused, i.e. the request cannot have arrived.
        `what` names the step for the error message ("importing tasks into project 3")."""
        attempt = 0
        while True:
            try:
                return fn(*args, **kwargs)
            except httpx.ConnectError as exc:
                failure: Exception = exc
                # Refused by ifa's own server whose process is gone: waiting will not help.
                retryable = not (self.conn.embedded and server.running(self.conn.embedded_root, check_health=False) is None)
            except (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                failure, retryable = exc, idempotent
            except ApiError as exc:
                status = exc.status_code or 0
                if status in (401, 403):
                    raise IfaError(f"Label Studio at {self.url} refused ifa's token (HTTP {status}) while {what}. "
                                   f"Check --token/{ENV_TOKEN}; the admin's token is under Account & Settings.") from None
                if status == 404:
                    raise NotFound(f"Label Studio at {self.url} has no such object (HTTP 404) while {what}.") from None
                if status < 500:
                    raise IfaError(f"Label Studio at {self.url} rejected the request while {what} "
                                   f"(HTTP {status}): {_short(exc.body)}") from None
                failure, retryable = exc, idempotent
            if not retryable or attempt >= self.retries:
                raise self._down(what, failure, attempt) from None
            time.sleep(self.backoff * 2 ** attempt)
            attempt += 1

    def _down(self, what: str, exc: Exception, attempt: int) -> IfaError:
        reason = f"HTTP {exc.status_code}" if isinstance(exc, ApiError) else type(exc).__name__
        tries = f"after {attempt + 1} tries " if attempt else ""
        if self.conn.embedded and server.running(self.conn.embedded_root, check_health=False) is None:
            hint = "The workspace's embedded Label Studio is not running: start it with `ifa review serve`, then rerun."
        else:
            hint = f"Check that Label Studio at {self.url} is up, then rerun."
        return IfaError(f"Label Studio at {self.url} did not answer ({reason}) {tries}while {what}. {hint} "
                        "Everything synced so far is kept in the ledger; a rerun continues from there.")

    def request(self, method: str, path: str, what: str, *, params: dict | None = None, json: Any = None,
                idempotent: bool | None = None) -> Any:
        """A raw JSON call through the SDK's authenticated HTTP client (so JWT tokens work
        too). Returns the parsed JSON body."""
        def send():
            r = self.sdk._client_wrapper.httpx_client.request(path, method=method, params=params, json=json)
            if r.status_code >= 400:
                raise ApiError(status_code=r.status_code, headers=dict(r.headers), body=r.text)
            return r.json() if r.content else None
        return self.call(what, send, idempotent=method == "GET" if idempotent is None else idempotent)

    def get(self, path: str, what: str, **params) -> Any:
        return self.request("GET", path, what, params=params)

    # ---- task listing --------------------------------------------------------------------------
    def task_pages(self, project_id: int, *, after: int = 0, annotations: bool = False,
                   only: str | None = None, updated_after: str | None = None, page_size: int = PAGE_SIZE):
        """Yield the project's tasks page by page, ordered by id, starting after task id
        `after`. Each task is a dict with id, data and (when `annotations`) its annotations
        with result, completed_by, was_cancelled, lead_time, created_at, updated_at.

        only: "annotated" (tasks with a submitted annotation) or "skipped" (with a
        cancelled one); None lists every task.
        updated_after: only tasks Label Studio updated after this time (its format,
        `%Y-%m-%dT%H:%M:%S.%fZ`). Label Studio 1.23 touches a task's updated_at whenever
        an annotation of it is saved (Annotation.update_task), so this lists exactly the
        tasks with new or edited answers: what an incremental sync needs.

        Pages are keyed by the last id seen, not by page number, so annotations that
        arrive or disappear while we list never shift a task past us."""
        params = {"project": project_id, "resolve_uri": "false", "page_size": page_size, "page": 1}
        if annotations:
            # The default listing of Label Studio 1.23 either returns annotation stubs
            # (include=) or runs two queries per task for display fields (fields=all);
            # expand + omit gives full annotations in ~35 queries a page: 0.6 s per 1,000 tasks.
            params.update({"fields": "all", "include": "id,data,annotations,updated_at", "expand": "annotations",
                           "omit": "annotations.created_username,annotations.created_ago"})
        else:
            params["include"] = "id,data"
        while True:
            items = [{"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": after}]
            if only is not None:
                column = {"annotated": "total_annotations", "skipped": "cancelled_annotations"}[only]
                items.append({"filter": f"filter:tasks:{column}", "operator": "greater", "type": "Number", "value": 0})
            if updated_after is not None:
                items.append({"filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime",
                              "value": updated_after})
            query = {"filters": {"conjunction": "and", "items": items}, "ordering": ["tasks:id"]}
            page = self.get("api/tasks", f"listing tasks of project {project_id}", **params, query=json.dumps(query))
            tasks = page.get("tasks", []) if isinstance(page, dict) else page
            if not tasks:
                return
            yield tasks
            after = tasks[-1]["id"]
            if len(tasks) < page_size:
                return

    def server_time(self) -> str:
        """The server's clock now (its HTTP Date header), in Label Studio's filter format."""
        from email.utils import parsedate_to_datetime

        def send():
            r = self.sdk._client_wrapper.httpx_client.request("api/version", method="GET")
            if r.status_code >= 500:
                raise ApiError(status_code=r.status_code, headers=dict(r.headers), body=r.text)
            return r.headers.get("date")
        date = self.call("reading the server's clock", send)
        if not date:
            raise IfaError(f"Label Studio at {self.url} sent no Date header; cannot sync incrementally.")
        return parsedate_to_datetime(date).strftime(LS_TIME)

    def annotation_counts(self, project_ids: list[int]) -> dict[int, int]:
        """Annotations (submitted + skipped) per project, in one request: the project list
        annotated with only these two counts (Label Studio's `include`), not the dozen the
        project page computes."""
        out: dict[int, int] = {}
        for start in range(0, len(project_ids), 100):
            ids = project_ids[start:start + 100]
            data = self.get("api/projects/", "counting annotations", ids=",".join(map(str, ids)), page_size=100,
                            include="id,total_annotations_number,skipped_annotations_number")
            for p in data.get("results", []) if isinstance(data, dict) else data:
                out[int(p["id"])] = int(p.get("total_annotations_number") or 0) + int(p.get("skipped_annotations_number") or 0)
        return out

    # ---- common look-ups ---------------------------------------------------------------------
    def whoami(self) -> dict:
        return self.get("api/current-user/whoami", "checking the token")

    def users(self) -> list[dict]:
        """Every user of the organisation: id, email, first_name, last_name, ..."""
        data = self.get("api/users/", "listing users")
        return data if isinstance(data, list) else data.get("results", [])

    def user_by_email(self, email: str) -> dict | None:
        email = email.strip().lower()
        return next((u for u in self.users() if (u.get("email") or "").lower() == email), None)


def _short(body: Any, limit: int = 300) -> str:
    text = body if isinstance(body, str) else repr(body)
    return text if len(text) <= limit else text[:limit] + "..."
