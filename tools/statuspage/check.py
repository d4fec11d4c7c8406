#!/usr/bin/env python3
"""Checks a node's status page in a real headless browser (Debian's `chromium`).

    check.py URL [--min-peers N] [--min-checkpoints N] [--timeout S] [--screenshot PNG]
                                                      the page at URL (…/status)
             [--metrics URL --dashboard FILE …]       and the dashboard's metric names
    check.py --metrics URL --dashboard FILE           only the metric names
    check.py --self-test                              against tools/statuspage/standin.py
    check.py --csp [--write]                          the page's CSP hashes (--write: into StatusPage.swift)

The page check drives Chromium over the DevTools protocol on a pipe
(--remote-debugging-pipe: no port, no websocket, Python's standard library only). It
loads URL, then passes only if, within --timeout seconds:
  - the document is text/html with status 200;
  - the page goes live (it fetched status.json) and shows numbers for epoch, height and
    round, a node id, chain, leader and state id, at least --min-peers peer rows and
    (with --min-checkpoints) that many checkpoint rows, status ok and no alarm;
  - the height it shows increases later, after at least 3 polls about 2 s apart;
  - nothing went wrong on the way: no console error or warning (CSP violations and
    "Failed to load resource" included), no uncaught exception, no failed request or
    HTTP status >= 400, no request to another origin, no DevTools issue, no dialog, no crash.
Exit status: 0 pass, 1 fail, 2 cannot run (no chromium).

The metrics check fetches /metrics and checks that every metric name in the
dashboard's PromQL expressions (and in each --names-from file) is a series the node
exposes: `_bucket`/`_sum`/`_count` only on histograms, never a bare histogram name, and
that every label the expressions group or match by exists on the metrics they use.
"""

import argparse
import base64
import fcntl
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the work tree
import page  # noqa: E402

REPO = page.REPO


def say(message):
    print(f"statuspage: {message}", flush=True)


# --- Chromium over the DevTools protocol on a pipe ------------------------------------


class BrowserGone(Exception):
    pass


class Browser:
    """Headless Chromium with the DevTools protocol on fds 3 (commands in) and 4 (out),
    messages separated by NUL bytes."""

    FLAGS = [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--remote-debugging-pipe", "--no-first-run", "--no-default-browser-check",
        "--disable-extensions", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-default-apps", "--mute-audio", "--password-store=basic",
        "--disable-features=Translate,MediaRouter,OptimizationHints",
        "--enable-logging=stderr", "--v=0", "--window-size=1280,900",
    ]

    def __init__(self, chromium):
        self.profile = tempfile.mkdtemp(prefix="statuspage-chromium-")
        self.log_path = os.path.join(self.profile, "chromium.log")
        commands_r, commands_w = self._pipe()
        output_r, output_w = self._pipe()
        script = f'exec "$0" "$@" 3<&{commands_r} 4>&{output_w} {commands_r}<&- {output_w}>&-'
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            ["/bin/bash", "-c", script, chromium, *self.FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            pass_fds=(commands_r, output_w), start_new_session=True)
        os.close(commands_r)
        os.close(output_w)
        self.commands = commands_w
        self.output = output_r
        self.next_id = 0
        self.replies = {}
        self.inbox = queue.Queue()
        self.listeners = []
        threading.Thread(target=self._read, daemon=True).start()

    @staticmethod
    def _pipe():
        # Above fd 9, so the child's `3<&N 4>&M` never lands on one of them.
        fds = []
        for fd in os.pipe():
            high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
            os.close(fd)
            fds.append(high)
        return fds

    def _read(self):
        buffer = b""
        while True:
            try:
                chunk = os.read(self.output, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                self.inbox.put(None)
                return
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for message in messages:
                self.inbox.put(json.loads(message))

    def _dispatch(self, message):
        if message is None:
            raise BrowserGone(f"chromium exited; its log:\n{self.log_tail()}")
        if "method" in message:
            for listener in self.listeners:
                listener(message)
            return None
        return message

    def send(self, method, params=None, session=None, timeout=15):
        self.next_id += 1
        request = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            request["sessionId"] = session
        data = json.dumps(request).encode() + b"\0"
        try:
            while data:
                data = data[os.write(self.commands, data):]
        except OSError as error:
            raise BrowserGone(f"chromium's pipe closed ({error}); its log:\n{self.log_tail()}") from error
        deadline = time.monotonic() + timeout
        # A listener may send too (it runs inside this loop): replies to other requests are kept.
        while request["id"] not in self.replies:
            try:
                message = self.inbox.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no answer to {method} in {timeout} s") from None
            reply = self._dispatch(message)
            if reply is not None:
                self.replies[reply.get("id")] = reply
        reply = self.replies.pop(request["id"])
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def pump(self, seconds):
        """Handles events for `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                self._dispatch(self.inbox.get(timeout=left))
            except queue.Empty:
                return

    def log_tail(self, lines=15):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except Exception:  # noqa: BLE001 — it may be gone already
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()  # this process only: the one started above
            self.process.wait()
        for fd in (self.commands, self.output):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


def find_chromium(explicit=None):
    for candidate in [explicit, os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"]:
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def chromium_version(chromium):
    try:
        out = subprocess.run([chromium, "--version"], capture_output=True, text=True, timeout=30).stdout
        return out.strip().splitlines()[-1] if out.strip() else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


# --- The page check --------------------------------------------------------------------

PROBE = r"""(() => {
  const t = (id) => { const e = document.getElementById(id); return e ? e.textContent : null; };
  const shown = (id) => { const e = document.getElementById(id); return !!e && !e.hidden; };
  const line = document.getElementById("spark-line");
  return {
    state: document.body ? document.body.dataset.state || null : null,
    conn: t("conn"), node: t("node-id"), chain: t("chain"), epoch: t("epoch"), height: t("height"),
    round: t("round"), leader: t("leader"), stateId: t("state-id"), syncing: t("syncing"),
    bps: t("bps"), tps: t("tps"), latency: t("latency"),
    peers: document.querySelectorAll("#peers tbody tr.peer").length,
    checkpointRows: shown("cp-on") ? document.querySelectorAll("#checkpoints tbody tr.checkpoint").length : null,
    checkpointStatus: shown("cp-on") ? t("cp-status") : null,
    checkpointsLeft: shown("cp-on") ? t("cp-left") : null, checkpointsOff: shown("cp-off") ? t("cp-off") : null,
    alarm: shown("alarm") ? t("alarm") : null,
    spark: line ? line.getAttribute("points") : null,
    text: document.body ? document.body.textContent : "",
    images: document.images.length, scripts: document.scripts.length,
    embeds: document.querySelectorAll("iframe, object, embed, link[rel=stylesheet]").length,
  };
})()"""

DASH = "—"


class PageRun:
    """One page load in a fresh browser context, with everything that went wrong."""

    def __init__(self, browser, url):
        self.browser = browser
        self.url = url
        self.origin = "{0.scheme}://{0.netloc}".format(urllib.parse.urlsplit(url))
        self.failures = []
        self.notes = []
        self.outage = False  # while True, status.json failing is expected, not a failure
        self.document = None
        self.polls = []  # when status.json was requested (the browser's monotonic clock, s)
        self.good_polls = 0
        self.requests = {}
        self.context = browser.send("Target.createBrowserContext", {"disposeOnDetach": True})["browserContextId"]
        target = browser.send("Target.createTarget", {"url": "about:blank", "browserContextId": self.context})
        self.session = browser.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})["sessionId"]
        browser.listeners.append(self._event)
        for domain in ("Runtime", "Log", "Network", "Page", "Inspector", "Audits"):
            browser.send(f"{domain}.enable", session=self.session)

    def close(self):
        self.browser.listeners.remove(self._event)
        try:
            self.browser.send("Target.disposeBrowserContext", {"browserContextId": self.context})
        except Exception:  # noqa: BLE001
            pass

    def _is_status_json(self, url):
        return urllib.parse.urlsplit(url or "").path.endswith("/status.json")

    def _fail(self, message):
        if message not in self.failures:
            self.failures.append(message)

    def _event(self, message):
        if message.get("sessionId") != self.session:
            return
        method, p = message["method"], message.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            if p.get("type") in ("error", "warning", "assert"):
                self._fail(f"console.{p['type']}: {text}")
            else:
                self.notes.append(f"console.{p.get('type')}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = p.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text")
            self._fail(f"uncaught exception: {text}")
        elif method == "Log.entryAdded":
            entry = p.get("entry", {})
            if entry.get("level") in ("error", "warning"):
                if self.outage and entry.get("source") == "network" and self._is_status_json(entry.get("url")):
                    return
                self._fail(f"console {entry['level']} ({entry.get('source')}): {entry.get('text')} "
                           f"{entry.get('url', '')}")
        elif method == "Network.requestWillBeSent":
            request_url = p.get("request", {}).get("url", "")
            self.requests[p.get("requestId")] = request_url
            parts = urllib.parse.urlsplit(request_url)
            if parts.scheme != "data" and f"{parts.scheme}://{parts.netloc}" != self.origin:
                self._fail(f"request to another origin: {request_url}")
            if self._is_status_json(request_url):
                self.polls.append(p.get("timestamp", time.monotonic()))  # the browser's clock, in seconds
        elif method == "Network.responseReceived":
            response = p.get("response", {})
            if p.get("type") == "Document" and self.document is None:
                self.document = response
            status = response.get("status", 0)
            if self._is_status_json(response.get("url")) and status == 200:
                self.good_polls += 1
            if status >= 400 and not (self.outage and self._is_status_json(response.get("url"))):
                self._fail(f"HTTP {status} for {response.get('url')}")
        elif method == "Network.loadingFailed":
            request_url = self.requests.get(p.get("requestId"), "?")
            if not (self.outage and self._is_status_json(request_url)):
                self._fail(f"request failed: {request_url}: {p.get('errorText')}"
                           + (f" (blocked: {p['blockedReason']})" if p.get("blockedReason") else ""))
        elif method == "Page.javascriptDialogOpening":
            self._fail(f"the page opened a {p.get('type')} dialog: {p.get('message')}")
            try:
                self.browser.send("Page.handleJavaScriptDialog", {"accept": False}, session=self.session)
            except Exception:  # noqa: BLE001 — reported above; the run fails anyway
                pass
        elif method == "Audits.issueAdded":
            issue = p.get("issue", {})
            self._fail(f"DevTools issue {issue.get('code')}: {json.dumps(issue.get('details', {}))[:300]}")
        elif method in ("Inspector.targetCrashed", "Target.targetCrashed"):
            self._fail("the page crashed")

    def navigate(self):
        result = self.browser.send("Page.navigate", {"url": self.url}, session=self.session)
        if result.get("errorText"):
            self._fail(f"navigation failed: {result['errorText']}")

    def probe(self):
        result = self.browser.send(
            "Runtime.evaluate", {"expression": PROBE, "returnByValue": True}, session=self.session)
        return result.get("result", {}).get("value") or {}


def number(text):
    return int(text) if isinstance(text, str) and re.fullmatch(r"\d+", text) else None


def watch_live(run, timeout, min_peers, min_checkpoints=0, log=True):
    """Waits for live values and a later, higher height; returns (ok, last probe)."""
    deadline = time.monotonic() + timeout
    first = None
    seen = {}
    last_report = time.monotonic()
    went_live = False
    while time.monotonic() < deadline:
        run.browser.pump(0.25)
        seen = run.probe()
        height = number(seen.get("height"))
        if seen.get("state") == "live":
            went_live = True
        elif went_live and seen.get("state") in ("unreachable", "error"):
            run._fail(f"the page went {seen.get('state')} after being live: {seen.get('conn')}")
        if run.failures:
            break
        if height is not None and first is None:
            first = height
            if log:
                say(f"live: node {seen.get('node')} chain {seen.get('chain')!r} epoch {seen.get('epoch')} "
                    f"height {height} round {seen.get('round')} peers {seen.get('peers')}")
        complete = (
            seen.get("state") == "live" and first is not None and height is not None and height > first
            and number(seen.get("epoch")) is not None and number(seen.get("round")) is not None
            and all(seen.get(k) not in (None, "", DASH) for k in ("node", "chain", "leader", "stateId"))
            and seen.get("peers", 0) >= min_peers and run.good_polls >= 3
            and (min_checkpoints == 0 or ((seen.get("checkpointRows") or 0) >= min_checkpoints
                                          and seen.get("checkpointStatus") == "ok" and seen.get("alarm") is None)))
        if complete:
            run.browser.pump(0.5)  # late events of the last poll
            if log:
                say(f"height went {first} -> {height} over {run.good_polls} polls; "
                    f"{seen.get('bps')} blocks/s, {seen.get('tps')} tx/s, latency {seen.get('latency')}")
                if seen.get("checkpointRows") is not None:
                    say(f"checkpoints: status {seen.get('checkpointStatus')!r}, {seen.get('checkpointRows')} rows, "
                        f"left {seen.get('checkpointsLeft')!r}, alarm {seen.get('alarm')!r}")
                else:
                    say(f"checkpoints: {seen.get('checkpointsOff')!r}")
            return not run.failures, seen
        if log and time.monotonic() - last_report > 10:
            last_report = time.monotonic()
            say(f"waiting: state {seen.get('state')!r} height {seen.get('height')!r} "
                f"peers {seen.get('peers')} polls {run.good_polls}")
    if not run.failures:
        run._fail(f"not live with a rising height within {timeout} s: state {seen.get('state')!r} "
                  f"({seen.get('conn')!r}), height {seen.get('height')!r}, epoch {seen.get('epoch')!r}, "
                  f"round {seen.get('round')!r}, peers {seen.get('peers')} (want >= {min_peers}), "
                  f"{run.good_polls} good polls, checkpoint rows {seen.get('checkpointRows')} "
                  f"(want >= {min_checkpoints}), checkpoint status {seen.get('checkpointStatus')!r}, "
                  f"alarm {seen.get('alarm')!r}")
    return False, seen


def check_document(run):
    doc = run.document
    if doc is None:
        run._fail("no document response seen")
        return
    if doc.get("status") != 200 or doc.get("mimeType") != "text/html":
        run._fail(f"the page came as HTTP {doc.get('status')} {doc.get('mimeType')}, want 200 text/html")


def check_polling(run):
    gaps = [b - a for a, b in zip(run.polls, run.polls[1:])]
    if gaps:
        mean = sum(gaps) / len(gaps)
        say(f"status.json fetched {len(run.polls)} times, every {mean:.2f} s on average")
        if not 1.5 <= mean <= 6:
            run._fail(f"status.json polled every {mean:.2f} s on average, want about 2 s")


def served_page_notes(url):
    """Fetches the page outside the browser: is it StatusPage.swift's, and does its CSP hold?"""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            html = response.read().decode("utf-8")
            headers = response.headers
    except Exception as error:  # noqa: BLE001 — the browser run reports it properly
        return [], [f"could not fetch {url} outside the browser: {error}"]
    problems = page.csp_problems(html)
    notes = []
    try:
        same = html == page.load_html()
        notes.append("served page is Sources/Node/StatusPage.swift's" if same
                     else "served page differs from Sources/Node/StatusPage.swift (another build?)")
    except (OSError, ValueError):
        pass
    if headers.get("Content-Security-Policy"):
        notes.append(f"CSP header: {headers.get('Content-Security-Policy')}")
    return problems, notes


def check_page(browser, url, timeout, min_peers, screenshot=None, min_checkpoints=0):
    problems, notes = served_page_notes(url)
    for note in notes:
        say(note)
    run = PageRun(browser, url)
    try:
        run.navigate()
        ok, _ = watch_live(run, timeout, min_peers, min_checkpoints)
        check_document(run)
        check_polling(run)
        if screenshot:
            shot = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                                session=run.session)
            with open(screenshot, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
            say(f"screenshot: {screenshot}")
        for problem in problems:
            run._fail(f"page CSP: {problem} (python3 tools/statuspage/check.py --csp --write)")
        return run.failures, run.notes
    finally:
        run.close()


# --- The dashboard's metric names ----------------------------------------------------------

METRIC = re.compile(r"\bsidenode_[A-Za-z0-9_:]*[A-Za-z0-9]")
SCRAPE_LABELS = {"instance", "job"}


def parse_exposition(text):
    types, labels = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            types[name] = kind.strip()
        elif line.strip() and not line.startswith("#"):
            match = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+\S+", line)
            if match:
                names = set(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="', match.group(2) or ""))
                labels.setdefault(match.group(1), set()).update(names)
    return types, labels


def family(name, types):
    if name in types:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and types.get(base) in ("histogram", "summary"):
            return base
    return None


def dashboard_expressions(dashboard):
    """Every PromQL expression of the dashboard: panel targets and query variables."""
    found = []

    def walk(node, where):
        if isinstance(node, dict):
            title = node.get("title") or node.get("name") or where
            for key, value in node.items():
                if key == "expr" and isinstance(value, str):
                    found.append((title, value))
                elif key in ("query", "definition") and isinstance(value, str) and "sidenode_" in value:
                    found.append((title, value))
                else:
                    walk(value, title)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    walk(dashboard, "dashboard")
    return found


def lint_dashboard(dashboard):
    problems = []
    if not isinstance(dashboard.get("schemaVersion"), int) or dashboard["schemaVersion"] < 36:
        problems.append("schemaVersion must be 36 or later (Grafana 10+)")
    variables = dashboard.get("templating", {}).get("list", [])
    if not any(v.get("type") == "datasource" and v.get("query") == "prometheus" for v in variables):
        problems.append("no Prometheus datasource variable")
    ids = []

    def panels(items):
        for p in items:
            yield p
            yield from panels(p.get("panels", []))

    for p in panels(dashboard.get("panels", [])):
        ids.append(p.get("id"))
        if "gridPos" not in p:
            problems.append(f"panel {p.get('title')!r} has no gridPos")
        for target in p.get("targets", []):
            if target.get("datasource", {}).get("uid") != "${datasource}" and \
                    p.get("datasource", {}).get("uid") != "${datasource}":
                problems.append(f"panel {p.get('title')!r}: a target not on ${{datasource}}")
            if not target.get("refId"):
                problems.append(f"panel {p.get('title')!r}: a target without refId")
    if len(ids) != len(set(ids)) or None in ids:
        problems.append("panel ids must be present and unique")
    return problems


def check_names(expressions, types, labels, allow_families=False):
    problems, used = [], set()
    for where, expr in expressions:
        names = set(METRIC.findall(expr))
        available = set(SCRAPE_LABELS)
        for name in sorted(names):
            used.add(name)
            fam = family(name, types)
            if fam is None and name not in labels:
                problems.append(f"{where}: {name} is not exposed")
            elif name not in labels and not (allow_families and types.get(name) in ("histogram", "summary")):
                problems.append(f"{where}: {name} is a {types.get(name)} family, use its _bucket/_sum/_count")
            elif fam != name and not name.endswith(("_bucket", "_sum", "_count")):
                problems.append(f"{where}: {name}: unexpected series of {fam}")
            available |= labels.get(name, set())
            if allow_families and fam in types:
                for suffix in ("_bucket", "_sum", "_count"):
                    available |= labels.get(fam + suffix, set())
        grouped = set()
        for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
            grouped |= {g.strip() for g in group.split(",") if g.strip()}
        for matchers in re.findall(r"\{([^}]*)\}", expr):
            grouped |= set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", matchers))
        for label in sorted(grouped - available):
            if names:
                problems.append(f"{where}: label {label!r} is not on {', '.join(sorted(names))}")
    return problems, used


def check_metrics(metrics_url, dashboard_paths, names_from):
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode("utf-8")
    types, labels = parse_exposition(text)
    say(f"{metrics_url}: {len(types)} metric families, {len(labels)} series names")
    failures, used = [], set()
    for path in dashboard_paths:
        with open(path, encoding="utf-8") as f:
            dashboard = json.load(f)
        failures += [f"{os.path.basename(path)}: {p}" for p in lint_dashboard(dashboard)]
        expressions = dashboard_expressions(dashboard)
        problems, names = check_names(expressions, types, labels)
        failures += [f"{os.path.basename(path)}: {p}" for p in problems]
        used |= names
        say(f"{os.path.basename(path)}: {len(expressions)} expressions use {len(names)} series names")
    for path in names_from:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        problems, names = check_names([(os.path.basename(path), text)], types, labels, allow_families=True)
        failures += [p for p in problems if "label" not in p]  # prose: names only
        used |= names
        say(f"{os.path.basename(path)}: mentions {len(names)} metric names")
    unused = sorted({family(n, types) or n for n in labels if n.startswith("sidenode_")}
                    - {family(n, types) or n for n in used})
    if unused:
        say(f"exposed but not on the dashboard: {', '.join(unused)}")
    return failures


# --- The page's CSP hashes -----------------------------------------------------------------


def csp(write):
    html = page.load_html()
    hashes = page.csp_hashes(html)
    for tag, value in hashes.items():
        print(f"{tag}-src {value}")
    if not write:
        return 0 if not page.csp_problems(html) else 1
    with open(page.SWIFT_SOURCE, encoding="utf-8") as f:
        source = f.read()
    for directive, tag in (("script-src", "script"), ("style-src", "style")):
        source, count = re.subn(rf"{directive} '(?:sha256-[A-Za-z0-9+/=]+|sha256-[A-Z]+)'",
                                f"{directive} {hashes[tag]}", source, count=1)
        if count != 1:
            print(f"no {directive} 'sha256-…' in {page.SWIFT_SOURCE}", file=sys.stderr)
            return 1
    with open(page.SWIFT_SOURCE, "w", encoding="utf-8") as f:
        f.write(source)
    problems = page.csp_problems(page.load_html())
    print("written" if not problems else f"still wrong: {problems}")
    return 0 if not problems else 1


# --- Self-test against the stand-in --------------------------------------------------------


def free_port(lo=31000, hi=31999):
    for port in range(lo, hi + 1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError(f"no free port in {lo}-{hi}")


def wait_state(run, want, seconds):
    deadline = time.monotonic() + seconds
    seen = {}
    while time.monotonic() < deadline:
        run.browser.pump(0.25)
        seen = run.probe()
        if seen.get("state") == want:
            return seen
    run._fail(f"the page did not become {want!r} within {seconds} s: {seen.get('state')!r} {seen.get('conn')!r}")
    return seen


def self_test(browser, port):
    import standin

    results = []

    def case(name, passed, detail=""):
        results.append((name, passed))
        say(f"{'ok  ' if passed else 'FAIL'} {name}{': ' + detail if detail else ''}")

    # 1. Hostile strings and the alarm: live, rising, escaped, no errors; then outages.
    state = standin.StandIn(hostile=True, alarm="coin spent by <b>recovery</b> leaf")
    server = standin.serve(state, port)
    url = f"http://127.0.0.1:{port}/status"
    run = PageRun(browser, url)
    try:
        run.navigate()
        ok, seen = watch_live(run, 30, 3)
        check_document(run)
        check_polling(run)
        case("live values, rising height, no console errors or failed requests", ok and not run.failures,
             "; ".join(run.failures))
        escaped = (standin.HOSTILE in seen.get("text", "") and seen.get("images") == 0
                   and seen.get("scripts") == 1 and seen.get("embeds") == 0)
        case("peer strings shown as text, nothing injected", escaped and not run.failures,
             f"images {seen.get('images')} scripts {seen.get('scripts')}")
        alarm = seen.get("alarm") or ""
        case("checkpoint alarm shown", "coin spent by <b>recovery</b> leaf" in alarm, repr(alarm))
        case("checkpoints listed, low coin flagged",
             seen.get("checkpointRows") == 8 and "low" in (seen.get("checkpointsLeft") or ""),
             f"{seen.get('checkpointRows')} rows, left {seen.get('checkpointsLeft')!r}")
        case("sparkline drawn", len((seen.get("spark") or "").split()) > 1, repr(seen.get("spark"))[:60])

        run.outage = True
        state.mode = "http503"
        seen = wait_state(run, "unreachable", 8)
        case("HTTP 503 shows unreachable", seen.get("state") == "unreachable", repr(seen.get("conn")))
        state.mode = "ok"
        seen = wait_state(run, "live", 8)
        case("recovers to live", seen.get("state") == "live", repr(seen.get("conn")))
        server.shutdown()
        server.server_close()
        seen = wait_state(run, "unreachable", 10)
        case("connection refused shows unreachable", seen.get("state") == "unreachable", repr(seen.get("conn")))
        case("no unexpected errors during the outages", not run.failures, "; ".join(run.failures))
    finally:
        run.close()

    # 1b. The node also serves the page at / and /status/: status.json must resolve from both.
    state = standin.StandIn()
    server = standin.serve(state, port)
    try:
        for path in ("/", "/status/"):
            run = PageRun(browser, f"http://127.0.0.1:{port}{path}")
            try:
                run.navigate()
                seen = wait_state(run, "live", 8)
                case(f"live when loaded from {path}", seen.get("state") == "live" and not run.failures,
                     "; ".join(run.failures))
            finally:
                run.close()
        failures, _ = check_page(browser, url, 30, 3, min_checkpoints=8)
        case("checkpointing on, no alarm: passes with 8 checkpoint rows", not failures, "; ".join(failures))
    finally:
        server.shutdown()
        server.server_close()

    # 2. Checkpointing off, no alarm.
    state = standin.StandIn(checkpointing=False)
    server = standin.serve(state, port)
    try:
        failures, _ = check_page(browser, url, 30, 3)
        run_seen = None
        run = PageRun(browser, url)
        try:
            run.navigate()
            run_seen = wait_state(run, "live", 8)
        finally:
            run.close()
        case("checkpointing off: passes, says so, no alarm",
             not failures and "off" in (run_seen.get("checkpointsOff") or "") and run_seen.get("alarm") is None,
             "; ".join(failures))
    finally:
        server.shutdown()
        server.server_close()

    # 3. The check must fail when status.json is missing.
    state = standin.StandIn()
    state.mode = "json404"
    server = standin.serve(state, port)
    try:
        failures, _ = check_page(browser, url, 8, 0)
        case("a 404 status.json fails the check", any("HTTP 404" in f for f in failures), "; ".join(failures)[:200])
    finally:
        server.shutdown()
        server.server_close()

    # 4. The check must fail when the page's script is blocked (stale CSP hash).
    state = standin.StandIn()
    state.html = state.html.replace('"use strict";', '"use strict"; /* edited */', 1)
    server = standin.serve(state, port)
    try:
        failures, _ = check_page(browser, url, 8, 0)
        case("a script blocked by the CSP fails the check",
             any("Content Security Policy" in f for f in failures), "; ".join(failures)[:200])
    finally:
        server.shutdown()
        server.server_close()

    # 5. The check must fail on a console warning and on an uncaught exception (the page's
    #    own script with both added, its CSP hash updated so that it runs).
    state = standin.StandIn()
    html = state.html.replace('"use strict";', '"use strict"; console.warn("probe warning"); '
                              'setTimeout(() => { throw new Error("probe exception"); }, 100);', 1)
    old_hash, new_hash = page.csp_hashes(state.html)["script"], page.csp_hashes(html)["script"]
    state.html = html.replace(old_hash, new_hash, 1)
    server = standin.serve(state, port)
    try:
        failures, _ = check_page(browser, url, 8, 0)
        case("a console warning and an uncaught exception fail the check",
             any("console.warning: probe warning" in f for f in failures)
             and any("probe exception" in f for f in failures), "; ".join(failures)[:300])
    finally:
        server.shutdown()
        server.server_close()

    # 6. Metric names: the dashboard against the stand-in's /metrics (MetricsServer's names),
    #    and a /metrics missing one of them must fail.
    state = standin.StandIn()
    server = standin.serve(state, port)
    dashboard = os.path.join(REPO, "docs", "grafana", "sidenode-dashboard.json")
    doc = os.path.join(REPO, "docs", "observability.md")
    try:
        failures = check_metrics(f"http://127.0.0.1:{port}/metrics", [dashboard], [doc])
        case("dashboard and docs name only exposed metrics", not failures, "; ".join(failures))
    finally:
        server.shutdown()
        server.server_close()
    original = standin.METRICS
    standin.METRICS = "\n".join(line for line in original.splitlines() if "commit_latency" not in line) + "\n"
    server = standin.serve(standin.StandIn(), port)
    try:
        failures = check_metrics(f"http://127.0.0.1:{port}/metrics", [dashboard], [])
        case("a missing metric fails the metrics check",
             any("commit_latency_seconds_bucket is not exposed" in f for f in failures), "; ".join(failures)[:200])
    finally:
        standin.METRICS = original
        server.shutdown()
        server.server_close()

    failed = [name for name, passed in results if not passed]
    return [f"self-test case failed: {name}" for name in failed]


# --- Main ---------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", nargs="?", help="the status page, e.g. http://127.0.0.1:9100/status")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for a rising height (60)")
    parser.add_argument("--min-peers", type=int, default=0, help="peer rows the page must show (0)")
    parser.add_argument("--min-checkpoints", type=int, default=0, help="checkpoint rows the page must show, "
                        "with status ok and no alarm (0)")
    parser.add_argument("--metrics", help="a node's /metrics URL: check the dashboard's metric names against it")
    parser.add_argument("--dashboard", action="append", default=[], help="dashboard JSON (repeatable)")
    parser.add_argument("--names-from", action="append", default=[], help="a text file whose sidenode_* names "
                        "must exist too (repeatable)")
    parser.add_argument("--screenshot", metavar="PNG", help="save the page as it was when the check ended")
    parser.add_argument("--chromium", help="the browser (default: chromium on PATH, or $CHROMIUM)")
    parser.add_argument("--self-test", action="store_true", help="check the page and this checker on a stand-in")
    parser.add_argument("--port", type=int, help="the stand-in's port for --self-test (default: free in 31000-31999)")
    parser.add_argument("--csp", action="store_true", help="print the page's CSP hashes")
    parser.add_argument("--write", action="store_true", help="with --csp: write them into StatusPage.swift")
    args = parser.parse_args()

    if args.csp:
        return csp(args.write)
    if not (args.url or args.self_test or args.metrics):
        parser.error("give a URL, --metrics, or --self-test")

    failures = []
    if args.metrics:
        dashboards = args.dashboard or [os.path.join(REPO, "docs", "grafana", "sidenode-dashboard.json")]
        failures += check_metrics(args.metrics, dashboards, args.names_from)
    if args.url or args.self_test:
        chromium = find_chromium(args.chromium)
        if not chromium:
            say("no chromium on PATH (apt-get install chromium; scripts/lib/deps.sh installs it)")
            return 2
        say(f"{chromium_version(chromium)}, headless, DevTools protocol on a pipe")
        problems = page.csp_problems(page.load_html())
        if problems and args.self_test:
            failures += [f"StatusPage.swift CSP: {p} (check.py --csp --write)" for p in problems]
        browser = Browser(chromium)
        started = time.monotonic()
        try:
            if args.self_test:
                failures += self_test(browser, args.port or free_port())
            if args.url:
                found, notes = check_page(browser, args.url, args.timeout, args.min_peers, args.screenshot,
                                          args.min_checkpoints)
                failures += found
                for note in notes:
                    say(f"note: {note}")
        except (BrowserGone, TimeoutError, RuntimeError) as error:
            failures.append(f"browser: {error}")
        finally:
            browser.close()
        say(f"browser part took {time.monotonic() - started:.1f} s")
    for failure in failures:
        say(f"FAIL: {failure}")
    say("PASS" if not failures else f"{len(failures)} problem(s)")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
