"""`ifa browse`: its JSON API and pages over real HTTP on the bundled sample's workspace."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ifa.browse import server
from ifa.curation.ledger import Change
from ifa.browse.facets import FacetIndex
from ifa.curation.ledger.browse import BrowseFilter, page
from ifa.curation.restore import restore

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def browse(sample_ws):
    """A running `ifa browse` server over the sample workspace, on a free loopback port."""
    srv = server.start(sample_ws.root)
    srv.start_in_thread()
    yield srv
    srv.stop()


def call(srv, path: str, body=None, token: str | None = "header", headers: dict | None = None):
    """(status, parsed JSON or bytes) of one request; token 'header' sends it as Bearer,
    'query' as ?token=, None not at all."""
    url = f"http://127.0.0.1:{srv.port}{path}"
    hdrs = dict(headers or {})
    if token == "header":
        hdrs["Authorization"] = f"Bearer {srv.token}"
    elif token == "query":
        url += ("&" if "?" in url else "?") + f"token={srv.token}"
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        hdrs["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=hdrs, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, raw, kind = resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, raw, kind = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    return status, (json.loads(raw) if kind.startswith("application/json") else raw)


def all_pages(srv, query: str, limit: int) -> list[dict]:
    out, after = [], None
    while True:
        status, data = call(srv, f"/api/images?{query}&limit={limit}" + (f"&after={after}" if after else ""))
        assert status == 200, data
        out += data["images"]
        after = data["next"]
        if after is None:
            return out


def test_keyset_pages_give_every_image_once_and_match_the_counts(browse, sample_ws):
    ledger = sample_ws.ledger
    every = all_pages(browse, "", 7)
    ids = [r["image_id"] for r in every]
    assert len(ids) == len(set(ids)) == ledger.counts()["images"] == 310
    shirt = sample_ws.taxonomy.by_name("T-Shirts").id
    for query, f in [("split=validation", BrowseFilter(split="validation")),
                     (f"label={shirt}", BrowseFilter(labels=(shirt,))),
                     ("label=T-Shirts&split=train", BrowseFilter(labels=(shirt,), split="train")),
                     ("group=neckline&split=validation", BrowseFilter(split="validation",
                                                             any_labels=sample_ws.taxonomy.group("neckline").label_ids))]:
        got = all_pages(browse, query, 5)
        direct = {r[0] for r in ledger.query("SELECT image_id FROM images")
                  if _matches(sample_ws, r[0], f)}
        assert [r["image_id"] for r in got] == sorted(direct, key=lambda i: _pk(ledger, i)), query
        status, counts = call(browse, f"/api/facets?{query}")
        assert status == 200 and counts["total"] == len(direct) > 0, query
        if f.labels:
            assert all("T-Shirts" in r["labels"] for r in got)
            assert {c["label"]: c["images"] for c in counts["label"]}["T-Shirts"] == len(direct)


def _pk(ledger, image_id):
    return ledger.query("SELECT pk FROM images WHERE image_id = ?", (image_id,))[0][0]


def _matches(ws, image_id: str, f: BrowseFilter) -> bool:
    """The filter's meaning, checked one image at a time from `ifa show`'s description."""
    from ifa.curation.show import describe
    info = describe(ws.ledger, ws.taxonomy, image_id)
    active = {lab["label_id"] for lab in info["labels"] if lab["status"] == "active"}
    return ((f.split is None or info["split"] == f.split) and set(f.labels) <= active
            and (not f.any_labels or bool(active & set(f.any_labels))))


def test_every_request_needs_the_token_and_a_local_host(browse):
    assert call(browse, "/api/images?limit=1", token=None)[0] == 401
    assert call(browse, "/api/images?limit=1&token=wrong", token=None)[0] == 401
    assert call(browse, "/", token=None)[0] == 401
    assert call(browse, "/static/browse.js", token=None)[0] == 401
    assert call(browse, "/api/images?limit=1", token="query")[0] == 200
    assert call(browse, "/api/images?limit=1", token="header")[0] == 200
    status, data = call(browse, "/api/images?limit=1", headers={"Host": "attacker.example:80"})
    assert status == 403 and "--host" in data["error"]


def test_actions_are_post_only_and_write_events_that_restore_undoes(browse, sample_ws):
    ledger = sample_ws.ledger
    image_id = ledger.query("SELECT image_id FROM images WHERE split = 'train' ORDER BY pk LIMIT 1")[0][0]
    events = ledger.query("SELECT count(*) FROM events")[0][0]
    status, _ = call(browse, f"/api/images/{image_id}/set-aside?reason=x", token="query")
    assert status == 405
    assert ledger.query("SELECT count(*) FROM events")[0][0] == events
    assert ledger.image(image_id)["status"] == "active"

    status, data = call(browse, f"/api/images/{image_id}/set-aside", {"reason": "a mannequin, not a product"})
    assert status == 200 and data["changed"] == {"set_aside": 1}
    assert data["image"]["status"] == "set_aside" and data["image"]["status_reason"] == "a mannequin, not a product"
    last = ledger.image_events(image_id)[-1]
    assert (last["kind"], last["command"], last["rule"], last["reason"]) == \
        ("set_aside", "browse", "browse", "a mannequin, not a product")
    assert call(browse, f"/api/images/{image_id}/set-aside", {"reason": "again"})[1]["changed"] == {"set_aside": 0}

    first_label = ledger.image_label_records(image_id)[0]["label_id"]
    status, data = call(browse, f"/api/images/{image_id}/labels", {"add": ["Floral", "Denim"], "drop": [first_label]})
    assert status == 200 and data["changed"] == {"drop_label": 1, "add_label": 2}
    kinds = [(e["kind"], e["label"]) for e in data["image"]["events"][-3:]]
    assert sorted(kinds) == sorted([("label_dropped", sample_ws.taxonomy.labels[first_label].name),
                                    ("label_added", "Floral"), ("label_added", "Denim")])
    # Undone with the CLI's own library call: the image by id, then what browse added by rule.
    undone = restore(ledger, image_id=image_id)
    assert undone.images == [image_id] and undone.labels == [(image_id, first_label)]
    assert ledger.image(image_id)["status"] == "active"
    unadded = restore(ledger, rule="browse")
    assert sorted(l for _, l in unadded.unadded) == sorted(sample_ws.taxonomy.by_name(n).id for n in ("Floral", "Denim"))
    active = {r["label_id"] for r in ledger.image_label_records(image_id) if r["status"] == "active"}
    assert first_label in active and sample_ws.taxonomy.by_name("Floral").id not in active

    call(browse, f"/api/images/{image_id}/set-aside", {})
    status, data = call(browse, f"/api/images/{image_id}/restore", {"reason": "checked: fine"})
    assert status == 200 and data["changed"] == {"restore_image": 1} and data["image"]["status"] == "active"
    # A person's restore: dedup honours it (tests/test_dedup_review.py), and the reason given stays.
    assert ledger.image_events(image_id)[-1]["reason"] == "restored by hand in ifa browse; checked: fine"


def test_user_errors_are_one_sentence_and_change_nothing(browse, sample_ws):
    events = sample_ws.ledger.query("SELECT count(*) FROM events")[0][0]
    image_id = sample_ws.ledger.query("SELECT image_id FROM images LIMIT 1")[0][0]
    cases = [("/api/images?split=dev", None, 400, "Unknown split"),
             ("/api/images?label=Banana%20Hat", None, 400, "Unknown label name"),
             ("/api/images?limit=0", None, 400, "limit"),
             ("/api/images?after=abc", None, 400, "whole numbers"),
             ("/api/images?colour=red", None, 400, "Unknown filter colour"),
             ("/api/images/nope", None, 404, "no image"),
             ("/api/images/nope/set-aside", {"reason": "x"}, 404, "no image"),
             (f"/api/images/{image_id}/labels", {"add": ["Banana Hat"]}, 400, "Unknown label name"),
             (f"/api/images/{image_id}/labels", {"add": ["Floral"], "drop": ["Floral"]}, 400, "both added and dropped"),
             (f"/api/images/{image_id}/labels", {"drop": ["Floral"]}, 400, "no label Floral"),
             (f"/api/images/{image_id}/labels", {}, 400, "at least one label"),
             ("/api/review", {"filter": {}}, 400, "one split"),
             ("/nowhere", None, 404, "Nothing at")]
    for path, body, want, words in cases:
        status, data = call(browse, path, body)
        assert status == want and words in data["error"] and "\n" not in data["error"], (path, data)
    assert sample_ws.ledger.query("SELECT count(*) FROM events")[0][0] == events


def test_image_json_is_ifa_show_json(browse, sample_ws):
    image_id = sample_ws.ledger.query("SELECT image_id FROM images WHERE split = 'validation' LIMIT 1")[0][0]
    sample_ws.ledger.apply_changes([Change("set_aside", image_id, reason="blurry", rule="manual")])
    shown = subprocess.run([sys.executable, "-m", "ifa.cli.app", "show", image_id, "--json", "-w", str(sample_ws.root)],
                           capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": _pythonpath()})
    status, data = call(browse, f"/api/images/{image_id}")
    assert status == 200 and data == json.loads(shown.stdout)


def test_thumbnails_are_made_once_and_cached_in_the_workspace(browse, sample_ws):
    image_id = sample_ws.ledger.query("SELECT image_id FROM images LIMIT 1")[0][0]
    status, body = call(browse, f"/thumb/{image_id}")
    assert status == 200 and body[:3] == b"\xff\xd8\xff"
    cached = list((sample_ws.root / "thumbs").rglob("*.jpg"))
    assert len(cached) == 1 and cached[0].read_bytes() == body
    from PIL import Image
    with Image.open(cached[0]) as im:
        assert max(im.size) == 224
    os.utime(cached[0], (1, 1))
    assert call(browse, f"/thumb/{image_id}")[1] == body and cached[0].stat().st_mtime == 1


def test_pages_render_an_image_with_its_history_and_cluster(browse, sample_ws):
    ids = [r[0] for r in sample_ws.ledger.query("SELECT image_id FROM images WHERE split = 'train' LIMIT 2")]
    sample_ws.ledger.apply_changes([Change("set_aside", ids[1], reason=f"duplicate-of:{ids[0]}", rule="duplicate")])
    status, html = call(browse, f"/image/{ids[0]}?", token="query")
    page_text = html.decode()
    assert status == 200 and f"duplicate-of:{ids[0]}" not in page_text  # the kept copy's own status is active
    assert page_text.count('class="card') == 2 and ids[1] in page_text and "History" in page_text
    facets = FacetIndex(sample_ws.ledger, sample_ws.taxonomy).counts(BrowseFilter(cluster=True))
    assert facets.total == 2 and [r.image_id for r in page(sample_ws.ledger, BrowseFilter(cluster=True))] == ids


def _pythonpath() -> str:
    import ifa
    return os.pathsep.join([str(Path(ifa.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])


def test_cli_prints_the_url_with_token_and_stops_on_ctrl_c(sample_ws):
    proc = subprocess.Popen([sys.executable, "-m", "ifa.cli.app", "browse", "-w", str(sample_ws.root)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": _pythonpath(), "COLUMNS": "300"})
    try:
        line = proc.stdout.readline()
        assert line.startswith("ifa browse: http://127.0.0.1:") and "/?token=" in line
        url = line.split(": ", 1)[1].strip()
        with urllib.request.urlopen(url.replace("/?", "/api/images?limit=1&"), timeout=30) as resp:
            assert json.loads(resp.read())["images"]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0 and err.strip() == "ifa browse: stopped." and "Traceback" not in err


# ---- a real browser ---------------------------------------------------------------------------
def _chrome():
    """Headless Chromium through the system chromedriver (apt: chromium, chromium-driver)."""
    import shutil
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    driver_path = shutil.which("chromedriver")
    if driver_path is None or not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("chromium and chromedriver are not installed (apt-get install -y chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver_path), options=options)


@pytest.mark.slow
def test_in_a_browser_filter_open_set_aside_and_restore_from_the_cli(browse, sample_ws, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    shots = Path(os.environ.get("IFA_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": _pythonpath()}
    ifa = [sys.executable, "-m", "ifa.cli.app"]
    shirts = [r[0] for r in sample_ws.ledger.query(
        "SELECT i.image_id FROM images i JOIN labels l ON l.image_pk = i.pk WHERE l.label_id = ? ORDER BY i.pk",
        (sample_ws.taxonomy.by_name("T-Shirts").id,))]
    # a dedup cluster beside the image the test opens, as `ifa curate dedup --apply` leaves one
    sample_ws.ledger.apply_changes([Change("set_aside", shirts[1], reason=f"duplicate-of:{shirts[0]}", rule="duplicate")])
    driver = _chrome()
    # The page re-renders a panel after each action: an element found mid-render goes stale.
    wait = WebDriverWait(driver, 30, ignored_exceptions=(StaleElementReferenceException,))
    try:
        driver.get(browse.url)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#grid .card")) == 60)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#facet-lists .facet"))
        typed = driver.find_element(By.ID, "label-input")
        typed.send_keys("T-Shirts")
        driver.execute_script("arguments[0].dispatchEvent(new Event('change'))", typed)
        wait.until(lambda d: "label=" in d.current_url and d.find_element(By.ID, "summary").text.startswith(f"{len(shirts)} "))
        cards = driver.find_elements(By.CSS_SELECTOR, "#grid .card")
        assert [c.get_attribute("data-image") for c in cards] == shirts
        assert all("T-Shirts" in c.find_element(By.CLASS_NAME, "labels").text for c in cards)
        wait.until(lambda d: d.execute_script(
            "return [...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)"))
        driver.save_screenshot(str(shots / "browse-grid.png"))

        cards[0].click()
        wait.until(lambda d: d.find_elements(By.ID, "image-id"))
        assert driver.find_element(By.ID, "image-id").text == shirts[0]
        assert len(driver.find_elements(By.CSS_SELECTOR, "#cluster .card")) == 2
        driver.find_element(By.ID, "reason").send_keys("a flat lay of two shirts")
        driver.find_element(By.ID, "set-aside").click()
        wait.until(lambda d: d.find_element(By.ID, "image-status").text.startswith("set_aside"))
        wait.until(lambda d: d.execute_script("return document.getElementById('photo').naturalWidth > 0"))
        driver.save_screenshot(str(shots / "browse-image.png"))

        shown = json.loads(subprocess.run([*ifa, "show", shirts[0], "--json", "-w", str(sample_ws.root)], env=env,
                                          capture_output=True, text=True, check=True).stdout)
        last = shown["events"][-1]
        assert (last["kind"], last["command"], last["reason"], last["rule"]) == \
            ("set_aside", "browse", "a flat lay of two shirts", "browse")
        subprocess.run([*ifa, "curate", "restore", "--image", shirts[0], "-w", str(sample_ws.root)], env=env,
                       capture_output=True, text=True, check=True)

        driver.back()
        driver.refresh()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#grid .card")) == len(shirts))
        card = driver.find_element(By.CSS_SELECTOR, f'#grid .card[data-image="{shirts[0]}"]')
        assert card.get_attribute("class").split() == ["card", "active"]
        card.click()
        wait.until(lambda d: d.find_element(By.ID, "image-status").text == "active")
        assert driver.find_elements(By.ID, "set-aside")
        history = driver.find_element(By.ID, "history").text
        assert "a flat lay of two shirts" in history and "curate restore" in history
    finally:
        driver.quit()


def test_every_driver_pages_the_slice_the_facet_counts_count(sample_ws):
    """The ledger's pages (whichever filter the query walks) and the in-memory counts agree."""
    import itertools

    from ifa.browse.facets import slice_mask
    from ifa.curation.ledger.browse import DRIVERS, facet_arrays

    ledger, tax = sample_ws.ledger, sample_ws.taxonomy
    ids = [r[0] for r in ledger.query("SELECT image_id FROM images ORDER BY pk")]
    shirt, short = tax.by_name("T-Shirts").id, tax.by_name("Short Sleeves").id
    ledger.apply_changes([Change("set_aside", ids[3], reason=f"duplicate-of:{ids[2]}", rule="duplicate"),
                          Change("set_aside", ids[7], reason="two categories", rule="single-group-conflict"),
                          Change("add_label", ids[9], tax.by_name("Floral").id, rule="browse", source="browse"),
                          *[Change("drop_label", i, l, reason="flag-noise: likely wrong (score 0.91)", rule="flag-noise")
                            for i, l in ledger.query("SELECT i.image_id, l.label_id FROM labels l JOIN images i "
                                                     "ON i.pk = l.image_pk WHERE l.label_id = ? LIMIT 3", (short,))]])
    from ifa.curation.ledger.hashes import save_fingerprints
    (pk, path), sha = ledger.query("SELECT pk, path FROM images WHERE image_id = ?", (ids[5],))[0], "0" * 64
    save_fingerprints(ledger, stats=[(pk, path, 1, 1, sha)], hashes=[], unreadable=[(pk, sha, "truncated", "")], files=[])
    arrays = facet_arrays(ledger)
    assert [ids[p] for p in arrays.sets.problem] == [ids[5]]
    filters = [BrowseFilter(**dict(kv)) for n in (1, 2) for kv in itertools.combinations(
        [("split", "train"), ("status", "set_aside"), ("rule", "duplicate"), ("labels", (shirt,)),
         ("labels", (shirt, short)), ("any_labels", tax.group("sleeve").label_ids), ("source", "browse"), ("source", "import"),
         ("flagged", True), ("cluster", True), ("problem", True), ("status", "active")], n) if len({k for k, _ in kv}) == n]
    nonempty = 0
    for f in filters:
        want = [ids[p] for p in slice_mask(arrays, f).nonzero()[0]]
        nonempty += bool(want)
        for driver in DRIVERS:
            if driver == "label" and not f.labels or driver in ("split", "status", "rule") and getattr(f, driver) is None \
                    or driver == "set" and not (f.flagged or f.cluster or f.problem or f.source == "browse"):
                continue
            got, after = [], 0
            while rows := page(ledger, f, after, 4, driver):
                got += [r.image_id for r in rows]
                after = rows[-1].pk
            assert got == want, (f, driver)
    assert nonempty >= 20


def test_counts_follow_changes_made_elsewhere_as_a_fresh_read_would(sample_ws):
    """After a change by another connection (the CLI, an action) the index patches in the
    images it touched; its counts equal those of a fresh read of the ledger."""
    from ifa.curation.workspace import Workspace

    tax = sample_ws.taxonomy
    other = Workspace.open(sample_ws.root, command="browse")
    index = FacetIndex(other.ledger, tax)
    shirt = tax.by_name("T-Shirts").id
    before = index.counts(BrowseFilter(labels=(shirt,)))
    ids = [r[0] for r in sample_ws.ledger.query(
        "SELECT i.image_id FROM images i JOIN labels l ON l.image_pk = i.pk WHERE l.label_id = ? ORDER BY i.pk", (shirt,))]
    sample_ws.ledger.apply_changes([Change("set_aside", ids[0], reason="x", rule="manual"),
                                    Change("drop_label", ids[1], shirt, reason="not a T-shirt", rule="browse"),
                                    Change("add_label", ids[2], tax.by_name("Floral").id, rule="browse", source="browse"),
                                    Change("set_aside", ids[3], reason=f"duplicate-of:{ids[4]}", rule="duplicate")])
    fresh = FacetIndex(Workspace.open(sample_ws.root, command="browse").ledger, tax)
    for f in (BrowseFilter(), BrowseFilter(labels=(shirt,)), BrowseFilter(status="set_aside"), BrowseFilter(source="browse"),
              BrowseFilter(cluster=True), BrowseFilter(rule="manual"), BrowseFilter(any_labels=tax.group("pattern").label_ids)):
        assert index.counts(f) == fresh.counts(f), f
    after = index.counts(BrowseFilter(labels=(shirt,)))
    assert after.total == before.total - 1 and after.status["set_aside"] == 2 and after.cluster == 2
    assert index.counts(BrowseFilter(source="browse")).total == 1


@pytest.mark.slow
def test_send_the_selection_to_a_review_round(label_studio, sample_ws):
    """POST /api/review makes a round over the slice with `ifa review create`'s library call."""
    from ifa.annotation import server as ls_server
    from ifa.annotation import simulate
    from ifa.annotation.client import Client, Connection

    st = ls_server.read_state(label_studio)
    # The session's server is this workspace's embedded one: it serves the round's images only
    # from its own folder of links (annotation/files.py), which a --url server could not use.
    (sample_ws.root / ls_server.DIR_NAME).symlink_to(label_studio)
    client = Client(Connection(st.url, st.token, embedded_root=label_studio), retries=2, backoff=0.2)
    sims = [simulate.annotator(sample_ws, client, simulate.email(f"browse-{k}"), secrets_dir=label_studio)
            for k in ("a", "b", "t")]
    people = [s.email for s in sims]
    srv = server.start(sample_ws.root)
    srv.start_in_thread()
    try:
        shirt = "T-Shirts"
        want = [r["image_id"] for r in all_pages(srv, f"split=validation&label={shirt}", 50)]
        status, made = call(srv, "/api/review", {"filter": {"split": "validation", "label": [shirt]},
                                                 "annotators": people[:2], "tiebreaker": people[2], "name": "browse-1"})
        assert status == 200 and made["round"] == "browse-1" and made["images"] == len(want) > 0, made
        assert sorted(r[0] for r in sample_ws.ledger.query("SELECT image_id FROM review_images")) == sorted(want)
        assert call(srv, "/api/facets?split=validation")[1]["round"] == {"browse-1": len(want)}
        assert [r["image_id"] for r in all_pages(srv, "round=browse-1", 3)] == want
        # the annotators answer in Label Studio; after a sync the image page shows each one's answer
        from ifa.annotation.sync import sync_round
        roles = dict(sample_ws.ledger.query("SELECT email, role FROM review_projects WHERE role LIKE 'annotator%'"))
        for who in sims[:2]:
            simulate.answer_role(sample_ws, st.url, who, roles[who.email], simulate.confirming_chooser(), "browse-1")
        sync_round(sample_ws, "browse-1", client)
        html = call(srv, f"/image/{want[0]}?", token="query")[1].decode()
        answers = html[html.index('id="answers"'):html.index("Dedup cluster")]
        assert people[0] in answers and people[1] in answers and answers.count("<tr>") == 3
        status, data = call(srv, "/api/review", {"filter": {"label": [shirt]}, "annotators": people[:2],
                                                 "tiebreaker": people[2]})
        assert status == 400 and "one split" in data["error"]
    finally:
        srv.stop()
