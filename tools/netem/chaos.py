#!/usr/bin/env python3
"""The scenarios of scripts/chaos.sh, against a running testnet started with
`scripts/testnet.sh --relays` (no --restart-dead: node restarts are done here).

Each scenario runs `p2pnode load` from node0 (never killed or cut off alone: it is the
submitter) to a fresh recipient account while it injects its fault, then checks:
  - exactly once: every transfer accepted at submission is executed once on every node
    (the recipient's balance equals the number accepted, on every node);
  - agreement: every node has the same block id at every height (each height checked
    once, as soon as every node has it);
  - checkpoints: a new checkpoint is confirmed on Bitcoin after the fault ended;
  - the scenario's own claim (commits went on, or, for split-2-2, no block committed
    while the network was split, and commits resumed after the heal).
A sampler records every node's committed height every 0.5 s for those claims.

    tools/netem/chaos.py --dir DIR --bin P2PNODE [--scenario NAME,… | all] [--quick] [--rate N] [--seed S]
"""

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time

SCENARIOS = ["kill9-validator", "kill9-leader", "kill9-initiator", "partition-one", "partition-minority",
             "split-2-2", "lossy", "slow"]


def say(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Admin:
    """JSON-RPC over a node's admin socket; one connection kept and reopened on failure."""

    def __init__(self, path):
        self.path, self.sock, self.file, self.next_id = path, None, None, 0

    def close(self):
        if self.sock:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = self.file = None

    def call(self, method, params=None, timeout=5.0):
        try:
            if self.sock is None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(self.path)
                self.file = self.sock.makefile("rb")
            self.sock.settimeout(timeout)
            self.next_id += 1
            req = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
            if params is not None:
                req["params"] = params
            self.sock.sendall(json.dumps(req).encode() + b"\n")
            line = self.file.readline()
            if not line:
                raise ConnectionError("closed")
            reply = json.loads(line)
        except (OSError, ValueError):
            self.close()
            raise
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def get(self, method, params=None, timeout=5.0):
        try:
            return self.call(method, params, timeout)
        except (OSError, ValueError, RuntimeError):
            return None


class Testnet:
    def __init__(self, root, binary, nodes):
        self.root, self.bin, self.n = root, binary, nodes
        self.ids = [json.load(open(f"{root}/node{i}/node_key.json"))["public_key"] for i in range(nodes)]
        self.children = {}  # node index -> Popen started here
        self.lock = threading.Lock()
        self.sampler_admins = [Admin(self.sock(i)) for i in range(nodes)]
        self.admins = [Admin(self.sock(i)) for i in range(nodes)]

    def sock(self, i):
        return f"{self.root}/node{i}/admin.sock"

    def call(self, i, method, params=None, timeout=5.0):
        return self.admins[i].call(method, params, timeout)

    def get(self, i, method, params=None, timeout=5.0):
        return self.admins[i].get(method, params, timeout)

    def height(self, i, admins=None):
        s = (admins or self.admins)[i].get("getstatus", timeout=1.0)
        return s["committed_height"] if s else None

    def heights(self, admins=None):
        return [self.height(i, admins) for i in range(self.n)]

    def index_of(self, node_id):
        return self.ids.index(node_id) if node_id in self.ids else None

    def confirmed_checkpoints(self):
        cp = self.get(0, "getcheckpoints")
        return [c for c in (cp or {}).get("checkpoints", []) if c.get("status") == "confirmed"] if cp else []

    # Processes

    def pid(self, i):
        """The running process of node i, from node.pid (checked against /proc)."""
        try:
            pid = int(open(f"{self.root}/node{i}/node.pid").read().strip())
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError):
            return None
        if state == "Z" or f"{self.root}/node{i}".encode() not in cmdline:
            return None
        return pid

    def kill9(self, i):
        pid = self.pid(i)
        if pid is None:
            raise RuntimeError(f"node{i} is not running")
        os.kill(pid, signal.SIGKILL)
        child = self.children.pop(i, None)
        if child is not None:
            child.wait(10)
        deadline = time.time() + 10
        while self.pid(i) == pid and time.time() < deadline:
            time.sleep(0.05)
        self.admins[i].close()
        self.sampler_admins[i].close()
        return pid

    def start(self, i):
        log = open(f"{self.root}/node{i}/node.log", "ab")
        log.write(f"--- restarted by scripts/chaos.sh at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
        log.flush()
        p = subprocess.Popen([self.bin, "--data-dir", f"{self.root}/node{i}", "--config", f"{self.root}/node{i}/config.toml"],
                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self.children[i] = p
        with open(f"{self.root}/node{i}/node.pid", "w") as f:
            f.write(f"{p.pid}\n")
        return p.pid

    def stop_children(self):
        for p in self.children.values():
            if p.poll() is None:
                p.terminate()
        for p in self.children.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


class Relay:
    def __init__(self, path):
        self.path = path

    def __call__(self, cmd, **kw):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(self.path)
            s.sendall(json.dumps({"cmd": cmd, **kw}).encode() + b"\n")
            reply = json.loads(s.makefile().readline())
        if not reply.get("ok"):
            raise RuntimeError(f"relay {cmd}: {reply.get('error')}")
        return reply


class Sampler(threading.Thread):
    """Every node's committed height every 0.5 s: [(t, [h or None, …])]."""

    def __init__(self, net):
        super().__init__(daemon=True)
        self.net, self.samples, self.stopped = net, [], threading.Event()

    def run(self):
        while not self.stopped.is_set():
            self.samples.append((time.time(), self.net.heights(self.net.sampler_admins)))
            self.stopped.wait(0.5)

    def between(self, start, end):
        return [(t, h) for t, h in self.samples if start <= t <= end]

    def top(self, start, end, nodes=None):
        """The highest committed height any of `nodes` reported in [start, end]."""
        values = [h[i] for _, h in self.between(start, end) for i in (nodes or range(len(h))) if h[i] is not None]
        return max(values) if values else None


class Scenario:
    def __init__(self, name, ctx):
        self.name, self.ctx, self.net, self.relay = name, ctx, ctx.net, ctx.relay
        self.notes, self.failures = [], []
        self.fault_start = self.fault_end = None

    def note(self, text):
        self.notes.append(text)
        say(f"  {self.name}: {text}")

    def fail(self, text):
        self.failures.append(text)
        say(f"  {self.name}: FAIL {text}")

    def sleep(self, seconds):
        time.sleep(seconds)

    def restart_after(self, i, seconds):
        time.sleep(seconds)
        pid = self.net.start(i)
        return pid

    def progressed(self, start, end, nodes, at_least=3):
        a, b = self.ctx.sampler.top(start, start + 2, nodes), self.ctx.sampler.top(end - 2, end, nodes)
        if a is None or b is None or b - a < at_least:
            self.fail(f"commits stalled during the fault: nodes {nodes} at {a} → {b}")
            return False
        self.note(f"commits went on during the fault: {a} → {b}")
        return True


def leader_not_node0(net, timeout=20):
    """Waits for a round whose leader is not node0; returns (index, round)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        s = net.get(1, "getstatus", timeout=1) or net.get(2, "getstatus", timeout=1)
        if s:
            i = net.index_of(s.get("leader"))
            if i not in (None, 0):
                return i, s["round"]
        time.sleep(0.02)
    return None, None


# The faults. Each runs while the load runs and sets fault_start/fault_end.

def kill_restart_cycles(sc, kills, wait, pick):
    """kills rounds of: wait(k) seconds, pick() -> (node, describe) or None to stop (the
    scenario already failed), kill -9 that node (describe() adds to the note, after the
    kill), restart it 3 s later. Then the verdict that commits went on throughout."""
    sc.fault_start = time.time()
    for k in range(kills):
        sc.sleep(wait(k))
        picked = pick()
        if picked is None:
            return
        i, describe = picked
        pid = sc.net.kill9(i)
        sc.note(f"kill -9 node{i} (pid {pid}){describe()}")
        sc.restart_after(i, 3)
        sc.note(f"node{i} restarted")
    sc.sleep(3)
    sc.fault_end = time.time()
    sc.progressed(sc.fault_start, sc.fault_end, [0])


def kill9_validator(sc):
    q = sc.ctx.quick
    victim = sc.ctx.victim
    gap = 8 if q else 12
    kill_restart_cycles(
        sc, 1 if q else 3, lambda k: gap if k else 5,
        lambda: (victim, lambda: f" at height {sc.net.height(0)}"))


def kill9_leader(sc):
    def pick():
        i, rnd = leader_not_node0(sc.net)
        if i is None:
            sc.fail("no round led by a node other than node0 seen")
            return None
        return i, lambda: f", the leader of round {rnd}"

    kill_restart_cycles(sc, 1 if sc.ctx.quick else 3, lambda k: 5, pick)


def kill9_initiator(sc):
    """Watches the validators' logs for 'checkpoint: asking the validators to sign' (what
    the initiator logs as it sends its request) and kills that node at once, while the
    signatures are being gathered."""
    net = sc.net
    offsets = {i: os.path.getsize(f"{net.root}/node{i}/node.log") for i in range(1, net.n)}
    sc.fault_start = time.time()
    deadline = time.time() + (90 if sc.ctx.quick else 150)
    victim = None
    seen_node0 = 0
    while victim is None and time.time() < deadline:
        for i in range(1, net.n):
            path = f"{net.root}/node{i}/node.log"
            with open(path, "rb") as f:
                f.seek(offsets[i])
                chunk = f.read()
            offsets[i] += len(chunk)
            m = re.search(rb"[^\n]*checkpoint: asking the validators to sign[^\n]*", chunk)
            if m:
                victim, line = i, m.group(0).decode(errors="replace")
                break
        else:
            time.sleep(0.05)
    if victim is None:
        sc.fail("no validator other than node0 initiated a checkpoint in time")
        sc.fault_end = time.time()
        return
    pid = net.kill9(victim)
    txid = re.search(r"txid=(\w+)", line)
    sc.initiator_txid = txid.group(1) if txid else None
    sc.note(f"kill -9 node{victim} (pid {pid}) right after it asked for checkpoint signatures"
            + (f" (txid {sc.initiator_txid[:16]}…)" if sc.initiator_txid else ""))
    sc.restart_after(victim, 3)
    sc.note(f"node{victim} restarted")
    sc.sleep(3)
    sc.fault_end = time.time()


def partition_one(sc):
    victim = sc.ctx.isolated
    span = 10 if sc.ctx.quick else 30
    sc.sleep(4)
    sc.fault_start = time.time()
    sc.relay("isolate", nodes=[victim])
    sc.note(f"node{victim} cut off from every other node for {span} s")
    sc.sleep(span)
    sc.fault_end = time.time()
    sc.relay("heal")
    sc.note("healed")
    rest = [i for i in range(sc.net.n) if i != victim]
    sc.progressed(sc.fault_start, sc.fault_end, rest)


def partition_minority(sc):
    n = sc.net.n
    f = (n - 1) // 3
    span = 10 if sc.ctx.quick else 30
    sc.sleep(4)
    leader, rnd = leader_not_node0(sc.net)
    minority = [leader] if leader is not None else []
    for i in range(n - 1, 0, -1):
        if len(minority) >= f:
            break
        if i not in minority:
            minority.append(i)
    sc.fault_start = time.time()
    sc.relay("isolate", nodes=minority)
    sc.note(f"minority {sorted(minority)} (f = {f}; node{leader} led round {rnd}) cut off for {span} s")
    sc.sleep(span)
    sc.fault_end = time.time()
    sc.relay("heal")
    sc.note("healed")
    sc.progressed(sc.fault_start, sc.fault_end, [i for i in range(n) if i not in minority])


def split(sc):
    n = sc.net.n
    span = 10 if sc.ctx.quick else 30
    a, b = list(range(n // 2)), list(range(n // 2, n))
    sc.sleep(4)
    before = sc.net.heights()
    sc.fault_start = time.time()
    sc.relay("partition", groups=[a, b])
    sc.note(f"split {a} / {b} for {span} s (heights at the cut {before})")
    sc.sleep(span)
    sc.fault_end = time.time()
    during = sc.ctx.sampler.between(sc.fault_start + 1.5, sc.fault_end)
    sc.relay("heal")
    sc.note("healed")
    tops = sorted({max(x for x in h if x is not None) for _, h in during if any(x is not None for x in h)})
    if not during:
        sc.fail("no height samples during the split")
    elif len(tops) > 1:
        sc.fail(f"blocks committed during the split: the highest committed height went {tops[0]} → {tops[-1]}")
    else:
        sc.note(f"no block committed during the split (highest height {tops[0]} from +1.5 s to the heal; "
                f"{max((x for x in before if x is not None), default=None)} at the cut)")
    sc.split_top = tops[-1] if tops else None
    # Recovery: commits resume after the heal.
    deadline = time.time() + 90
    while time.time() < deadline:
        h = max((x for x in sc.net.heights() if x is not None), default=0)
        if sc.split_top is not None and h >= sc.split_top + 3:
            sc.note(f"commits resumed {time.time() - sc.fault_end:.1f} s after the heal (height {h})")
            return
        time.sleep(0.5)
    sc.fail("no commits within 90 s of the heal")


def lossy(sc):
    span = 15 if sc.ctx.quick else 40
    sc.sleep(4)
    sc.fault_start = time.time()
    sc.relay("delay", ms=30, jitter=20)
    sc.relay("loss", p=0.05, rto_ms=200)
    sc.relay("reset", p=0.02)
    sc.note(f"all links: 30±20 ms, 5 % of chunks stalled 200 ms, each connection reset with p = 0.02/s, for {span} s")
    sc.sleep(span)
    sc.fault_end = time.time()
    status = sc.relay("clear")
    c = status["counters"]
    sc.note(f"cleared ({c.get('stalls', 0)} stalls, {c.get('reset', 0)} resets so far)")
    sc.progressed(sc.fault_start, sc.fault_end, list(range(sc.net.n)))


def slow(sc):
    span = 15 if sc.ctx.quick else 40
    sc.sleep(4)
    sc.fault_start = time.time()
    sc.relay("delay", ms=150, jitter=50)
    sc.relay("rate", bytes_per_s=256 * 1024)
    sc.note(f"all links: 150±50 ms each way, 256 KiB/s per connection direction, for {span} s")
    sc.sleep(span)
    sc.fault_end = time.time()
    sc.relay("clear")
    sc.note("cleared")
    sc.progressed(sc.fault_start, sc.fault_end, list(range(sc.net.n)))


# Seconds of load per scenario (quick, full): the fault happens inside it.
SPANS = {"kill9-validator": (15, 45), "kill9-leader": (15, 40), "kill9-initiator": (40, 90), "partition-one": (20, 45),
         "partition-minority": (20, 45), "split-2-2": (20, 45), "lossy": (25, 50), "slow": (25, 50)}

FAULTS = {"kill9-validator": kill9_validator, "kill9-leader": kill9_leader, "kill9-initiator": kill9_initiator,
          "partition-one": partition_one, "partition-minority": partition_minority, "split-2-2": split,
          "lossy": lossy, "slow": slow}


class Context:
    def __init__(self, args):
        self.args, self.quick = args, args.quick
        self.net = Testnet(args.dir, args.bin, args.nodes)
        self.relay = Relay(f"{args.dir}/netem.sock")
        self.sampler = Sampler(self.net)
        self.agreed = 0  # heights 1…agreed checked on every node
        rng = random.Random(args.seed)
        self.victim = rng.randrange(1, args.nodes)
        self.isolated = rng.randrange(1, args.nodes)

    def recipient(self, name):
        d = f"{self.args.dir}/recipients/{name}-{int(time.time())}"
        out = subprocess.run([self.args.bin, "init", os.path.basename(d), "--data-dir", d], capture_output=True, text=True, check=True)
        return json.load(open(f"{d}/node_key.json"))["public_key"]

    def wait_ready(self):
        say(f"waiting for {self.net.n} nodes to commit, every link through the relay")
        deadline = time.time() + 300
        while time.time() < deadline:
            h = self.net.heights()
            if all(x is not None and x >= 3 for x in h):
                break
            dead = [i for i in range(self.net.n) if os.path.exists(f"{self.net.root}/node{i}/node.exit")]
            if dead:
                tail = open(f"{self.net.root}/node{dead[0]}/node.log", errors="replace").read().splitlines()[-5:]
                raise SystemExit(f"nodes {dead} exited at start; node{dead[0]}'s log ends:\n  " + "\n  ".join(tail))
            time.sleep(1)
        else:
            raise SystemExit(f"the testnet did not start committing: heights {self.net.heights()}")
        # Every peer of every node is another node's relay address (none direct).
        bad = []
        deadline = time.time() + 120  # peer exchange completes the mesh in 30–60 s
        while time.time() < deadline:
            bad, full = [], True
            for i in range(self.net.n):
                peers = self.net.get(i, "getpeerinfo") or []
                hosts = {p["address"].rsplit(":", 1)[0] for p in peers}
                bad += [f"node{i}←{p['address']}" for p in peers
                        if not re.fullmatch(r"127\.0\.0\.(\d+)", p["address"].rsplit(":", 1)[0])
                        or not 10 <= int(p["address"].rsplit(":", 1)[0].split(".")[3]) < 10 + self.net.n]
                full &= len({p["node_id"] for p in peers}) >= self.net.n - 1
            if not bad and full:
                break
            time.sleep(1)
        if bad:
            raise SystemExit(f"connections bypass the relay (is [gossip] outbound_address honoured?): {bad[:6]}")
        if not full:
            say("  warning: not every node is connected to every other one yet")
        conns = len(self.relay("status")["connections"])
        say(f"ready: heights {self.net.heights()}, {conns} relayed connections, every peer address a relay's")

    def run(self, name):
        sc = Scenario(name, self)
        started = time.time()
        say(f"== {name}{' (quick)' if self.quick else ''}")
        span = SPANS[name][0 if self.quick else 1]
        rcpt = self.recipient(name)
        out_path = f"{self.args.dir}/load-{name}.out"
        load = subprocess.Popen([self.args.bin, "load", "--data-dir", f"{self.args.dir}/node0", "--nodes", str(self.net.n),
                                 "--rate", str(self.args.rate), "--duration", str(span), "--to", rcpt],
                                stdout=open(out_path, "w"), stderr=subprocess.STDOUT)
        sc.note(f"load: {self.args.rate} tx/s for {span} s from node0 to {rcpt[:12]}…")
        try:
            FAULTS[name](sc)
        except Exception as e:  # a fault that could not be injected is a failure, not a crash
            sc.fail(f"fault injection: {e.__class__.__name__}: {e}")
        finally:
            try:
                self.relay("clear")
            except Exception:
                pass
            for i in range(self.net.n):
                if self.net.pid(i) is None:
                    sc.note(f"node{i} was down after the fault: restarting it")
                    self.net.start(i)
        fault_end = sc.fault_end or time.time()
        cps_at_end = len(self.net.confirmed_checkpoints())
        try:
            load.wait(span + 120)
        except subprocess.TimeoutExpired:
            load.kill()
            sc.fail("the load did not finish")
        self.verify(sc, out_path, rcpt, cps_at_end)
        took = time.time() - started
        result = "PASS" if not sc.failures else "FAIL"
        details = "; ".join(sc.failures) if sc.failures else "; ".join(sc.summary)
        say(f"== {name}: {result} in {took:.0f} s")
        return name, result, details, took, fault_end - (sc.fault_start or started)

    def verify(self, sc, out_path, rcpt, cps_at_end):
        net = self.net
        sc.summary = []
        text = open(out_path).read()
        m1, m2 = re.search(r"submitted (\d+)", text), re.search(r"\((\d+) refused at submission\)", text)
        if not (m1 and m2):
            sc.fail(f"cannot read the load's output ({out_path}): {text[-300:]!r}")
            return
        sent, refused = int(m1.group(1)), int(m2.group(1))
        accepted = sent - refused
        # Every node reaches node0's height.
        target = net.height(0) or 0
        deadline = time.time() + 120
        while time.time() < deadline:
            h = net.heights()
            if all(x is not None and x >= target for x in h):
                break
            time.sleep(0.5)
        else:
            sc.fail(f"nodes did not catch up to height {target} in 120 s: {net.heights()}")
        # Exactly once: the recipient got exactly `accepted` on every node.
        deadline = time.time() + 60
        while True:
            got = [(net.get(i, "getbalance", {"account": rcpt}) or {}).get("balance") for i in range(net.n)]
            if all(g == accepted for g in got) or time.time() > deadline:
                break
            time.sleep(1)
        if all(g == accepted for g in got):
            sc.summary.append(f"{accepted} accepted = executed once on {net.n}/{net.n}")
        else:
            sc.fail(f"{accepted} accepted ({refused} refused) but the recipient got {got}")
        # Agreement on every height not yet checked.
        top = min((x for x in net.heights() if x is not None), default=0)
        differ = []
        for h in range(self.agreed + 1, top + 1):
            ids = set()
            for i in range(net.n):
                b = net.get(i, "getblock", {"height": h})
                ids.add(b["block_id"] if b else None)
            if len(ids) != 1:
                differ.append(h)
        if differ:
            sc.fail(f"{len(differ)} heights differ between nodes (first {differ[:3]})")
        else:
            sc.summary.append(f"heights {self.agreed + 1}…{top} agree")
        self.agreed = top
        # A new checkpoint after the fault.
        deadline = time.time() + 150
        while time.time() < deadline:
            cps = net.confirmed_checkpoints()
            if len(cps) > cps_at_end:
                c = cps[-1]
                sc.summary.append(f"checkpoint {len(cps)} (round {c['round']}) confirmed after the fault")
                if getattr(sc, "initiator_txid", None):
                    landed = any(x["txid"] == sc.initiator_txid for x in cps)
                    sc.note(f"the killed initiator's checkpoint {'landed (the others broadcast it)' if landed else 'did not land; a later one did'}")
                break
            time.sleep(1)
        else:
            sc.fail(f"no new confirmed checkpoint within 150 s after the fault ({cps_at_end} before)")
        sc.summary += [n for n in sc.notes if n.startswith(("no block committed", "commits resumed", "commits went on",
                                                             "the killed initiator"))]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", required=True)
    p.add_argument("--bin", required=True)
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--scenario", default="all")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rate", type=int, default=250)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--check-only", action="store_true", help="check the scenario names and exit")
    args = p.parse_args()
    names = SCENARIOS if args.scenario == "all" else args.scenario.split(",")
    for name in names:
        if name not in FAULTS:
            p.error(f"unknown scenario {name}; one of: {', '.join(SCENARIOS)}, all")
    if args.check_only:
        return
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    ctx = Context(args)
    say(f"scenarios: {', '.join(names)}{' (quick)' if args.quick else ''}; seed {args.seed} "
        f"(kill9-validator victim node{ctx.victim}, partition-one isolates node{ctx.isolated})")
    rows = []
    try:
        ctx.wait_ready()
        ctx.sampler.start()
        for name in names:
            rows.append(ctx.run(name))
    finally:
        ctx.sampler.stopped.set()
        ctx.net.stop_children()
    print()
    print(f"{'scenario':<20} | {'result':<6} | {'time':>6} | details")
    print(f"{'-' * 20}-+-{'-' * 6}-+-{'-' * 6}-+-{'-' * 40}")
    for name, result, details, took, _ in rows:
        print(f"{name:<20} | {result:<6} | {took:>5.0f}s | {details}")
    failed = [r for r in rows if r[1] != "PASS"]
    print(f"\n{len(rows) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
