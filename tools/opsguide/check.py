#!/usr/bin/env python3
"""Runs docs/operations.md offline: the deployment guide's marked shell blocks, in order,
on simulated machines.

Each machine (alice, bob, carol, dave, erin) is a scratch directory with its own HOME; the
guide's absolute paths /etc/p2pnode, /var/lib/p2pnode and /var/backups/p2pnode are mapped
into it and `p2pnode` comes from --build-dir. The `opsguide:` comments in the guide say
where each block runs, which files move between machines, and when the systemd unit
(docs/deploy/p2pnode.service) starts or stops a node: the checker then runs the unit's
ExecStart itself, on loopback, and stops it with the unit's KillSignal within its
TimeoutStopSec. The top of docs/operations.md documents the directives.

Besides running the blocks it checks:
  - the unit: `systemd-analyze verify` (when systemd-analyze exists) with ExecStart
    pointed at the build, and the hardening keys the guide promises;
  - every `p2pnode …` command in every block of the guide (online ones too): each
    subcommand and --flag must appear in that subcommand's --help;
  - every `p2pnode admin METHOD` against the methods docs/admin-api.md documents;
  - every `sidenode_…` metric named in the guide and in docs/deploy/p2pnode-alerts.yml
    against a running node's /metrics;
  - that the chain commits and every node agrees on the committed blocks, that an upgraded
    (restarted) node and a restored one come back with their node id and catch up, that
    the new validator joins the set, and that each node stops cleanly on SIGTERM.

Usage: tools/opsguide/check.py --build-dir .build/debug [--base-port P] [--metrics-base-port M]
       [--keep] [--verbose]
Exit status 0 when everything passed; the last line says so.
"""

import argparse
import glob
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "operations.md"
UNIT = REPO / "docs" / "deploy" / "p2pnode.service"
ALERTS = REPO / "docs" / "deploy" / "p2pnode-alerts.yml"
ADMIN_API = REPO / "docs" / "admin-api.md"

MACHINES = ["alice", "bob", "carol", "dave", "erin"]
GROUPS = {"validators": MACHINES[:4], "coordinator": ["alice"], "all": MACHINES}
SETTINGS = ["NAME", "PUBLIC_HOST", "P2P_PORT", "METRICS_PORT"]
MAPPED = ["/etc/p2pnode", "/var/lib/p2pnode", "/var/backups/p2pnode"]
BINARY_PATH = "/usr/local/bin/p2pnode"
DATA = "/var/lib/p2pnode"
UNIT_KEYS = {
    "User": None, "Group": None, "StateDirectory": "p2pnode", "NoNewPrivileges": "yes",
    "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "SystemCallFilter": "@system-service",
    "LimitNOFILE": None, "Restart": "on-failure", "KillSignal": "SIGTERM", "TimeoutStopSec": None,
    "ExecStart": None,
}
BLOCK_TIMEOUT = 180


class CheckFailed(Exception):
    pass


class Terminated(Exception):
    pass


def log(message):
    print(message, flush=True)


# ---------------------------------------------------------------- the guide


class Step:
    """One `opsguide:` directive, with the shell block after it (if any)."""

    def __init__(self, line, directives, block):
        self.line = line
        self.d = directives
        self.block = block

    def __repr__(self):
        return f"line {self.line} {self.d}"


def parse_directives(text, line):
    out = {}
    for word in text.split():
        key, _, value = word.partition("=")
        if not key:
            raise CheckFailed(f"docs/operations.md:{line}: empty directive in '{text}'")
        out[key] = value
    known = {"on", "id", "repeat", "settings", "send", "to", "service", "simulate", "wait"}
    unknown = set(out) - known
    if unknown:
        raise CheckFailed(f"docs/operations.md:{line}: unknown directive {sorted(unknown)}")
    return out


def parse_guide(path):
    """The directives in order, and every fenced block (language, first line, text)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    steps, blocks = [], []
    pending = None  # a directive waiting for its block
    i = 0
    in_comment = False
    while i < len(lines):
        raw = lines[i]
        stripped = raw.strip()
        if in_comment:
            if "-->" in stripped:
                in_comment = False
            i += 1
            continue
        m = re.fullmatch(r"<!--\s*opsguide:(.*?)-->", stripped)
        if m:
            if pending is not None:
                steps.append(pending)
            pending = Step(i + 1, parse_directives(m.group(1), i + 1), None)
            i += 1
            continue
        if stripped.startswith("<!--") and "-->" not in stripped:
            in_comment = True
            i += 1
            continue
        fence = re.match(r"^(```+|~~~+)\s*(\S*)", stripped)
        if fence:
            marker, lang = fence.group(1), fence.group(2)
            start = i + 1
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith(marker):
                j += 1
            text = "\n".join(lines[i + 1 : j]) + "\n"
            blocks.append((lang, start, text))
            if pending is not None:
                pending.block = text
                steps.append(pending)
                pending = None
            i = j + 1
            continue
        if pending is not None and stripped:
            steps.append(pending)
            pending = None
        i += 1
    if pending is not None:
        steps.append(pending)
    return steps, blocks


def machines_of(spec, line):
    names = []
    for part in spec.split(","):
        part = part.strip()
        if part in GROUPS:
            names += GROUPS[part]
        elif part in MACHINES:
            names.append(part)
        else:
            raise CheckFailed(f"docs/operations.md:{line}: unknown machine or group '{part}'")
    return list(dict.fromkeys(names))


# ---------------------------------------------------------------- machines and nodes


class Machine:
    def __init__(self, name, index, root, build_dir, port, metrics_port):
        self.name = name
        self.index = index
        self.root = root
        self.home = root / "root-home"
        self.cwd = self.home
        self.port = port
        self.metrics_port = metrics_port
        self.process = None
        self.journal = root / "journal.log"
        self.node_id = None
        self.home.mkdir(parents=True)
        self.env = {
            "HOME": str(self.home),
            "PATH": f"{build_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "TMPDIR": str(root / "tmp"),
            "USER": "root",
        }
        (root / "tmp").mkdir()

    def settings(self):
        return {"NAME": self.name, "PUBLIC_HOST": "127.0.0.1", "P2P_PORT": str(self.port),
                "METRICS_PORT": str(self.metrics_port)}

    def map(self, text):
        for path in MAPPED:
            text = text.replace(path, str(self.root) + path)
        return text

    @property
    def data(self):
        return Path(self.map(DATA))

    @property
    def socket(self):
        return self.data / "admin.sock"

    def admin(self, method, params=None, timeout=5):
        request = {"jsonrpc": "2.0", "id": 1, "method": method}
        if params is not None:
            request["params"] = params
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.socket))
            s.sendall((json.dumps(request) + "\n").encode())
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        reply = json.loads(data)
        if "error" in reply:
            raise CheckFailed(f"{self.name}: {method}: {reply['error']}")
        return reply["result"]

    def journal_tail(self, n=15):
        try:
            return "\n".join(self.journal.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "(no output)"


def parse_unit(path):
    sections, current = {}, None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith(";"):
            continue
        m = re.fullmatch(r"\[(.+)\]", line)
        if m:
            current = sections.setdefault(m.group(1), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value):
    m = re.fullmatch(r"(\d+)\s*(s|sec|min|m)?", value)
    if not m:
        raise CheckFailed(f"cannot read the duration '{value}'")
    return int(m.group(1)) * (60 if m.group(2) in ("min", "m") else 1)


def port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the node binds: TIME_WAIT is no obstacle
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


class Checker:
    def __init__(self, args):
        self.args = args
        self.build_dir = Path(args.build_dir).resolve()
        self.binary = self.build_dir / "p2pnode"
        if not os.access(self.binary, os.X_OK):
            raise CheckFailed(f"no p2pnode in {self.build_dir}")
        busy = [p for p in [args.base_port + i for i in range(len(MACHINES))]
                + [args.metrics_base_port + i for i in range(len(MACHINES))] if not port_free(p)]
        if busy:
            raise CheckFailed(f"ports in use: {busy}; pick others with --base-port/--metrics-base-port")
        self.scratch = Path(tempfile.mkdtemp(prefix="opsguide-", dir=args.scratch))
        self.machines = {}
        for i, name in enumerate(MACHINES):
            self.machines[name] = Machine(
                name, i, self.scratch / name, self.build_dir, args.base_port + i, args.metrics_base_port + i)
        self.unit = parse_unit(UNIT)
        self.blocks_by_id = {}
        self.counts = {"blocks": 0, "transfers": 0, "services": 0, "waits": 0}
        self.help_cache = {}

    # ---------------------------------------------------------- running blocks

    def run_block(self, machine, text, where):
        script = ["set -euo pipefail"]
        script += [f"{k}={shlex.quote(v)}" for k, v in machine.settings().items()]
        script.append(machine.map(text))
        cwd_file = machine.root / ".cwd"
        script.append(f"pwd > {shlex.quote(str(cwd_file))}")
        path = self.scratch / "blocks" / f"{self.counts['blocks']:03d}-{machine.name}.sh"
        path.parent.mkdir(exist_ok=True)
        path.write_text("\n".join(script) + "\n")
        started = time.monotonic()
        try:
            result = subprocess.run(
                ["bash", "--noprofile", "--norc", str(path)], cwd=machine.cwd, env=machine.env,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                timeout=BLOCK_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise CheckFailed(f"[{machine.name}] {where}: still running after {BLOCK_TIMEOUT} s")
        output = result.stdout.decode(errors="replace")
        self.counts["blocks"] += 1
        log(f"[{machine.name}] {where}: exit {result.returncode} ({time.monotonic() - started:.1f} s)")
        if self.args.verbose or result.returncode != 0:
            for line in output.rstrip("\n").splitlines():
                log(f"    {line}")
        if result.returncode != 0:
            raise CheckFailed(f"[{machine.name}] {where} failed (script {path})")
        machine.cwd = Path(cwd_file.read_text().strip())

    def check_offline_text(self, step):
        text = step.block
        if re.search(r"^\s*(sudo|systemctl|useradd|chown|ufw|gpg|shred|journalctl)\b", text, re.M):
            raise CheckFailed(f"docs/operations.md:{step.line}: an offline block changes the system or needs a person")
        mapped = text
        for path in MAPPED:
            mapped = mapped.replace(path, "")
        stray = re.search(r"(?<![\w.~$-])/(etc|var|usr|opt|srv|root|home|run)/", mapped)
        if stray:
            raise CheckFailed(f"docs/operations.md:{step.line}: an offline block names a system path the checker does not map: {stray.group(0)}…")

    # ---------------------------------------------------------- the service

    def exec_start(self, machine):
        service = self.unit["Service"]
        (line,) = service["ExecStart"]
        argv = shlex.split(machine.map(line))
        if argv[0] != BINARY_PATH:
            raise CheckFailed(f"ExecStart runs {argv[0]}, the guide installs {BINARY_PATH}")
        return [str(self.binary)] + argv[1:]

    def start(self, machine):
        if machine.process is not None:
            raise CheckFailed(f"[{machine.name}] start: the node already runs")
        argv = self.exec_start(machine)
        env = dict(machine.env)
        env["HOME"] = str(machine.data)  # the p2pnode user's home
        journal = open(machine.journal, "ab")
        machine.process = subprocess.Popen(
            argv, cwd="/", env=env, stdin=subprocess.DEVNULL, stdout=journal, stderr=subprocess.STDOUT,
            start_new_session=True)
        journal.close()
        deadline = time.monotonic() + 30
        while True:
            if machine.process.poll() is not None:
                code = machine.process.returncode
                machine.process = None
                raise CheckFailed(f"[{machine.name}] the node exited at start ({code}):\n{machine.journal_tail()}")
            try:
                info = machine.admin("getinfo")
                break
            except (OSError, ValueError):
                if time.monotonic() > deadline:
                    raise CheckFailed(f"[{machine.name}] no admin socket after 30 s:\n{machine.journal_tail()}")
                time.sleep(0.2)
        if machine.node_id is None:
            machine.node_id = info["node_id"]
        elif machine.node_id != info["node_id"]:
            raise CheckFailed(f"[{machine.name}] came back as {info['node_id']}, was {machine.node_id}")
        log(f"[{machine.name}] started {' '.join(shlex.quote(a) for a in argv)} (pid {machine.process.pid}, node {info['node_id'][:16]}…)")

    def stop(self, machine):
        process = machine.process
        if process is None:
            raise CheckFailed(f"[{machine.name}] stop: the node does not run")
        service = self.unit["Service"]
        signame = service.get("KillSignal", ["SIGTERM"])[-1]
        limit = seconds(service.get("TimeoutStopSec", ["90"])[-1])
        started = time.monotonic()
        process.send_signal(getattr(signal, signame))
        try:
            code = process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            machine.process = None
            raise CheckFailed(f"[{machine.name}] did not stop within TimeoutStopSec={limit}:\n{machine.journal_tail()}")
        machine.process = None
        took = time.monotonic() - started
        if code != 0:
            raise CheckFailed(f"[{machine.name}] exited with status {code} on {signame}:\n{machine.journal_tail()}")
        if machine.socket.exists():
            raise CheckFailed(f"[{machine.name}] left admin.sock behind after {signame}")
        log(f"[{machine.name}] stopped by {signame} in {took:.1f} s, exit status 0, admin.sock removed")

    def crash(self, machine):
        if machine.process is not None:
            machine.process.kill()
            machine.process.wait()
            machine.process = None

    # ---------------------------------------------------------- waiting

    def running(self):
        return [m for m in self.machines.values() if m.process is not None]

    def wait_until(self, what, condition, timeout=120):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            for m in self.running():
                if m.process.poll() is not None:
                    raise CheckFailed(f"[{m.name}] the node exited ({m.process.returncode}):\n{m.journal_tail()}")
            try:
                done, last = condition()
                if done:
                    return last
            except (OSError, ValueError, CheckFailed) as error:
                last = str(error)
            time.sleep(0.5)
        raise CheckFailed(f"timed out waiting for {what}; last: {last}")

    def wait_commits(self):
        nodes = self.running()

        def condition():
            statuses = {m.name: m.admin("getstatus") for m in nodes}
            low = min(s["committed_height"] for s in statuses.values())
            if low < 5:
                return False, {k: v["committed_height"] for k, v in statuses.items()}
            ids = {m.name: m.admin("getblock", {"height": low})["block_id"] for m in nodes}
            if len(set(ids.values())) != 1:
                raise CheckFailed(f"nodes disagree on block {low}: {ids}")
            return True, f"all {len(nodes)} nodes committed height {low} with block {next(iter(ids.values()))[:16]}…"

        self.counts["waits"] += 1
        log(f"    wait: {self.wait_until('commits', condition)}")

    def wait_synced(self, names):
        others = [m for m in self.running() if m.name not in names]
        target = max(m.admin("getstatus")["committed_height"] for m in others) + 3

        def condition():
            heights = {}
            for name in names:
                s = self.machines[name].admin("getstatus")
                heights[name] = s["committed_height"]
                if s["committed_height"] < target or s["syncing"]:
                    return False, heights
            # and the others agree with it at its height
            low = min(heights.values())
            ids = {m.name: m.admin("getblock", {"height": low})["block_id"] for m in self.running()}
            if len(set(ids.values())) != 1:
                raise CheckFailed(f"nodes disagree on block {low}: {ids}")
            # A node the set names must vote again.
            for name in names:
                s = self.machines[name].admin("getstatus")
                if self.machines[name].node_id in s["validators"] and not s["validator"]:
                    return False, f"{name} caught up but does not vote"
            return True, f"{', '.join(names)} at height {low} (target {target}), same block on every node"

        self.counts["waits"] += 1
        log(f"    wait: {self.wait_until('catch-up', condition)}")

    def wait_epoch(self, epoch, names):
        def condition():
            epochs = {m.name: m.admin("getstatus")["epoch"] for m in self.running()}
            return all(e >= epoch for e in epochs.values()), f"epochs {epochs}"

        self.counts["waits"] += 1
        log(f"    wait: {self.wait_until(f'epoch {epoch}', condition)}")
        # The guide says the node it waits for votes in the new epoch.
        for name in names:
            status = self.machines[name].admin("getstatus")
            if not status["validator"]:
                raise CheckFailed(f"[{name}] is not a validator in epoch {status['epoch']}")
            log(f"    [{name}] is one of the {len(status['validators'])} validators of epoch {status['epoch']}")

    # ---------------------------------------------------------- the steps

    def run_steps(self, steps):
        settings = [s for s in steps if "settings" in s.d]
        if len(settings) != 1 or not settings[0].block:
            raise CheckFailed("docs/operations.md needs exactly one settings block")
        names = re.findall(r"^([A-Z_][A-Z0-9_]*)=", settings[0].block, re.M)
        if names != SETTINGS:
            raise CheckFailed(f"the settings block defines {names}; the checker provides {SETTINGS}")

        for step in steps:
            d = step.d
            if "settings" in d:
                continue
            if "on" not in d:
                raise CheckFailed(f"docs/operations.md:{step.line}: a directive without on=")
            targets = machines_of(d["on"], step.line)
            where = f"docs/operations.md:{step.line}"
            if "id" in d:
                if not step.block:
                    raise CheckFailed(f"{where}: id= without a block")
                self.blocks_by_id[d["id"]] = step
            if "wait" in d:
                kind = d["wait"]
                if kind == "commits":
                    self.wait_commits()
                elif kind == "synced":
                    self.wait_synced(targets)
                elif kind.startswith("epoch:"):
                    self.wait_epoch(int(kind.split(":")[1]), targets)
                else:
                    raise CheckFailed(f"{where}: unknown wait={kind}")
            if "service" in d:
                action = d["service"]
                text = step.block or ""
                expected = {"start": r"systemctl (start|enable --now|restart) p2pnode",
                            "stop": r"systemctl stop p2pnode",
                            "restart": r"systemctl stop p2pnode(.|\n)*systemctl start p2pnode"}[action]
                if not re.search(expected, text):
                    raise CheckFailed(f"{where}: service={action} but the block does not say it")
                for name in targets:
                    m = self.machines[name]
                    if action in ("stop", "restart"):
                        self.stop(m)
                    if action in ("start", "restart"):
                        self.start(m)
                self.counts["services"] += 1
                continue
            if "simulate" in d:
                if d["simulate"] != "lose-data":
                    raise CheckFailed(f"{where}: unknown simulate={d['simulate']}")
                for name in targets:
                    m = self.machines[name]
                    self.crash(m)
                    shutil.rmtree(m.data)
                    log(f"[{name}] crashed (SIGKILL) and lost {DATA}")
                continue
            if "send" in d:
                receivers = machines_of(d.get("to", ""), step.line)
                for name in targets:
                    source = self.machines[name]
                    for pattern in d["send"].split(","):
                        pattern = pattern.replace("$NAME", name)
                        files = sorted(glob.glob(str(source.cwd / pattern)))
                        if not files:
                            raise CheckFailed(f"{where}: [{name}] has no {pattern} in {source.cwd}")
                        for f in files:
                            for r in receivers:
                                if r != name:
                                    shutil.copy(f, self.machines[r].cwd / Path(f).name)
                                    self.counts["transfers"] += 1
                    log(f"[{name}] sent {d['send'].replace('$NAME', name)} to {', '.join(r for r in receivers if r != name)}")
                continue
            if "repeat" in d:
                for name in targets:
                    for ident in d["repeat"].split(","):
                        if ident not in self.blocks_by_id:
                            raise CheckFailed(f"{where}: repeat={ident}: no earlier block has id={ident}")
                        earlier = self.blocks_by_id[ident]
                        self.check_offline_text(earlier)
                        self.run_block(self.machines[name], earlier.block,
                                       f"docs/operations.md:{earlier.line} (id={ident}, repeated from line {step.line})")
                continue
            if not step.block:
                raise CheckFailed(f"{where}: a directive with nothing to do")
            self.check_offline_text(step)
            for name in targets:
                self.run_block(self.machines[name], step.block, where)

    # ---------------------------------------------------------- static checks

    def check_unit(self):
        service = self.unit.get("Service", {})
        for key, value in UNIT_KEYS.items():
            if key not in service:
                raise CheckFailed(f"docs/deploy/p2pnode.service: no {key}=")
            if value is not None and service[key][-1] != value:
                raise CheckFailed(f"docs/deploy/p2pnode.service: {key}={service[key][-1]}, expected {value}")
        if "multi-user.target" not in " ".join(self.unit.get("Install", {}).get("WantedBy", [])):
            raise CheckFailed("docs/deploy/p2pnode.service: not WantedBy=multi-user.target")
        # The unit's command line must parse: `run --help` knows every flag it uses.
        argv = shlex.split(service["ExecStart"][0])
        self.check_command(argv[1:], "docs/deploy/p2pnode.service ExecStart")
        analyze = shutil.which("systemd-analyze")
        if not analyze:
            log("unit: systemd-analyze not found; checked its keys only")
            return
        copy = self.scratch / "unit" / "p2pnode.service"
        copy.parent.mkdir()
        copy.write_text(UNIT.read_text().replace(f"ExecStart={BINARY_PATH}", f"ExecStart={self.binary}"))
        result = subprocess.run([analyze, "verify", str(copy)], cwd=copy.parent, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, timeout=60)
        output = result.stdout.decode(errors="replace").strip()
        if result.returncode != 0 or output:
            raise CheckFailed(f"systemd-analyze verify docs/deploy/p2pnode.service (ExecStart → the build):\n{output}")
        security = subprocess.run([analyze, "security", "--offline=true", str(copy)], cwd=copy.parent,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        level = re.search(r"Overall exposure level for \S+: (.*)", security.stdout.decode(errors="replace"))
        log(f"unit: systemd-analyze verify: clean; keys present; security --offline: {level.group(1) if level else 'n/a'}")

    def help_text(self, path):
        key = tuple(path)
        if key not in self.help_cache:
            result = subprocess.run([str(self.binary), *path, "--help"], stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, timeout=30)
            text = result.stdout.decode(errors="replace")
            subs = set()
            section = re.search(r"SUBCOMMANDS:\n(.*?)(\n\n|\Z)", text, re.S)
            if section:
                for line in section.group(1).splitlines():
                    m = re.match(r" {2}([a-z][a-z0-9-]*)", line)
                    if m:
                        subs.add(m.group(1))
            flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text)) | {"--help", "-h"}
            if path == []:
                flags.add("--version")
            self.help_cache[key] = (subs, flags, text)
        return self.help_cache[key]

    def check_command(self, args, where):
        """args: the words after `p2pnode`, up to the end of that command."""
        path = []
        subs, flags, _ = self.help_text(path)
        i = 0
        while i < len(args) and args[i] in subs:
            path.append(args[i])
            subs, flags, _ = self.help_text(path)
            i += 1
        if not path and (i >= len(args) or args[i].startswith("-")) and not set(args) & {"--version", "--help"}:
            path = ["run"]  # the default subcommand
            subs, flags, _ = self.help_text(path)
        if subs and path and path[0] != "run" and not (set(args[i:]) & {"--help", "-h"}):
            raise CheckFailed(f"{where}: `p2pnode {' '.join(args)}`: {' '.join(path)} needs a subcommand of {sorted(subs)}")
        for word in args[i:]:
            if word.startswith("--"):
                flag = word.split("=", 1)[0]
                if flag not in flags:
                    raise CheckFailed(f"{where}: `p2pnode {' '.join(args)}`: `p2pnode {' '.join(path)} --help` has no {flag}")
        if path == ["admin"]:
            words, j = [], i
            while j < len(args):
                if args[j] in ("--data-dir", "--socket"):
                    j += 2  # and the option's value
                    continue
                words.append(args[j])
                j += 1
            if words and f"| `{words[0]}` |" not in ADMIN_API.read_text():
                raise CheckFailed(f"{where}: admin method {words[0]} is not in docs/admin-api.md")
        return path

    def check_commands(self, blocks):
        checked = 0
        for lang, line, text in blocks:
            if lang not in ("sh", "bash", "shell", "console"):
                continue
            joined = re.sub(r"\\\n", " ", text)
            for number, command_line in enumerate(joined.splitlines()):
                code = command_line.split(" #", 1)[0] if not command_line.lstrip().startswith("#") else ""
                if "p2pnode" not in code:
                    continue
                try:
                    words = shlex.split(code, comments=True)
                except ValueError as error:
                    raise CheckFailed(f"docs/operations.md:{line}: cannot split `{code}`: {error}")
                for k, word in enumerate(words):
                    bare = word[2:] if word.startswith("$(") else word
                    if not (bare == "p2pnode" or bare.endswith("/p2pnode")):
                        continue
                    previous = words[k - 1] if k else None
                    at_command = (k == 0 or word.startswith("$(") or previous in ("&&", "||", ";", "|", "--", "then", "do", "exec", "time"))
                    if not at_command or bare.startswith("/etc") or bare.startswith("/var"):
                        continue
                    rest = []
                    for w in words[k + 1:]:
                        if w in ("|", "&&", "||", ";", ">", ">>", "<") or w.startswith(">") or w.endswith(")"):
                            if w.endswith(")") and not w.startswith(("|", "&", ";", ">")):
                                rest.append(w[:-1])
                            break
                        rest.append(w)
                    self.check_command(rest, f"docs/operations.md:{line}")
                    checked += 1
        log(f"commands: {checked} p2pnode invocations in the guide match --help (and admin methods docs/admin-api.md)")

    def check_metrics(self):
        m = self.machines["alice"]
        with urllib.request.urlopen(f"http://127.0.0.1:{m.metrics_port}/metrics", timeout=10) as response:
            exposed = response.read().decode()
        present = set(re.findall(r"^(sidenode_[a-z0-9_]+)", exposed, re.M))
        named = set(re.findall(r"\b(sidenode_[a-z0-9_]+)", GUIDE.read_text() + ALERTS.read_text()))
        # `sidenode_(consensus_committed_height|…)`-style alternations in the guide
        for group in re.findall(r"sidenode_\(([a-z0-9_|]+)\)", GUIDE.read_text()):
            named |= {f"sidenode_{n}" for n in group.split("|")}
        named.discard("sidenode_")
        missing = sorted(n for n in named if n not in present and not any(p.startswith(n + "_") for p in present))
        if missing:
            raise CheckFailed(f"metrics named in the guide or the alert rules but not served: {missing}")
        log(f"metrics: all {len(named)} sidenode_* names in the guide and the alert rules are served by /metrics")

    def check_alert_rules(self):
        try:
            import yaml  # optional
        except ImportError:
            log("alerts: PyYAML not installed; metric names checked only")
            return
        rules = yaml.safe_load(ALERTS.read_text())
        count = sum(len(g["rules"]) for g in rules["groups"])
        for group in rules["groups"]:
            for rule in group["rules"]:
                if not rule.get("alert") or not rule.get("expr"):
                    raise CheckFailed(f"docs/deploy/p2pnode-alerts.yml: a rule without alert/expr: {rule}")
        log(f"alerts: docs/deploy/p2pnode-alerts.yml parses, {count} rules")

    # ---------------------------------------------------------- all of it

    def run(self):
        log(f"opsguide: {GUIDE} with {self.binary}, scratch {self.scratch}")
        probe = subprocess.run([str(self.binary), "btc", "address", "opsguide-home-probe"],
                               env=self.machines["alice"].env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if str(self.machines["alice"].home) not in probe.stdout.decode(errors="replace"):
            raise CheckFailed("this p2pnode does not take ~ from $HOME (the guide assumes it does): "
                              + probe.stdout.decode(errors="replace").strip())
        steps, blocks = parse_guide(GUIDE)
        log(f"guide: {len(steps)} directives, {len(blocks)} fenced blocks")
        self.check_unit()
        self.check_commands(blocks)
        self.check_alert_rules()
        self.run_steps(steps)
        self.check_metrics()
        for m in self.running():
            self.stop(m)
        log(f"ran {self.counts['blocks']} blocks, {self.counts['transfers']} file transfers, "
            f"{self.counts['services']} service actions, {self.counts['waits']} waits")

    def cleanup(self, success):
        for m in self.machines.values():
            if m.process is not None and m.process.poll() is None:
                m.process.terminate()
                try:
                    m.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    m.process.kill()
                    m.process.wait()
        if success and not self.args.keep:
            shutil.rmtree(self.scratch, ignore_errors=True)
        else:
            log(f"scratch kept at {self.scratch} (each machine's journal.log has its node's output)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", required=True, help="directory holding the p2pnode binary")
    parser.add_argument("--base-port", type=int, default=31600, help="P2P ports: this and the next 4")
    parser.add_argument("--metrics-base-port", type=int, default=31700, help="metrics ports: this and the next 4")
    parser.add_argument("--scratch", default=None, help="parent of the scratch directory (default: the system's)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--guide", default=None, help="check this copy of docs/operations.md instead")
    parser.add_argument("--unit", default=None, help="check this copy of docs/deploy/p2pnode.service instead")
    parser.add_argument("--verbose", action="store_true", help="print every block's output")
    args = parser.parse_args()
    global GUIDE, UNIT
    GUIDE = Path(args.guide).resolve() if args.guide else GUIDE
    UNIT = Path(args.unit).resolve() if args.unit else UNIT

    def terminate(signum, frame):
        raise Terminated(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    checker = None
    success = False
    try:
        checker = Checker(args)
        checker.run()
        success = True
    except (CheckFailed, Terminated, KeyboardInterrupt) as error:
        log(f"FAILED: {error}")
    finally:
        if checker:
            checker.cleanup(success)
    log("opsguide: PASS" if success else "opsguide: FAIL")
    sys.exit(0 if success else 1)


if __name__ == "__main__":
    main()
