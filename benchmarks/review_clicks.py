"""Check mode vs blind mode on the real labeling page: clicks and keystrokes a scripted
annotator needs, measured in headless Chromium (Selenium, the system chromedriver).

    python -m benchmarks.review_cost --clicks 30 --data ../shared/data/myntra-products

Per dataset: n images of the shared dataset, their real labels the truth. The images'
current labels (what check mode pre-fills) are the truth through the benchmark's careful
error model (a wrong group in twenty, `simulate.ERROR_TABLES`), and the annotator's
answer is the truth through the same model with another draw: the same answer in both
modes. A blind round and a check round are created over those images (`rounds.create_round`,
two simulated annotators each); the scripted annotator logs in as annotator 1, opens each
task's labeling page at 1440x900 and makes the page show its answer:

- a choice visible on screen (inside the window and its scroll box) is one click;
- a hidden choice in a group with a Filter field (category, material, pattern): click the
  field, type the label's first letters until it shows (clearing an earlier filter text
  is Ctrl+A, Backspace: 3 keys), then click it;
- a hidden choice elsewhere: one scroll of the controls column, then the click;
- a single-label group changes with one click on the new choice; a choice to remove is
  clicked off;
- Submit: Ctrl+Enter (Label Studio's `annotation:submit` hotkey, both modes), or the
  Submit button (one click more, reported beside it).

Before any click the page must show what the mode promises (empty, or the pre-filled
current labels), and before Submit exactly the answer; after both rounds are synced the
answer read back must be the answer posted. Seconds per image by the keystroke-level
model: point+click 1.3 s, keystroke 0.28 s, a scroll 1.3 s, 1.35 s per group decided.
"""

from __future__ import annotations

import secrets
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ifa.annotation import rounds, server, simulate, state, sync
from ifa.annotation.quality import by_group
from ifa.curation.ledger.review import ReviewStore
from ifa.curation.workspace import Workspace
from ifa.taxonomy import Taxonomy

from .review_live import client_for, import_truth

WIDTH, HEIGHT = 1440, 900
KLM_CLICK, KLM_KEY, KLM_DECIDE = 1.3, 0.28, 1.35

# The page's state: per Choices control (taxonomy group order, then discard) the label
# names and whether each is selected and visible to a person (inside the window and every
# scroll box around it).
READ = r"""
const seen = el => {
  let r = el.getBoundingClientRect();
  if (r.width === 0 || r.height === 0 || r.bottom <= 0 || r.top >= innerHeight) return false;
  for (let p = el.parentElement; p; p = p.parentElement) {
    const s = getComputedStyle(p);
    if (s.overflowY === 'auto' || s.overflowY === 'scroll' || s.overflowY === 'hidden') {
      const q = p.getBoundingClientRect();
      if (r.bottom > q.bottom + 1 || r.top < q.top - 1) return false;
    }
  }
  return true;
};
return [...document.querySelectorAll('.lsf-choices')].map(c => [...c.querySelectorAll('.lsf-choice')].map(e => {
  const input = e.querySelector('input');
  // The text without the hotkey Label Studio shows after the first choices ("Boots[e]").
  return [e.innerText.replace(/\[[^\]]*\]\s*$/, '').trim(), !!(input && input.checked), seen(e)];
}));
"""


# Scroll the controls column so control k (its scroll box, with the filter above it) is
# wholly in view; returns whether it had to scroll. A person looks at every group.
REVEAL = """
const c = document.querySelectorAll('.lsf-choices')[arguments[0]];
let box = c, column = null;
for (let p = c.parentElement; p; p = p.parentElement) {
  const s = getComputedStyle(p);
  if (s.overflowY === 'auto' || s.overflowY === 'scroll') {
    if (p.clientHeight < 300 && box === c) { box = p; continue; }
    column = p; break;
  }
}
const field = box.previousElementSibling && box.previousElementSibling.querySelector('input');
const top = (field || box).getBoundingClientRect().top, bottom = box.getBoundingClientRect().bottom;
const q = column ? column.getBoundingClientRect() : {top: 0, bottom: innerHeight};
if (top >= q.top - 1 && bottom <= q.bottom + 1) return false;
if (column) column.scrollTop += top - q.top - 8;
return true;
"""


@dataclass
class Effort:
    clicks: int = 0
    keys: int = 0
    scrolls: int = 0


@dataclass
class ModeResult:
    mode: str
    clicks_per_image: float  # Submit by Ctrl+Enter
    keys_per_image: float
    scrolls_per_image: float
    klm_seconds_per_image: float
    clicks_per_image_submit_button: float
    klm_seconds_per_image_submit_button: float


def picks(data: Path, n: int, seed: int, taxonomy: Taxonomy) -> tuple[dict, dict]:
    """(current labels, answer) per image id: the truth through two draws of the careful error model."""
    from .review_cost import read_truth

    ids, labels = read_truth(data, taxonomy)
    rng = np.random.default_rng(seed)
    careful = simulate.ERROR_TABLES["careful"]
    current, answer = {}, {}
    for k in rng.choice(len(ids), size=n, replace=False):
        truth = labels[k]
        current[ids[k]] = tuple(simulate.slip(truth, taxonomy, careful, rng))
        # An empty answer is refused by the page (empty annotations are off): keep the truth then.
        answer[ids[k]] = tuple(simulate.slip(truth, taxonomy, careful, rng)) or tuple(truth)
    return current, answer


def log_in_form(driver, url: str, email: str, password: str, timeout: float = 90) -> None:
    """Log `driver` in to Label Studio at `url` through its login form, as a person does (a
    session cookie copied in from another client does not always take). Raises
    RuntimeError when the form does not render or the login fails within `timeout` s."""
    driver.get(f"{url}/user/login")
    deadline = time.monotonic() + timeout
    while not driver.find_elements("css selector", "input[name=email]"):
        if time.monotonic() > deadline:
            raise RuntimeError("the login page did not render")
        time.sleep(0.3)
    driver.find_element("css selector", "input[name=email]").send_keys(email)
    driver.find_element("css selector", "input[name=password]").send_keys(password)
    driver.find_element("css selector", "button[type=submit], input[type=submit]").click()
    while "/user/login" in driver.current_url:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{email} could not log in to {url}")
        time.sleep(0.3)


class Page:
    """The labeling page in headless Chromium, driven like a person, counting what it costs."""

    def __init__(self, url: str, email: str, password: str, profile: Path):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        opts = webdriver.ChromeOptions()
        opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={WIDTH},{HEIGHT}", f"--user-data-dir={profile}"):
            opts.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                                       options=opts)
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                    {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
        self.url = url
        self.log_in(email, password)

    def log_in(self, email: str, password: str) -> None:
        """The login form, as a person fills it (not counted: once per session)."""
        log_in_form(self.driver, self.url, email, password)

    def open(self, project_id: int, task_id: int, shots: Path, tries: int = 3) -> None:
        """Load the task's labeling page (again, up to `tries` times: on a loaded machine the
        data manager sometimes never renders the task); the reloads are not counted."""
        for _ in range(tries):
            self.driver.get(f"{self.url}/projects/{project_id}/data?task={task_id}")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if sum(len(c) for c in self.read()) > 200:
                    time.sleep(1.0)  # the pre-fill lands just after the controls render
                    return
                time.sleep(0.3)
            self.screenshot(shots / f"not-rendered-task-{task_id}.png")
        raise RuntimeError(f"task {task_id} did not render (see {shots})")

    def read(self) -> list[list]:
        return self.driver.execute_script(READ)

    def selected(self, groups: list[str]) -> dict[str, set[str]]:
        return {g: {name for name, on, _ in choices if on} for g, choices in zip(groups, self.read())}

    def choice(self, k: int, name: str):
        j = [n for n, _, _ in self.read()[k]].index(name)
        return self.driver.find_elements("css selector", ".lsf-choices")[k].find_elements("css selector", ".lsf-choice")[j]

    def filter_field(self, group: str):
        found = self.driver.find_elements("css selector", f"input[placeholder$=' {group} labels']")
        return found[0] if found else None

    def toggle(self, k: int, group: str, name: str, effort: Effort) -> None:
        """Click choice `name` of control k as a person would, counting the operations."""
        from selenium.webdriver.common.keys import Keys

        field = self.filter_field(group)
        if not self._visible(k, name) and not self._in_window(field or self.choice(k, name)):
            effort.scrolls += 1  # the group is below the fold of the controls column: scroll to it
            self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", field or self.choice(k, name))
            time.sleep(0.2)
        if not self._visible(k, name) and field is not None:
            self._fresh(lambda: self.filter_field(group).click())
            effort.clicks += 1
            if self._fresh(lambda: self.filter_field(group).get_attribute("value")):
                self._fresh(lambda: self.filter_field(group).send_keys(Keys.CONTROL, "a"))
                self._fresh(lambda: self.filter_field(group).send_keys(Keys.BACKSPACE))
                effort.keys += 3
            for letter in name:
                self._fresh(lambda: self.filter_field(group).send_keys(letter))
                effort.keys += 1
                time.sleep(0.15)
                if self._visible(k, name):
                    break
        if not self._visible(k, name):
            effort.scrolls += 1  # inside its box, or the column
            self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", self.choice(k, name))
            time.sleep(0.2)
        self._fresh(lambda: self.choice(k, name).click())
        effort.clicks += 1
        time.sleep(0.1)

    def reveal(self, k: int, effort: Effort) -> None:
        """Bring control k into view as a person scrolls down the column to it."""
        if self.driver.execute_script(REVEAL, k):
            effort.scrolls += 1
            time.sleep(0.2)

    def see_selected(self, k: int, effort: Effort) -> None:
        """Check mode: a pre-filled choice hidden in its box must be scrolled to, to be checked."""
        for name, on, seen in self.read()[k]:
            if on and not seen:
                effort.scrolls += 1
                self.driver.execute_script("arguments[0].scrollIntoView({block: 'nearest'})", self.choice(k, name))
                time.sleep(0.2)

    @staticmethod
    def _fresh(act, tries: int = 5):
        """Run `act`, finding its element again when React re-rendered it meanwhile."""
        from selenium.common.exceptions import StaleElementReferenceException

        for _ in range(tries - 1):
            try:
                return act()
            except StaleElementReferenceException:
                time.sleep(0.3)
        return act()

    def _visible(self, k: int, name: str) -> bool:
        return any(n == name and seen for n, _, seen in self.read()[k])

    def _in_window(self, element) -> bool:
        return self.driver.execute_script(
            "const r = arguments[0].getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight;", element)

    def submit(self) -> None:
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        ActionChains(self.driver).key_down(Keys.CONTROL).send_keys(Keys.ENTER).key_up(Keys.CONTROL).perform()

    def screenshot(self, path: Path) -> None:
        self.driver.save_screenshot(str(path))

    def close(self) -> None:
        self.driver.quit()


def plan(shown: dict[str, set[str]], want: dict[str, set[str]], single: set[str]) -> list[tuple[str, str]]:
    """The (group, name) clicks that turn the page's selection into the answer: in a
    single-label group one click on the new choice (or on the old one to clear it)."""
    out = []
    for group, names in want.items():
        have = shown.get(group, set())
        if group in single:
            if names != have:
                out.append((group, next(iter(names))) if names else (group, next(iter(have))))
            continue
        out += [(group, n) for n in sorted(have ^ names)]
    return out


def wait_submitted(client, task_id: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get(f"api/tasks/{task_id}/", "reading a task").get("total_annotations", 0) > 0:
            return True
        time.sleep(0.3)
    return False


def run_mode(page: Page, client, ws: Workspace, round_name: str, email: str, answer: dict, current: dict,
             mode: str, shots: Path) -> tuple[Effort, int, int]:
    """Answer every task of annotator `email` in the round on the page. Returns (effort,
    tasks, Submit-button fallbacks)."""
    tax = ws.taxonomy
    groups = list(tax.group_names)
    single = {g.name for g in tax.groups if g.single}
    view = state.load(ReviewStore(ws.ledger), round_name)
    role = next(r for r in view.annotator_roles if view.email(r) == email)
    pid = view.projects[role].ls_project_id
    mine = view.tasks[view.tasks["role"] == role]
    effort, fallbacks = Effort(), 0
    for n, (image_id, task_id) in enumerate(zip(mine["image_id"], mine["ls_task_id"])):
        page.open(pid, int(task_id), shots)
        names = lambda labels: {g: {tax.labels[x].name for x in ids} for g, ids in by_group(labels, tax).items()}  # noqa: E731
        shown, want = page.selected(groups), names(answer[image_id])
        promised = names(current[image_id]) if mode == "check" else {g: set() for g in groups}
        assert {g: shown[g] for g in groups} == {g: promised.get(g, set()) for g in groups}, (mode, image_id, shown)
        if n == 0:
            page.screenshot(shots / f"labeling-{mode}-{Path(str(image_id)).name}-before.png")
        todo = plan(shown, want, single)
        for k, group in enumerate(groups):  # top to bottom, as a person works down the page
            page.reveal(k, effort)
            if mode == "check":
                page.see_selected(k, effort)
            for name in [n for g, n in todo if g == group]:
                page.toggle(k, group, name, effort)
        after = page.selected(groups)
        assert {g: after[g] for g in groups} == {g: want.get(g, set()) for g in groups}, (mode, image_id, after)
        if n == 0:
            page.screenshot(shots / f"labeling-{mode}-{Path(str(image_id)).name}-answered.png")
        page.submit()
        effort.keys += 2
        if not wait_submitted(client, int(task_id)):
            fallbacks += 1
            page.driver.find_element("xpath", "//button[normalize-space()='Submit']").click()
            assert wait_submitted(client, int(task_id)), task_id
    return effort, len(mine), fallbacks


def result(mode: str, e: Effort, n: int) -> ModeResult:
    decide = len(Taxonomy.default().groups) * KLM_DECIDE
    keyed = ((e.clicks + e.scrolls) * KLM_CLICK + e.keys * KLM_KEY) / n + decide
    button = keyed + (KLM_CLICK - 2 * KLM_KEY)  # Submit clicked instead of Ctrl+Enter
    return ModeResult(mode, round(e.clicks / n, 2), round(e.keys / n, 2), round(e.scrolls / n, 2), round(keyed, 1),
                      round((e.clicks + n) / n, 2), round(button, 1))


def clicks_live(data: Path, n: int, seed: int, workdir: Path, root: Path | None = None) -> dict:
    """Blind and check rounds over n images on a real Label Studio (`root`, else one started
    here), answered in headless Chromium; returns per mode the operations per image and
    the answers read back by sync that differ from the answer (0 expected)."""
    tax = Taxonomy.default()
    current, answer = picks(data, n, seed, tax)
    tag = secrets.token_hex(3)
    ws = Workspace.init(workdir / f"ws-clicks-{tag}", command="benchmark")
    started = root is None
    if started:
        root = server.server_dir(ws.root)
        server.start(root, port=server.free_port(), die_with_parent=True)
    page = None
    try:
        client = client_for(root)
        import_truth(ws, data, current)
        me, other = (simulate.annotator(ws, client, simulate.email(f"clicks-{tag}-{k}"), secrets_dir=root)
                     for k in ("annotator", "other"))
        for mode in ("blind", "check"):
            rounds.create_round(ws, split="validation", annotators=[me.email, other.email], image_ids=list(answer),
                                name=f"clicks-{mode}-{tag}", mode=mode, client=client)
        page = Page(client.url, me.email, simulate.password(root, client.url, me.email), workdir / f"chromium-{tag}")
        out = {"data": str(data), "images": n, "screenshots": str(workdir)}
        efforts = {}
        for mode in ("blind", "check"):
            efforts[mode] = run_mode(page, client, ws, f"clicks-{mode}-{tag}", me.email, answer, current, mode, workdir)
            sync.sync_round(ws, f"clicks-{mode}-{tag}", client)
            view = state.load(ReviewStore(ws.ledger), f"clicks-{mode}-{tag}")
            role = next(r for r in view.annotator_roles if view.email(r) == me.email)
            out[f"{mode}_synced_differently"] = sum(view.answers[role].get(i) is None or
                                                    view.answers[role][i].labels != tuple(sorted(a))
                                                    for i, a in answer.items())
        for mode, (e, tasks, fallbacks) in efforts.items():
            out[mode] = asdict(result(mode, e, tasks))
            out[mode]["submit_button_fallbacks"] = fallbacks
        out["check_clicks_vs_blind"] = round(efforts["check"][0].clicks / max(efforts["blind"][0].clicks, 1), 3)
        out["check_clicks_vs_blind_submit_button"] = round(
            (efforts["check"][0].clicks + n) / (efforts["blind"][0].clicks + n), 3)
    finally:
        if page is not None:
            page.close()
        if started:
            server.stop(root)
        ws.close()
    return out
