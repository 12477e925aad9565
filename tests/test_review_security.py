"""Annotators see only a round's images: tried as an annotator on a real Label Studio.

The round's photos lie in 18 folders (more than 16, where storage roots used to collapse
into their common ancestor) beside the session's server folder (its server.json holds the
admin token), a fake home with an SSH key, the workspace, and a file beside the images.
An annotator who logs in through Label Studio's login page, as a browser does, loads the
round's photos and is refused everything else; an image swapped for a link to the key is
left out of the round. A password set for an existing account never shows in any
process's command line.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from ifa.annotation import annotators, rounds, server
from ifa.annotation.client import Client, Connection
from ifa.annotation.files import REFUSED, safe_root, task_data
from ifa.curation.ingest import importing
from ifa.curation.ledger.review import ReviewStore
from ifa.curation.workspace import Workspace
from ifa.sample import IMAGES_DIR

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
PASSWORD = "Peek-a-boo-7731"
SECRETS = ("PRIVATE KEY of the fake home", "beside the image folders", "beside an image")


def _log_in(url: str, email: str, password: str) -> httpx.Client:
    """Label Studio's login page as a browser uses it: GET for the CSRF cookie, POST the form."""
    session = httpx.Client(base_url=url, follow_redirects=False, timeout=60)
    page = session.get("/user/login/")
    assert page.status_code == 200 and "csrfmiddlewaretoken" in page.text
    r = session.post("/user/login/", data={"email": email, "password": password,
                                           "csrfmiddlewaretoken": session.cookies["csrftoken"]},
                     headers={"Referer": f"{url}/user/login/"})
    assert r.status_code == 302, r.text[:300]
    assert session.get("/api/current-user/whoami").json()["email"] == email
    return session


@pytest.fixture(scope="module")
def exposed(label_studio):
    """A round over photos in 18 folders, all under the folder that also holds the server's
    folder, a fake home and the workspace (what the old common-ancestor root covered)."""
    root = label_studio
    base = root.parent
    state = server.read_state(root)
    home = base / "sec-home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text(SECRETS[0])
    photos = base / "sec-photos"
    folders = [photos / f"f{k:02d}" for k in range(17)] + [home / "photos"]
    lines = ["file,labels"]
    for folder, src in zip(folders, sorted(IMAGES_DIR.glob("*.jpg"))[:18]):
        folder.mkdir(parents=True)
        shutil.copy(src, folder / src.name)
        lines.append(f"{os.path.relpath(folder / src.name, base)},83|17")
    (photos / "beside.txt").write_text(SECRETS[1])
    (photos / "f00" / "notes.txt").write_text(SECRETS[2])
    (base / "sec-photos.csv").write_text("\n".join(lines) + "\n")
    ws = Workspace.init(base / "sec-ws", command="test")
    importing.import_csv(ws, base / "sec-photos.csv", "validation", image_col="file", labels_col="labels")
    # After the import, one photo is swapped for a link to the SSH key (the real path leaves its folder).
    swapped = folders[5] / next(folders[5].iterdir()).name
    swapped.unlink()
    swapped.symlink_to(home / ".ssh" / "id_rsa")
    client = Client(Connection(state.url, state.token, embedded_root=root), retries=2, backoff=0.2)
    emails = ["peek1@example.com", "peek2@example.com"]
    annotators.add(ws, client, emails, password=PASSWORD)
    created = rounds.create_round(ws, split="validation", annotators=emails, name="sec", client=client)
    yield SimpleNamespace(root=root, base=base, home=home, photos=photos, folders=folders, ws=ws, client=client,
                          state=state, created=created, swapped=swapped, emails=emails)
    ws.close()


def _secret_paths(x) -> list[Path]:
    return [x.home / ".ssh" / "id_rsa", x.photos / "beside.txt", x.photos / "f00" / "notes.txt",
            x.root / server.STATE_FILE, x.ws.root / "ifa.db", x.swapped]


def test_an_annotator_loads_the_round_images_and_nothing_else(exposed):
    x = exposed
    swapped_id = x.swapped.stem
    assert x.created.images == 17 and x.created.skipped == {REFUSED: [swapped_id]}
    session = _log_in(x.client.url, x.emails[0], PASSWORD)
    project = next(p for p in x.created.projects if p.email == x.emails[0])
    tasks = [t for page in x.client.task_pages(project.project_id) for t in page]
    assert len(tasks) == 17 and swapped_id not in {t["data"]["image_id"] for t in tasks}
    real = {p.stem: p.read_bytes() for f in x.folders for p in f.iterdir() if p.suffix == ".jpg" and not p.is_symlink()}
    for t in tasks:  # every image loads, byte for byte, for the annotator
        r = session.get(t["data"]["image"])
        assert r.status_code == 200 and r.content == real[t["data"]["image_id"]], t["data"]
    docroot = x.root / server.LINKS_DIR
    tries = []
    for target in _secret_paths(x):
        rel = os.path.relpath(target, docroot)
        tries += [str(target).lstrip("/"), rel, f"tmp/{rel}", f"tmp/../{rel}", str(target)]
    token = x.state.token
    for d in tries:
        r = session.get("/data/local-files/", params={"d": d})
        assert r.status_code != 200, d
        assert not any(s in r.text for s in SECRETS) and token not in r.text, d
    # Every storage names a folder of the links tree below the document root, never a real
    # folder; the tree holds one link per image sent, at its real path, and no other file.
    top = Path(os.path.realpath(x.base)).parts[1]
    for p in x.created.projects:
        storages = x.client.get("api/storages/localfiles", "listing storages", project=p.project_id)
        assert [s["path"] for s in storages] == [str(docroot / top)]
    mirror = docroot / os.path.realpath(x.base).lstrip("/")
    links = [p for p in mirror.rglob("*") if not p.is_dir() or p.is_symlink()]
    assert all(os.readlink(p) == "/" + str(p.relative_to(docroot)) for p in links)
    # Other tests of the session send images from folders under the same base: count this round's.
    ours = [os.path.realpath(x.photos), os.path.realpath(x.home)]
    assert len([p for p in links if any(os.readlink(p).startswith(o + "/") for o in ours)]) == 17


def test_another_server_gets_each_image_folder_as_a_root(exposed):
    """On a server ifa does not run: one root per real folder, never an ancestor, never the home."""
    x = exposed
    rid = int(ReviewStore(x.ws.ledger).round("sec")["round_id"])
    files = task_data(x.ws, ReviewStore(x.ws.ledger).image_sources(rid), Connection(x.client.url, "t"))
    assert files.roots == {str(f) for k, f in enumerate(x.folders) if k != 5}
    assert files.refused == [x.swapped.stem]
    assert not safe_root(Path("/"), x.ws.root) and not safe_root(x.base, x.ws.root)
    assert not safe_root(Path.home(), x.ws.root) and safe_root(x.folders[0], x.ws.root)


def test_a_password_never_shows_in_a_command_line(exposed):
    x = exposed
    email = "peek3@example.com"
    annotators.add(x.ws, x.client, [email])  # an account with no password yet
    seen: list[str] = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    seen.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
                except OSError:
                    pass
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = annotators.add(x.ws, x.client, [email], password=PASSWORD)
    finally:
        done.set()
        watcher.join()
    assert [a.action for a in result.annotators] == ["password-set"]
    assert any(re.search(r"reset_password", c) for c in seen)  # the watcher saw the command run
    assert not any(PASSWORD in c for c in seen)
    _log_in(x.client.url, email, PASSWORD).close()  # and the password took
