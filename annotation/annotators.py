"""Annotator accounts on Label Studio: add them, list them, log in as them.

Label Studio facts behind this module (1.23):
- A user created through the API (`POST /api/users/`) has no usable password and no
  active organisation; ifa sets the organisation so their annotations are accepted.
- The organisation's invite link (`/user/signup/?token=...`, from `GET /api/invite`)
  signs a user up WITH a password, over plain HTTP, on any server; that is how
  `--password-from-env` creates accounts people can log in with.
- An existing user's password can only be changed on the server host
  (`label-studio reset_password`); ifa does that for its embedded server.
- A user's own API token is only readable by that user (`GET /api/current-user/token`
  after logging in), which is how simulated annotators post as themselves.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Sequence

import httpx

from ..curation.ledger.review import ReviewStore
from ..curation.workspace import Workspace
from ..errors import IfaError
from . import server
from .client import Client

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass
class AnnotatorAdded:
    """What `add` did for one email. action: created | signed-up | existing | password-set.
    can_log_in: False when the account has no password yet."""

    email: str
    user_id: int
    action: str
    can_log_in: bool
    simulated: bool = False
    note: str = ""


@dataclass
class AnnotatorRow:
    email: str
    user_id: int
    name: str
    known: bool  # added through ifa (recorded in the ledger)
    simulated: bool
    rounds: list[str] = field(default_factory=list)  # "round:role" this person works in


@dataclass
class ServerAnnotators:
    """Annotators of one server: what `add` did (AnnotatorAdded rows) or who is there
    (`listing`: AnnotatorRow rows)."""

    server: str
    annotators: list[AnnotatorAdded] | list[AnnotatorRow] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def check_email(email: str) -> str:
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise IfaError(f"{email!r} is not an email address; annotators are Label Studio users, named by email.")
    return email


def check_people(client: Client, annotators: Sequence[str], tiebreakers: Sequence[str] = (),
                 per_image: int | None = None) -> dict[str, int]:
    """The checks every review command makes of the people it names (create, tiebreak,
    reassign): each a valid email and a Label Studio user on `client`'s server, and the
    tie-breakers not all annotators of every image (`per_image` of the `annotators`;
    None: all of them). Returns each person's Label Studio user id by email. Raises
    IfaError naming what is wrong and what to do."""
    emails = [check_email(e) for e in annotators]
    pool = list(dict.fromkeys(check_email(e) for e in tiebreakers))
    if pool and (per_image or len(emails)) == len(emails) and all(e in emails for e in pool):
        raise IfaError("The tie-breaker must be a third person, not one of the two annotators."
                       if len(emails) == 2 else
                       "Every image goes to every annotator, so the tie-breaker must be someone else.")
    users = {(u.get("email") or "").lower(): u for u in client.users()}
    people = list(dict.fromkeys([*emails, *pool]))
    unknown = [e for e in people if e not in users]
    if unknown:
        raise IfaError(f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a Label Studio user on "
                       f"{client.url}; add them first: ifa review annotators add {' '.join(unknown)}")
    return {e: int(users[e]["id"]) for e in people}


def add(ws: Workspace, client: Client, emails: list[str], password: str | None = None,
        simulated: bool = False) -> ServerAnnotators:
    """Make each email a Label Studio user of the organisation and record it in the ledger.

    With `password`, new users sign up through the invite link with it (they can log in);
    an existing user gets it on the embedded server (on another server, set it there with
    `label-studio reset_password`). Without, new users are created with no password.
    Raises IfaError for an invalid email or a server that refuses."""
    emails = [check_email(e) for e in emails]
    if not emails:
        raise IfaError("Name at least one annotator email.")
    store = ReviewStore(ws.ledger)
    result = ServerAnnotators(client.url)
    existing = {(u.get("email") or "").lower(): u for u in client.users()}
    for email in emails:
        user = existing.get(email)
        if user is None and password:
            sign_up(client, email, password).close()
            user = client.user_by_email(email)
            added = AnnotatorAdded(email, int(user["id"]), "signed-up", True, simulated)
        elif user is None:
            user = client.call(f"creating user {email}", client.sdk.users.create, email=email, username=email,
                               idempotent=False).dict()
            added = AnnotatorAdded(email, int(user["id"]), "created", False, simulated,
                                   "no password yet: rerun with --password-from-env VAR so they can log in")
        elif password and client.conn.embedded:
            server.reset_password(client.conn.embedded_root, email, password)
            added = AnnotatorAdded(email, int(user["id"]), "password-set", True, simulated)
        else:
            note = ("already a user; ifa cannot set a password on a server it does not run: use "
                    f"`label-studio reset_password --username {email}` on its host") if password else "already a user"
            added = AnnotatorAdded(email, int(user["id"]), "existing", True, simulated, note)
        ensure_member(client, user)
        store.add_annotator(client.url, email, added.user_id, simulated)
        result.annotators.append(added)
    return result


def ensure_member(client: Client, user: dict) -> None:
    """API-created users have no active organisation, so Label Studio would refuse their
    work; give them the admin's."""
    if user.get("active_organization"):
        return
    org = client.whoami().get("active_organization")
    client.call(f"setting the organisation of {user.get('email')}", client.sdk.users.update, id=int(user["id"]),
                active_organization=org)


def listing(ws: Workspace, client: Client) -> ServerAnnotators:
    """Every user on the server, marked when ifa added them (and simulated), with the
    rounds and roles they work in."""
    store = ReviewStore(ws.ledger)
    known = {r.email: bool(r.simulated) for r in store.annotators(client.url).itertuples()}
    roles: dict[str, list[str]] = {}
    for rnd in store.rounds().itertuples():
        for role, p in store.projects(rnd.round_id).items():
            roles.setdefault(p.email, []).append(f"{rnd.name}:{role}")
    out = ServerAnnotators(client.url)
    for u in sorted(client.users(), key=lambda u: (u.get("email") or "").lower()):
        email = (u.get("email") or "").lower()
        name = " ".join(x for x in (u.get("first_name"), u.get("last_name")) if x)
        out.annotators.append(AnnotatorRow(email, int(u["id"]), name, email in known, known.get(email, False),
                                           roles.get(email, [])))
    return out


# ---- logging in as a user (simulated annotators, password sign-up) ---------------------------
def sign_up(client: Client, email: str, password: str) -> httpx.Client:
    """Sign `email` up through the organisation's invite link; returns an HTTP session
    logged in as them. Raises IfaError when Label Studio refuses (password too weak,
    email taken)."""
    invite = client.get("api/invite", "reading the organisation's invite link")
    session = httpx.Client(base_url=client.url, follow_redirects=False, timeout=60)
    path = f"/user/signup/?token={invite['token']}"
    _form_post(session, path, {"email": email, "password": password}, f"signing up {email}")
    return session


def log_in(url: str, email: str, password: str) -> httpx.Client:
    """An HTTP session logged in as `email`. Raises IfaError on a wrong password."""
    session = httpx.Client(base_url=url, follow_redirects=False, timeout=60)
    _form_post(session, "/user/login/", {"email": email, "password": password}, f"logging in as {email}")
    return session


def own_token(session: httpx.Client) -> str:
    """The logged-in user's legacy API token (the organisation must allow legacy tokens,
    as the embedded server does)."""
    r = session.get("/api/current-user/token")
    if r.status_code != 200:
        raise IfaError(f"Label Studio did not give the user's API token (HTTP {r.status_code}); legacy tokens "
                       "must be enabled in the organisation (Organization > API Tokens Settings).")
    return r.json()["token"]


def _form_post(session: httpx.Client, path: str, fields: dict, what: str) -> None:
    """POST a Django form: fetch the page for its CSRF cookie, then submit; success is a redirect."""
    try:
        session.get(path)
        csrf = session.cookies.get("csrftoken")
        r = session.post(path, data={**fields, "csrfmiddlewaretoken": csrf or ""},
                         headers={"Referer": f"{session.base_url}{path}"})
    except httpx.HTTPError as exc:
        raise IfaError(f"Label Studio at {session.base_url} did not answer while {what} ({type(exc).__name__}).") from None
    if r.status_code != 302:
        errors = re.findall(r'class="[^"]*error[^"]*"[^>]*>\s*([^<]{3,200})<', r.text)
        detail = "; ".join(dict.fromkeys(e.strip() for e in errors)) or f"HTTP {r.status_code}"
        raise IfaError(f"Label Studio refused {what}: {detail}.")
