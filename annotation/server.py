"""The embedded Label Studio: start it in the background for a workspace, find it, stop it.

Label Studio 1.23 facts this module relies on (verified on this machine):
- `LABEL_STUDIO_BASE_DATA_DIR` must be set or it writes to the home folder; the first
  admin comes from `LABEL_STUDIO_USERNAME/PASSWORD/USER_TOKEN`, and legacy API tokens
  (`LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN`) only take effect when the organisation is
  created, i.e. on the very first start of a data dir.
- Sentry, analytics and a PyPI version check are on by default; we switch all three off
  so the server never calls out.
- When its port is busy it silently moves to the next free one, so the port is read back
  from its log line `Starting development server at http://HOST:PORT/` and the server is
  asked who we are with our token before it is trusted.
- `GET /health/` answers once it serves: about 25 s on a first start (migrations), 3 s
  after, more on a loaded machine.

State (URL, PID, token, admin password) is written to `<workspace>/labelstudio/server.json`
with mode 0600; the data dir (Label Studio's SQLite, media) sits next to it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from ..errors import IfaError
from ..progress import SILENT, Progress

DIR_NAME = "labelstudio"
STATE_FILE = "server.json"
LOG_FILE = "server.log"
LINKS_DIR = "files"  # the document root: links to round images (annotation/files.py)
ADMIN_EMAIL = "admin@ifa.local"
DEFAULT_PORT = 8080
HOST = "127.0.0.1"
# A first start runs Label Studio's migrations: ~25 s quiet, over a minute on a busy
# 2-core machine; IFA_LS_START_TIMEOUT raises it further.
START_TIMEOUT_S = float(os.environ.get("IFA_LS_START_TIMEOUT", "240"))
STOP_TIMEOUT_S = 15.0
_STARTED = re.compile(r"Starting development server at https?://[^:/]+:(\d+)/")


@dataclass
class ServerState:
    """What ifa knows about an embedded server. `pid` is the server's process (and process
    group); `token` is the admin's legacy API token."""

    url: str
    port: int
    pid: int
    token: str
    admin_email: str
    admin_password: str
    data_dir: str
    log: str
    started: str
    document_root: str = ""  # what it may serve from (annotation/files.py); empty: an older ifa started it

    def public(self) -> dict:
        """The state without secrets, for printing."""
        d = asdict(self)
        d.pop("token")
        d.pop("admin_password")
        return d


def server_dir(workspace_root: Path) -> Path:
    return Path(workspace_root) / DIR_NAME


def _state_path(root: Path) -> Path:
    return Path(root) / STATE_FILE


def _write_private(path: Path, data: dict) -> None:
    """Write JSON readable only by the owner (the file holds the admin token and password)."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def read_state(root: Path) -> ServerState | None:
    """The recorded state of the embedded server under `root` (alive or not), or None."""
    path = _state_path(root)
    if not path.exists():
        return None
    try:
        return ServerState(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None


def _credentials(root: Path) -> tuple[str, str]:
    """The admin's token and password: made once per data dir, reused on every start
    (Label Studio keeps the first admin it was given)."""
    old = read_state(root)
    if old is not None:
        return old.token, old.admin_password
    return secrets.token_hex(20), secrets.token_urlsafe(18)


def _pid_is_server(pid: int, data_dir: str | None = None) -> bool:
    """True when `pid` is alive and is a Label Studio process (a recycled PID is not)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        if "label_studio" not in args and "label-studio" not in args:
            return False
        return data_dir is None or data_dir in args
    return True


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex((HOST, port)) != 0


def free_port() -> int:
    """A port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def server_env(data_dir: Path, token: str, password: str, document_root: Path | None = None) -> dict[str, str]:
    """The environment the embedded server runs with: data under `data_dir`, our admin,
    legacy tokens on, nothing sent off the machine, local files served only from
    `document_root` (default: the links folder beside `data_dir`)."""
    env = dict(os.environ)
    env.update({
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_USERNAME": ADMIN_EMAIL,
        "LABEL_STUDIO_PASSWORD": password,
        "LABEL_STUDIO_USER_TOKEN": token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "COLLECT_ANALYTICS": "false",
        "LATEST_VERSION_CHECK": "false",
        "LOCAL_FILES_SERVING_ENABLED": "true",
        # Only links to round images live here (annotation/files.py), never a real folder.
        "LOCAL_FILES_DOCUMENT_ROOT": str(document_root or Path(data_dir).parent / LINKS_DIR),
        "PYTHONUNBUFFERED": "1",
    })
    env.pop("DJANGO_DB", None)  # the embedded server is SQLite, whatever the shell says
    return env


def running(root: Path, check_health: bool = True) -> ServerState | None:
    """The embedded server's state if its process is alive (and answers health), else None."""
    state = read_state(root)
    if state is None or not _pid_is_server(state.pid, state.data_dir):
        return None
    if check_health and not _healthy(state.url, timeout=5):
        return None
    return state


def _healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(f"{url}/health/", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def _whoami(url: str, token: str) -> str | None:
    try:
        r = httpx.get(f"{url}/api/current-user/whoami", headers={"Authorization": f"Token {token}"}, timeout=10)
    except httpx.HTTPError:
        return None
    return r.json().get("email") if r.status_code == 200 else None


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGKILL it when its parent dies, so a test
    run or demo that crashes cannot leave a server behind."""
    import ctypes
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except OSError:
        pass


def start(root: Path, port: int | None = None, timeout: float = START_TIMEOUT_S,
          progress: Progress = SILENT, die_with_parent: bool = False) -> tuple[ServerState, bool]:
    """Start Label Studio for the folder `root` (normally `<workspace>/labelstudio`) in
    the background, bound to 127.0.0.1, and wait until it answers.

    port: None takes 8080, or any free port when 8080 is busy; an explicit port must be
    free. die_with_parent: the server is killed when this process ends (tests, demo);
    otherwise it keeps running in the background. Returns (state, started): started is
    False when it was already running.
    Raises IfaError when the port is busy, the process dies, or it does not answer within
    `timeout` seconds (the process is then stopped; its log is quoted)."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    docroot = root / LINKS_DIR
    docroot.mkdir(exist_ok=True)
    alive = running(root)
    if alive is not None and alive.document_root == str(docroot):
        return alive, False
    if alive is not None:
        _terminate(alive.pid)  # started by an older ifa, serving every folder: restart it narrowed
    stale = read_state(root)
    if stale is not None and _pid_is_server(stale.pid, stale.data_dir):
        _terminate(stale.pid)  # alive but not answering: a hung server from an earlier run
    if port is None:
        port = DEFAULT_PORT if _port_free(DEFAULT_PORT) else free_port()
    elif not _port_free(port):
        raise IfaError(
            f"Port {port} on {HOST} is already in use (another program or another Label Studio). "
            "Pick a free one with --port, or leave --port out to get one."
        )
    data_dir = root / "data"
    data_dir.mkdir(exist_ok=True)
    token, password = _credentials(root)
    log_path = root / LOG_FILE
    log = open(log_path, "ab")
    log.write(f"\n---- ifa starting Label Studio on {HOST}:{port} at {time.ctime()} ----\n".encode())
    log.flush()
    offset = log_path.stat().st_size  # read the port only from this start's lines
    cmd = [sys.executable, "-m", "label_studio.server", "start", "--no-browser", "--internal-host", HOST,
           "--port", str(port), "--data-dir", str(data_dir)]
    # start_new_session: the server outlives this command and a Ctrl-C in the terminal;
    # it is stopped by PID (its process group) with `ifa review serve --stop`.
    proc = subprocess.Popen(cmd, env=server_env(data_dir, token, password, docroot), stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=root,
                            preexec_fn=_die_with_parent if die_with_parent and sys.platform == "linux" else None)
    log.close()
    state = ServerState(url=f"http://{HOST}:{port}", port=port, pid=proc.pid, token=token, admin_email=ADMIN_EMAIL,
                        admin_password=password, data_dir=str(data_dir), log=str(log_path),
                        started=time.strftime("%Y-%m-%dT%H:%M:%S%z"), document_root=str(docroot))
    _write_private(_state_path(root), asdict(state))
    try:
        _wait_ready(proc, state, root, log_path, offset, token, data_dir, timeout, progress)
    except BaseException:
        # Ctrl-C or a failed start: a half-started server must not linger in the background.
        _terminate(proc.pid)
        raise
    return state, True


def _wait_ready(proc: subprocess.Popen, state: ServerState, root: Path, log_path: Path, offset: int, token: str,
                data_dir: Path, timeout: float, progress: Progress) -> None:
    deadline = time.monotonic() + timeout
    actual = None
    with progress.task("starting Label Studio (first start takes ~30-60 s)") as task:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise IfaError(f"Label Studio exited (code {proc.returncode}) while starting. Its log ({log_path}) ends:\n"
                               f"{_log_tail(log_path)}")
            if actual is None:
                with open(log_path, "rb") as fh:
                    fh.seek(offset)
                    m = _STARTED.search(fh.read().decode(errors="replace"))
                actual = int(m.group(1)) if m else None
                if actual is not None and actual != state.port:
                    # It moved because the port was taken between our check and its bind.
                    state.port, state.url = actual, f"http://{HOST}:{actual}"
                    _write_private(_state_path(root), asdict(state))
            if actual is not None and _healthy(state.url):
                break
            task.advance(0)
            time.sleep(0.5)
        else:
            raise IfaError(f"Label Studio did not answer on {state.url} within {timeout:.0f} s; it was stopped. "
                           f"Its log ({log_path}) ends:\n{_log_tail(log_path)}\n"
                           "On a busy machine raise IFA_LS_START_TIMEOUT (seconds) and try again.")
    who = _whoami(state.url, token)
    if who != ADMIN_EMAIL:
        raise IfaError(f"The server on {state.url} does not accept ifa's token (it answered as {who!r}); "
                       f"it was stopped. Its data dir {data_dir} may belong to another setup: move it away and retry.")


def _terminate(pid: int, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left after `timeout`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        end = time.monotonic() + (timeout if sig == signal.SIGTERM else 5)
        while time.monotonic() < end:
            try:
                # Reap it when it is our child; otherwise just probe.
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    return
            except ChildProcessError:
                pass
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def stop(root: Path) -> ServerState | None:
    """Stop the embedded server under `root`; returns its state, or None when none was
    running. Leaves its data (projects, annotations) in place for the next start."""
    state = read_state(Path(root))
    if state is None or not _pid_is_server(state.pid, state.data_dir):
        return None
    _terminate(state.pid)
    return state


def wait(state: ServerState) -> None:
    """Block until the server process exits (for `serve --foreground`)."""
    while _pid_is_server(state.pid, state.data_dir):
        time.sleep(1)


def reset_password(root: Path, email: str, password: str) -> None:
    """Set a user's password on the embedded server (Label Studio has no API for it;
    `label-studio reset_password` runs on the server host, ~10 s). Raises IfaError."""
    state = read_state(Path(root))
    if state is None:
        raise IfaError("The embedded Label Studio was never started here; run `ifa review serve` first.")
    # The password goes through stdin, never argv (anyone can read /proc/*/cmdline): without
    # --password the command asks getpass, which reads stdin when there is no terminal,
    # and a new session has none.
    cmd = [sys.executable, "-m", "label_studio.server", "reset_password", "--username", email,
           "--data-dir", state.data_dir]
    env = server_env(Path(state.data_dir), state.token, state.admin_password)
    out = subprocess.run(cmd, env=env, input=password + "\n", capture_output=True, text=True, timeout=300,
                         start_new_session=True)
    text = out.stdout + out.stderr
    if "successfully changed" not in text and "same as current" not in text:
        raise IfaError(f"Could not set the password of {email}: {text.strip().splitlines()[-1] if text.strip() else out.returncode}")
