#!/usr/bin/env python3
"""A userspace TCP relay that lets a script partition, delay or break the links of a
local SideNode testnet without root (scripts/testnet.sh --relays, scripts/chaos.sh).

Topology. Node i listens on 127.0.0.1:(BASE+i) and makes its outbound connections
from 127.0.0.(10+i) (`[gossip] outbound_address`). This one process listens on
127.0.0.(10+i):(BASE+i) for every node i and forwards each connection to
127.0.0.1:(BASE+i), binding its upstream socket to the client's source IP, so node i
sees peer j as 127.0.0.(10+j) and learns j's address as 127.0.0.(10+j):(BASE+j) -- the
relay again. Every peer connection crosses exactly one relay (the accepting node's),
which knows both ends from the two IPs: the link (j, i). Linux routes all of
127.0.0.0/8 to lo, so no root and no interface set-up is needed. A connection from
an address that is no node's (127.0.0.1, say) is relayed but no rule applies to it.

Rules (per link, a link being an unordered pair of nodes; `on GROUPS` scopes a
setting to the links across those groups, else it is the default for every link):
  partition A / B [/ C…]   cut every link between the groups: existing connections
                           across it are reset (RST), new ones are accepted and reset
                           at once (the dialler sees its handshake fail); partitions add up
  isolate I[,J…]           partition those nodes from all the others
  heal [A / B]             remove the cuts (all, or those between the groups)
  delay MS [JITTER] [on …] each chunk is delivered MS ± JITTER ms (uniform) after it was
                           read, in order (TCP does not reorder: jitter never overtakes)
  rate BYTES_PER_S [on …]  each direction of each connection is paced to this (0: off)
  loss P [RTO_MS] [on …]   a TCP relay cannot drop bytes (the stream would be corrupt):
                           what loss does to TCP is a stall, so each chunk is, with
                           probability P, held RTO_MS more (default 200, Linux's minimum
                           retransmission timeout), and everything behind it waits too
  reset P [on …]           a broken link: each connection is reset (RST both ways) with
                           probability P in every second
  clear                    heal, and every setting back to 0
  status                   the rules, counters and open connections

Robustness: one task pair per connection direction with a byte-bounded queue (at most
1 MiB per direction inside the relay: a slow reader backpressures the writer through
TCP), half-close (EOF) forwarded with shutdown(SHUT_WR), resets and refused upstreams
only close that connection. Log: DIR/netem.log.

    tools/netem/relay.py serve --dir DIR --nodes N --base-port BASE [--ip-base 10]
    tools/netem/relay.py ctl DIR/netem.sock partition 0 / 1,2,3
    tools/netem/relay.py ctl DIR/netem.sock delay 100 30 on 0,1 / 2,3
    tools/netem/relay.py ctl DIR/netem.sock status [--json]
Control protocol (the Unix socket, one JSON object per line each way):
  {"cmd": "partition", "groups": [[0], [1, 2, 3]]}  ->  {"ok": true, ...}
  {"cmd": "delay", "ms": 100, "jitter": 30, "on": [[0, 1], [2, 3]]}
  {"cmd": "rate", "bytes_per_s": 50000}, {"cmd": "loss", "p": 0.05, "rto_ms": 200},
  {"cmd": "reset", "p": 0.02}, {"cmd": "isolate", "nodes": [2]}, {"cmd": "heal"},
  {"cmd": "clear"}, {"cmd": "status"}
"""

import argparse
import asyncio
import collections
import itertools
import json
import logging
import os
import random
import signal
import socket
import struct
import sys
import time

CHUNK = 64 * 1024
QUEUE_BYTES = 1024 * 1024  # per direction, inside the relay
QUEUE_CHUNKS = 4096
UPSTREAM_TIMEOUT = 5.0
SETTINGS = {"delay_ms": 0.0, "jitter_ms": 0.0, "rate": 0.0, "loss": 0.0, "rto_ms": 200.0, "reset": 0.0}

log = logging.getLogger("netem")


def pairs_across(groups):
    """Every unordered node pair with its ends in two different groups."""
    out = set()
    for a, b in itertools.combinations(range(len(groups)), 2):
        for x in groups[a]:
            for y in groups[b]:
                if x != y:
                    out.add(frozenset((x, y)))
    return out


def reset_socket(writer):
    """Closes a connection with an RST (SO_LINGER 0), not a FIN."""
    if writer is None:
        return
    try:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        writer.transport.abort()
    except Exception:
        pass


class ByteQueue:
    """A FIFO of (deliver_at, bytes) bounded in bytes and entries: put() waits while full."""

    def __init__(self, max_bytes=QUEUE_BYTES, max_chunks=QUEUE_CHUNKS):
        self.items = collections.deque()
        self.bytes = 0
        self.max_bytes, self.max_chunks = max_bytes, max_chunks
        self.changed = asyncio.Event()

    async def put(self, at, data):
        while self.items and (self.bytes >= self.max_bytes or len(self.items) >= self.max_chunks):
            self.changed.clear()
            await self.changed.wait()
        self.items.append((at, data))
        self.bytes += len(data or b"")
        self.changed.set()

    async def get(self):
        while not self.items:
            self.changed.clear()
            await self.changed.wait()
        at, data = self.items.popleft()
        self.bytes -= len(data or b"")
        self.changed.set()
        return at, data


class Connection:
    ids = itertools.count(1)

    def __init__(self, relay, src, dst, client, client_writer):
        self.relay, self.src, self.dst, self.client = relay, src, dst, client
        self.id = next(Connection.ids)
        self.client_writer, self.upstream_writer = client_writer, None
        self.opened = time.time()
        self.sent = {"up": 0, "down": 0}  # up: client -> node dst
        self.closed = False
        self.reason = None
        self.tasks = []

    @property
    def link(self):
        return None if self.src is None else frozenset((self.src, self.dst))

    def name(self):
        src = f"node{self.src}" if self.src is not None else self.client[0]
        return f"#{self.id} {src}:{self.client[1]} -> node{self.dst}"

    def abort(self, reason):
        if self.closed:
            return
        self.closed = True
        self.reason = reason
        reset_socket(self.client_writer)
        reset_socket(self.upstream_writer)
        for t in self.tasks:
            t.cancel()

    async def pump(self, reader, writer, direction):
        loop = asyncio.get_running_loop()
        queue = ByteQueue()
        rng = self.relay.rng

        busy = [False]  # the writer holds a chunk

        async def read_side():
            last = 0.0
            try:
                while True:
                    data = await reader.read(CHUNK)
                    p = self.relay.params(self.src, self.dst)
                    if data and not queue.items and not busy[0] and not (
                            p["delay_ms"] or p["jitter_ms"] or p["loss"] or p["rate"]):
                        # Nothing to emulate and nothing queued: straight through (in order).
                        writer.write(data)
                        self.sent[direction] += len(data)
                        await writer.drain()
                        continue
                    d = p["delay_ms"]
                    if p["jitter_ms"]:
                        d += rng.uniform(-p["jitter_ms"], p["jitter_ms"])
                    if data and p["loss"] and rng.random() < p["loss"]:
                        d += p["rto_ms"]
                        self.relay.counters["stalls"] += 1
                    at = max(last, loop.time() + max(0.0, d) / 1000)
                    last = at
                    await queue.put(at, data)
                    if not data:
                        return
            except (ConnectionError, OSError) as e:
                await queue.put(0.0, None)
                self.reason = self.reason or f"{direction} read: {e.__class__.__name__}"

        async def write_side():
            next_free = 0.0
            while True:
                at, data = await queue.get()
                busy[0] = True
                wait = at - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    raise ConnectionResetError("the other side reset")
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                rate = self.relay.params(self.src, self.dst)["rate"]
                if rate > 0:
                    piece = max(1024, int(rate / 50))
                    for k in range(0, len(data), piece):
                        part = data[k:k + piece]
                        next_free = max(next_free, loop.time()) + len(part) / rate
                        writer.write(part)
                        await writer.drain()
                        pause = next_free - loop.time()
                        if pause > 0:
                            await asyncio.sleep(pause)
                else:
                    writer.write(data)
                    await writer.drain()
                self.sent[direction] += len(data)
                busy[0] = False

        reader_task = asyncio.ensure_future(read_side())
        try:
            await write_side()
        finally:
            reader_task.cancel()
            try:
                await reader_task
            except (asyncio.CancelledError, Exception):
                pass


class Relay:
    def __init__(self, nodes, base_port, ip_base=10, upstream_host="127.0.0.1", seed=None):
        self.nodes, self.base_port, self.ip_base, self.upstream_host = nodes, base_port, ip_base, upstream_host
        self.blocked = set()
        self.default = dict(SETTINGS)
        self.overrides = {}  # link -> {setting: value}
        self.connections = {}
        self.servers = []
        self.counters = collections.Counter()
        self.rng = random.Random(seed)
        self.warned_unknown = False

    # Addresses

    def node_ip(self, i):
        return f"127.0.0.{self.ip_base + i}"

    def node_of(self, ip):
        try:
            a, b, c, d = (int(x) for x in ip.split("."))
        except ValueError:
            return None
        i = d - self.ip_base
        return i if (a, b, c) == (127, 0, 0) and 0 <= i < self.nodes else None

    # Rules

    def params(self, a, b):
        if a is None or a == b:
            return self.default
        extra = self.overrides.get(frozenset((a, b)))
        return {**self.default, **extra} if extra else self.default

    def is_cut(self, a, b):
        return a is not None and a != b and frozenset((a, b)) in self.blocked

    def check_groups(self, groups):
        if not isinstance(groups, list) or len(groups) < 2 or not all(isinstance(g, list) and g for g in groups):
            raise ValueError("groups: at least two non-empty lists of node indices")
        seen = set()
        for g in groups:
            for i in g:
                if not isinstance(i, int) or not 0 <= i < self.nodes:
                    raise ValueError(f"node {i} is not 0…{self.nodes - 1}")
                if i in seen:
                    raise ValueError(f"node {i} is in two groups")
                seen.add(i)
        return groups

    def apply_cuts(self):
        for c in list(self.connections.values()):
            if self.is_cut(c.src, c.dst):
                log.info("partition: resetting %s", c.name())
                self.counters["cut"] += 1
                c.abort("partitioned")

    def set_setting(self, values, on):
        if on:
            for link in pairs_across(self.check_groups(on)):
                self.overrides.setdefault(link, {}).update(values)
        else:
            self.default.update(values)
            for extra in self.overrides.values():
                for k in values:
                    extra.pop(k, None)
            self.overrides = {k: v for k, v in self.overrides.items() if v}

    def command(self, req):
        cmd = req.get("cmd")
        number = lambda key, lo=0.0, hi=float("inf"): self.number(req, key, lo, hi)
        if cmd == "partition":
            links = pairs_across(self.check_groups(req.get("groups")))
            self.blocked |= links
            log.info("partition %s (%d links cut in all)", self.groups_text(req["groups"]), len(self.blocked))
            self.apply_cuts()
        elif cmd == "isolate":
            nodes = req.get("nodes")
            if not isinstance(nodes, list) or not nodes:
                raise ValueError("nodes: a non-empty list")
            rest = [i for i in range(self.nodes) if i not in nodes]
            self.blocked |= pairs_across(self.check_groups([nodes, rest]))
            log.info("isolate %s", nodes)
            self.apply_cuts()
        elif cmd == "heal":
            if req.get("groups"):
                self.blocked -= pairs_across(self.check_groups(req["groups"]))
            else:
                self.blocked.clear()
            log.info("heal %s (%d links still cut)", self.groups_text(req.get("groups")) or "all", len(self.blocked))
        elif cmd == "delay":
            self.set_setting({"delay_ms": number("ms", 0, 60000), "jitter_ms": self.number(req, "jitter", 0, 60000, 0)}, req.get("on"))
            log.info("delay %s", req)
        elif cmd == "rate":
            self.set_setting({"rate": number("bytes_per_s", 0)}, req.get("on"))
            log.info("rate %s", req)
        elif cmd == "loss":
            self.set_setting({"loss": number("p", 0, 1), "rto_ms": self.number(req, "rto_ms", 1, 60000, 200)}, req.get("on"))
            log.info("loss %s", req)
        elif cmd == "reset":
            self.set_setting({"reset": number("p", 0, 1)}, req.get("on"))
            log.info("reset %s", req)
        elif cmd == "clear":
            self.blocked.clear()
            self.default = dict(SETTINGS)
            self.overrides = {}
            log.info("clear: no cuts, no delay, rate, loss or resets")
        elif cmd != "status":
            raise ValueError(f"unknown command {cmd!r}")
        return self.status()

    @staticmethod
    def number(req, key, lo, hi, default=None):
        v = req.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
            raise ValueError(f"{key} must be a number in {lo}…{hi}")
        return float(v)

    @staticmethod
    def groups_text(groups):
        return " / ".join(",".join(map(str, g)) for g in groups) if groups else ""

    def status(self):
        now = time.time()
        return {
            "ok": True,
            "nodes": self.nodes,
            "cut": sorted(sorted(link) for link in self.blocked),
            "default": self.default,
            "links": [{"link": sorted(k), **v} for k, v in sorted(self.overrides.items(), key=lambda kv: sorted(kv[0]))],
            "counters": dict(self.counters),
            "connections": [
                {"id": c.id, "from": c.src, "to": c.dst, "client": f"{c.client[0]}:{c.client[1]}",
                 "age": round(now - c.opened, 1), "up": c.sent["up"], "down": c.sent["down"]}
                for c in self.connections.values()],
        }

    # Serving

    async def start(self):
        for i in range(self.nodes):
            server = await asyncio.start_server(
                lambda r, w, dst=i: self.accepted(r, w, dst), self.node_ip(i), self.base_port + i,
                reuse_address=True, limit=CHUNK)
            self.servers.append(server)
        self.ticker = asyncio.ensure_future(self.resets())
        log.info("relaying %d nodes: 127.0.0.%d…%d:%d… -> %s:%d…", self.nodes, self.ip_base,
                 self.ip_base + self.nodes - 1, self.base_port, self.upstream_host, self.base_port)

    async def stop(self):
        for s in self.servers:
            s.close()
        self.ticker.cancel()
        for c in list(self.connections.values()):
            c.abort("relay stopping")

    async def resets(self):
        while True:
            await asyncio.sleep(1)
            for c in list(self.connections.values()):
                p = self.params(c.src, c.dst)["reset"]
                if p and self.rng.random() < p:
                    log.info("reset (p=%g/s): %s", p, c.name())
                    self.counters["reset"] += 1
                    c.abort("random reset")

    async def accepted(self, reader, writer, dst):
        client = writer.get_extra_info("peername")[:2]
        src = self.node_of(client[0])
        c = Connection(self, src, dst, client, writer)
        if src is None and not self.warned_unknown:
            self.warned_unknown = True
            log.warning("connection from %s, which is no node's address (is outbound_address set?): relayed without rules", client[0])
        if self.is_cut(src, dst):
            self.counters["refused"] += 1
            log.info("refused (partitioned): %s", c.name())
            reset_socket(writer)
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(self.upstream_host, self.base_port + dst, local_addr=(client[0], 0), limit=CHUNK),
                UPSTREAM_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as e:
            self.counters["upstream_failed"] += 1
            log.info("upstream node%d refused %s: %s", dst, c.name(), e.__class__.__name__)
            reset_socket(writer)
            return
        if self.is_cut(src, dst):  # cut while connecting
            reset_socket(up_writer)
            reset_socket(writer)
            return
        c.upstream_writer = up_writer
        self.connections[c.id] = c
        self.counters["accepted"] += 1
        log.info("open %s", c.name())
        up = asyncio.ensure_future(c.pump(reader, up_writer, "up"))
        down = asyncio.ensure_future(c.pump(up_reader, writer, "down"))
        c.tasks = [up, down]
        try:
            # Each direction ends on its EOF (half-close forwarded); an error in one
            # resets the whole connection.
            for fut in asyncio.as_completed([up, down]):
                try:
                    await fut
                except asyncio.CancelledError:
                    if not c.closed:
                        raise
                except (ConnectionError, OSError) as e:
                    c.abort(c.reason or f"{e.__class__.__name__}: {e}")
        finally:
            self.connections.pop(c.id, None)
            if not c.closed:
                c.closed = True
                for w in (writer, up_writer):
                    try:
                        w.close()
                    except Exception:
                        pass
            log.info("close %s: up %d B, down %d B, %.1f s%s", c.name(), c.sent["up"], c.sent["down"],
                     time.time() - c.opened, f" ({c.reason})" if c.reason else "")

    async def control(self, reader, writer):
        try:
            while line := await reader.readline():
                try:
                    req = json.loads(line)
                    if not isinstance(req, dict):
                        raise ValueError("a JSON object, please")
                    reply = self.command(req)
                except (ValueError, TypeError, KeyError) as e:
                    reply = {"ok": False, "error": str(e)}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


async def serve(args):
    os.makedirs(args.dir, exist_ok=True)
    sock_path = args.socket or os.path.join(args.dir, "netem.sock")
    logging.basicConfig(filename=args.log or os.path.join(args.dir, "netem.log"), level=logging.INFO,
                        format="%(asctime)s.%(msecs)03d %(levelname)s %(message)s", datefmt="%Y-%m-%dT%H:%M:%S")
    relay = Relay(args.nodes, args.base_port, args.ip_base, args.upstream_host, args.seed)
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, ctx: log.warning("asyncio: %s", ctx.get("message")))
    await relay.start()
    if os.path.exists(sock_path):
        os.unlink(sock_path)
    control = await asyncio.start_unix_server(relay.control, path=sock_path)
    os.chmod(sock_path, 0o600)
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    print(f"netem: relaying {args.nodes} nodes; control {sock_path}", flush=True)
    await stopping.wait()
    log.info("stopping")
    control.close()
    await relay.stop()
    try:
        os.unlink(sock_path)
    except OSError:
        pass


# Control client


def parse_groups(words):
    """"0 / 1,2,3" (or "0/1 2/3") -> [[0], [1, 2, 3]]."""
    text = " ".join(words)
    groups = []
    for part in text.split("/"):
        ids = [w for w in part.replace(",", " ").split()]
        if not ids:
            raise SystemExit(f"empty group in {text!r}")
        groups.append([int(w) for w in ids])
    return groups


def build_request(words):
    if not words:
        raise SystemExit("ctl needs a command: partition, isolate, heal, delay, rate, loss, reset, clear, status")
    cmd, rest = words[0], words[1:]
    on = None
    if "on" in rest:
        k = rest.index("on")
        on, rest = parse_groups(rest[k + 1:]), rest[:k]
    num = lambda w: float(w)
    if cmd == "partition":
        return {"cmd": cmd, "groups": parse_groups(rest)}
    if cmd == "isolate":
        return {"cmd": cmd, "nodes": [int(w) for w in " ".join(rest).replace(",", " ").split()]}
    if cmd == "heal":
        return {"cmd": cmd, "groups": parse_groups(rest)} if rest else {"cmd": cmd}
    if cmd == "delay" and 1 <= len(rest) <= 2:
        return {"cmd": cmd, "ms": num(rest[0]), "jitter": num(rest[1]) if len(rest) > 1 else 0, "on": on}
    if cmd == "rate" and len(rest) == 1:
        return {"cmd": cmd, "bytes_per_s": num(rest[0]), "on": on}
    if cmd == "loss" and 1 <= len(rest) <= 2:
        return {"cmd": cmd, "p": num(rest[0]), "rto_ms": num(rest[1]) if len(rest) > 1 else 200, "on": on}
    if cmd == "reset" and len(rest) == 1:
        return {"cmd": cmd, "p": num(rest[0]), "on": on}
    if cmd in ("clear", "status") and not rest:
        return {"cmd": cmd}
    raise SystemExit(f"cannot read: {' '.join(words)} (see --help)")


def request(sock_path, req, timeout=10):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        s.sendall(json.dumps(req).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def show(status):
    d = status["default"]
    print(f"nodes {status['nodes']}; cut links: " + (", ".join(f"{a}-{b}" for a, b in status["cut"]) or "none"))
    print(f"all links: delay {d['delay_ms']:g}±{d['jitter_ms']:g} ms, rate {d['rate']:g} B/s, "
          f"loss {d['loss']:g} (stall {d['rto_ms']:g} ms), reset {d['reset']:g}/s")
    for link in status["links"]:
        extra = ", ".join(f"{k} {v:g}" for k, v in link.items() if k != "link")
        print(f"link {link['link'][0]}-{link['link'][1]}: {extra}")
    print("counters: " + (", ".join(f"{k} {v}" for k, v in sorted(status["counters"].items())) or "none"))
    print(f"{len(status['connections'])} connections")
    for c in sorted(status["connections"], key=lambda c: (str(c["from"]), c["to"])):
        src = f"node{c['from']}" if c["from"] is not None else c["client"]
        print(f"  {src:>9} -> node{c['to']:<3} {c['age']:>7.1f} s  up {c['up']:>10} B  down {c['down']:>10} B")


def main():
    # A parent may have blocked SIGTERM (a Swift test runner's threads do, and children
    # inherit the mask): the relay must still stop when its testnet stops it.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("serve", help="run the relay for N nodes")
    s.add_argument("--dir", required=True, help="directory for netem.sock and netem.log")
    s.add_argument("--nodes", type=int, required=True)
    s.add_argument("--base-port", type=int, required=True)
    s.add_argument("--ip-base", type=int, default=10, help="node i's relay address is 127.0.0.(IP_BASE+i)")
    s.add_argument("--upstream-host", default="127.0.0.1")
    s.add_argument("--socket", help="control socket (default DIR/netem.sock)")
    s.add_argument("--log", help="log file (default DIR/netem.log)")
    s.add_argument("--seed", type=int, help="seed for jitter, loss and resets")
    c = sub.add_parser("ctl", help="send a command to a running relay")
    c.add_argument("socket")
    c.add_argument("--json", action="store_true", help="print the raw JSON answer")
    c.add_argument("words", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.mode == "serve":
        if not 1 <= args.nodes <= 200 or args.ip_base + args.nodes > 255:
            parser.error("--nodes out of range")
        asyncio.run(serve(args))
        return
    words = [w for w in args.words if w != "--json"]
    as_json = args.json or "--json" in args.words
    req = {k: v for k, v in build_request(words).items() if v is not None}
    try:
        reply = request(args.socket, req)
    except OSError as e:
        print(f"netem: cannot reach {args.socket}: {e}", file=sys.stderr)
        sys.exit(1)
    if not reply.get("ok"):
        print(f"netem: {reply.get('error')}", file=sys.stderr)
        sys.exit(1)
    if as_json:
        print(json.dumps(reply))
    elif req["cmd"] == "status":
        show(reply)
    else:
        cut = ", ".join(f"{a}-{b}" for a, b in reply["cut"]) or "none"
        print(f"ok; cut links: {cut}; {len(reply['connections'])} connections")


if __name__ == "__main__":
    main()
