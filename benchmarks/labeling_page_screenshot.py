"""The labeling page an annotator sees, in a real browser: screenshot and layout numbers.

    python -m benchmarks.labeling_page_screenshot [--out DIR]

Starts the embedded Label Studio on a scratch workspace holding the bundled validation
photos, makes two projects with one task each: one with ifa's labeling config
(`taxonomy.labeling_config`), one with the flat layout ifa used before (image above 105 +
124 inline checkboxes: the peer). Logs in as the admin in headless Chromium (Debian's
`chromium`; driven over the DevTools protocol with websocket-client), opens each task's
labeling page at 1440x900, and writes a PNG of each. Then types "dre" into the category
filter and counts the categories still shown.

Printed per layout: whether the photo and the controls sit side by side, how far the
page scrolls, how tall the category block is, and how many categories the filter leaves.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import httpx

from ifa.annotation import projects, server
from ifa.annotation.annotators import log_in
from ifa.annotation.client import Client, connection_for
from ifa.annotation.files import task_data
from ifa.curation.ingest import importing
from ifa.curation.ledger.review import ReviewStore
from ifa.curation.workspace import Workspace
from ifa.sample import IMAGES_DIR, split_file
from ifa.taxonomy import Taxonomy, labeling_config

WIDTH, HEIGHT = 1440, 900
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  f"--window-size={WIDTH},{HEIGHT}"]

# What the page measures once it has rendered: where the photo and the controls are, how
# tall the page and the category block are, and how many category choices are visible.
MEASURE = """(() => {
  const imgs = [...document.querySelectorAll('img')].map(e => [e, e.getBoundingClientRect()]);
  imgs.sort((a, b) => b[1].width * b[1].height - a[1].width * a[1].height);
  const img = imgs.length ? imgs[0][0] : null;  // the photo: the largest image on the page
  const groups = [...document.querySelectorAll('.lsf-choices')];
  const cat = groups[0];
  const r = el => el ? el.getBoundingClientRect() : null;
  const ir = r(img), cr = r(cat);
  // The category block as seen: clipped by the nearest scroll box around it.
  let seen = cr ? cr.height : -1;
  for (let el = cat && cat.parentElement; el; el = el.parentElement) {
    const s = getComputedStyle(el);
    if (s.overflowY === 'auto' || s.overflowY === 'scroll') { seen = Math.min(seen, el.clientHeight); break; }
  }
  const visible = cat ? [...cat.querySelectorAll('.lsf-choice')].filter(e => e.offsetParent !== null).length : -1;
  let scroller = document.scrollingElement.scrollHeight;
  for (const el of document.querySelectorAll('*')) {
    const s = getComputedStyle(el);
    if ((s.overflowY === 'auto' || s.overflowY === 'scroll') && el.scrollHeight > el.clientHeight + 5
        && el.contains(cat) && el.clientHeight > 300) { scroller = Math.max(scroller, el.scrollHeight); }
  }
  return JSON.stringify({image: ir && [ir.left, ir.top, ir.right, ir.bottom], category: cr && [cr.left, cr.top, cr.right, cr.bottom],
                         groups: groups.length, visible_categories: visible, category_seen: Math.round(seen), content_height: scroller,
                         filter: !!document.querySelector('.lsf-main-content input[placeholder*="filter"], input[placeholder*="filter"]')});
})()"""


def flat_config(taxonomy: Taxonomy) -> str:
    """The peer: the layout ifa generated before (everything stacked in one column)."""
    view = ET.Element("View")
    ET.SubElement(view, "Image", name="image", value="$image", zoom="true")
    for group in taxonomy.groups:
        ET.SubElement(view, "Header", value=group.name.capitalize())
        choices = ET.SubElement(view, "Choices", name=group.name, toName="image", choice=group.cardinality,
                                showInline="true")
        for lid in group.label_ids:
            ET.SubElement(choices, "Choice", value=taxonomy.labels[lid].name)
    ET.SubElement(view, "Header", value="Discard")
    discard = ET.SubElement(view, "Choices", name="discard", toName="image", choice="single")
    ET.SubElement(discard, "Choice", value="No clear fashion item")
    return ET.tostring(view, encoding="unicode")


class Browser:
    """Headless Chromium over the DevTools protocol (one page)."""

    def __init__(self, chromium: str, profile: Path):
        import websocket  # websocket-client, the `bench` extra

        self.proc = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                      "--remote-debugging-port=0", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("Chromium did not start (is Debian's `chromium` installed?)")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        pages = httpx.get(f"http://127.0.0.1:{port}/json").json()
        page = next(p for p in pages if p["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.ids = itertools.count(1)
        self.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False)
        self.call("Network.enable")
        self.call("Page.enable")

    def call(self, method: str, **params):
        n = next(self.ids)
        self.ws.send(json.dumps({"id": n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                         awaitPromise=True).get("result", {}).get("value")

    def open(self, url: str, ready: str, timeout: float = 90) -> None:
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while not self.evaluate(ready):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not render within {timeout:.0f} s")
            time.sleep(0.5)
        time.sleep(2.0)  # let the image finish loading and the layout settle

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            self.proc.wait(timeout=20)


def _make_tasks(ws: Workspace, client: Client, state) -> dict[str, tuple[int, int]]:
    """One task in two projects, ifa's labeling config and the flat peer's. Returns role ->
    (project id, task id)."""
    store = ReviewStore(ws.ledger)
    image_id = ws.ledger.images_frame(["validation"])["image_id"].iloc[3]
    rid = store.create_round("screenshot", "validation", client.url)
    store.add_images(rid, [image_id])
    files = task_data(ws, store.image_sources(rid), client.conn)
    me = client.whoami()
    tasks = {}
    for role, config in (("annotator1", labeling_config(ws.taxonomy)), ("annotator2", flat_config(ws.taxonomy))):
        pid = projects.ensure_project(client, store, rid, "screenshot", role, state.admin_email, int(me["id"]),
                                      files.roots, config)
        projects.import_missing(client, store, rid, role, pid, files.data)
        tasks[role] = (pid, int(store.tasks(rid, role)["ls_task_id"].iloc[0]))
    return tasks


def _measure(browser: Browser, url: str, tasks: dict[str, tuple[int, int]], out: Path) -> dict[str, tuple]:
    """Open each task's labeling page, screenshot it and measure its layout (and ifa's
    category filter after typing "dre"). Returns label -> (measures, categories left, PNG)."""
    rows = {}
    for role, label in (("annotator1", "ifa (side by side + filter)"), ("annotator2", "flat layout (peer)")):
        pid, task = tasks[role]
        browser.open(f"{url}/projects/{pid}/data?task={task}",
                     "document.querySelectorAll('.lsf-choice').length > 200")
        shot = browser.screenshot(out / f"labeling-page-{'ifa' if role == 'annotator1' else 'flat'}.png")
        m = json.loads(browser.evaluate(MEASURE))
        if m["filter"]:
            browser.evaluate("(() => { const i = document.querySelector('input[placeholder*=\"category\"]');"
                             "i.focus(); return true; })()")
            browser.call("Input.insertText", text="dre")
            time.sleep(1.0)
            filtered = json.loads(browser.evaluate(MEASURE))["visible_categories"]
            browser.screenshot(out / "labeling-page-ifa-filtered.png")
        else:
            filtered = None
        rows[label] = (m, filtered, shot)
    return rows


def _print_rows(rows: dict[str, tuple], chromium: str) -> None:
    print()
    print(f"{'layout':32} {'side by side':>12} {'content px':>10} {'category px':>11} {'categories shown':>16} "
          f"{'after typing dre':>16}  screenshot")
    for label, (m, filtered, shot) in rows.items():
        img, cat = m["image"], m["category"]
        side = bool(img and cat and img[2] <= cat[0] + 1)
        height = m["category_seen"]
        print(f"{label:32} {str(side):>12} {m['content_height']:>10} {height:>11} {m['visible_categories']:>16} "
              f"{'' if filtered is None else filtered:>16}  {shot}")
    print(f"\nscreen {WIDTH}x{HEIGHT}; Chromium {subprocess.run([chromium, '--version'], capture_output=True, text=True).stdout.strip()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"), help="where the PNGs go")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="labeling-page-"))
    ws = Workspace.init(tmp / "ws", command="benchmark")
    importing.import_imat(ws, split_file("validation"), "validation", images_dir=IMAGES_DIR)
    root = server.server_dir(ws.root)
    state, _ = server.start(root, port=server.free_port(), die_with_parent=True)
    browser = None
    try:
        client = Client(connection_for(ws.root))
        tasks = _make_tasks(ws, client, state)
        session = log_in(client.url, state.admin_email, state.admin_password)
        browser = Browser(args.chromium, tmp / "chromium-profile")
        for cookie in session.cookies.jar:
            browser.call("Network.setCookie", name=cookie.name, value=cookie.value, domain="127.0.0.1", path="/")
        rows = _measure(browser, client.url, tasks, args.out)
    finally:
        if browser is not None:
            browser.close()
        server.stop(root)
        ws.close()
    _print_rows(rows, args.chromium)


if __name__ == "__main__":
    sys.exit(main())
