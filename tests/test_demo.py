"""`ifa demo` end to end, as a user runs it: the console script in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ifa.annotation import server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One `ifa demo --json` for the module, run from the folder above a relative workspace (as
    a user runs it): (that folder, the parsed result)."""
    cwd = tmp_path_factory.mktemp("demo-cwd")
    ifa = Path(sys.executable).with_name("ifa")
    out = subprocess.run([str(ifa), "demo", "--workspace", "demo", "--json"], capture_output=True, text=True,
                         timeout=840, cwd=cwd, env={**os.environ, "IFA_WORKSPACE": ""})
    assert out.returncode == 0, out.stderr[-3000:]
    return cwd, json.loads(out.stdout)


def test_demo_runs_every_step_and_stops_what_it_started(demo_run):
    tmp_path, result = demo_run
    root = tmp_path / "demo"
    steps = {s["name"]: s for s in result["steps"]}
    assert list(steps) == ["import", "stats", "check-attributes", "dedup", "flag-noise", "review", "export"]
    planted = steps["import"]["planted"]
    # every planted confused image is hit; duplicates and leakage are found
    flagged = {f["image_id"] for f in steps["check-attributes"]["check_attributes"]["flagged"]}
    assert planted["two_categories"] + planted["contradictions"] + planted["sleeve_on_shoes"] <= len(flagged)
    assert steps["dedup"]["dedup"]["applied"] and steps["dedup"]["dedup"]["cross_split"] >= 1
    assert steps["review"]["simulated"] and steps["review"]["server_stopped"]
    export = tmp_path / result["export"]
    assert (export / "train.json").exists() and (export / "changes.csv").exists() and (export / "DATASHEET.md").exists()
    assert (tmp_path / result["report"]).exists()
    # nothing left running: the embedded Label Studio is gone
    assert server.running(server.server_dir(root)) is None
    state = server.read_state(server.server_dir(root))
    assert state is None or not Path(f"/proc/{state.pid}").exists()


def _summary_links(page: Path) -> list[str]:
    from html.parser import HTMLParser

    class Links(HTMLParser):
        def __init__(self):
            super().__init__()
            self.hrefs: list[str] = []

        def handle_starttag(self, tag, attrs):
            if tag == "a":
                self.hrefs += [v for k, v in attrs if k == "href"]

    parser = Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.hrefs


def test_demo_summary_links_every_report_and_each_opens_in_a_browser(demo_run):
    """Links must not depend on the current directory (a file://ifa-demo/... link is read as a host)."""
    tmp_path, result = demo_run
    root = tmp_path / "demo"
    page = tmp_path / result["report"]
    hrefs = _summary_links(page)
    targets = {(page.parent / h).resolve() for h in hrefs}
    assert all(not h.startswith(("file:", "/")) for h in hrefs), hrefs  # relative: opens wherever the folder is moved
    assert all(t.is_file() for t in targets), [t for t in targets if not t.is_file()]
    written = {p.resolve() for p in (root / "reports").iterdir() if p.is_file() and p.resolve() != page.resolve()}
    assert written <= targets, sorted(p.name for p in written - targets)
    for kind in ("check-attributes", "dedup", "flag-noise"):
        assert any(t.name.startswith(kind) and t.suffix == ".html" for t in targets), kind
    assert any(t.name.startswith("review") for t in targets)  # the round's finalize report
    assert any(t.name == "DATASHEET.md" for t in targets)

    browser = _chromium()
    try:
        browser.get(page.as_uri())
        links = [a.get_attribute("href") for a in browser.find_elements("tag name", "a")]
        # a CSV is downloaded, not shown (its file was checked above); the pages and pictures open
        for link in [u for u in links if u.endswith((".html", ".md", ".png", ".txt"))]:
            browser.get(link)
            assert browser.current_url == link
            assert "ERR_" not in browser.page_source, link
    finally:
        browser.quit()


def _chromium():
    import shutil
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("headless Chromium is not installed (apt-get install chromium chromium-driver; .ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
