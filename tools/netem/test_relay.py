#!/usr/bin/env python3
"""Self-test of tools/netem/relay.py (stdlib unittest, about 15 s): three echo servers
stand in for nodes on 127.0.0.1:(BASE+i); clients bind to 127.0.0.(10+j) as node j's
outbound connections do; the relay runs as its own process.

    python3 tools/netem/test_relay.py [-v]      (NETEM_TEST_BASE_PORT, default 30950)
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
RELAY = os.path.join(HERE, "relay.py")
BASE = int(os.environ.get("NETEM_TEST_BASE_PORT", "30950"))
NODES = 3
OPEN = []  # client sockets, closed after each test


class EchoNode(threading.Thread):
    """Echoes what it reads; on the client's EOF it sends b"bye" and closes."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.server = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self.peers = []

    def close(self):
        try:
            self.server.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self.server.close()

    def run(self):
        while True:
            try:
                conn, addr = self.server.accept()
            except OSError:
                return
            self.peers.append(addr[0])
            threading.Thread(target=self.echo, args=(conn,), daemon=True).start()

    @staticmethod
    def echo(conn):
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
            conn.sendall(b"bye")
        except OSError:
            pass
        finally:
            conn.close()


def dial(src, dst, timeout=5):
    s = socket.socket()
    OPEN.append(s)
    s.settimeout(timeout)
    s.bind((f"127.0.0.{10 + src}", 0))
    s.connect((f"127.0.0.{10 + dst}", BASE + dst))
    return s


def recv_exactly(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionResetError("EOF")
        out += chunk
    return out


def round_trip(s, payload=b"ping"):
    start = time.monotonic()
    s.sendall(payload)
    assert recv_exactly(s, len(payload)) == payload
    return time.monotonic() - start


def refused(src, dst):
    """True if a new connection from node src to node dst is reset or closed at once."""
    try:
        s = dial(src, dst)
    except OSError:
        return True  # the RST can beat connect()'s return
    return is_broken(s)


def is_broken(s, timeout=3):
    """True if the connection is reset or closed (a write or a read fails)."""
    s.settimeout(timeout)
    try:
        s.sendall(b"x")
        return s.recv(1) == b""
    except OSError:
        return True


class RelayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="netem-test-")
        cls.nodes = [EchoNode(BASE + i) for i in range(NODES)]
        for n in cls.nodes:
            n.start()
        cls.sock = os.path.join(cls.dir, "netem.sock")
        cls.proc = subprocess.Popen([sys.executable, RELAY, "serve", "--dir", cls.dir, "--nodes", str(NODES),
                                     "--base-port", str(BASE), "--seed", "1"], stdout=subprocess.PIPE, text=True)
        assert "netem: relaying" in cls.proc.stdout.readline()

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(10)
        for n in cls.nodes:
            n.close()

    def setUp(self):
        self.ctl("clear")

    def tearDown(self):
        while OPEN:
            OPEN.pop().close()

    def ctl(self, *words):
        out = subprocess.run([sys.executable, RELAY, "ctl", self.sock, "--json", *words], capture_output=True,
                             text=True, timeout=10)
        self.assertEqual(out.returncode, 0, out.stderr)
        return json.loads(out.stdout)

    def test_echo_and_source_address(self):
        s = dial(1, 0)
        self.assertLess(round_trip(s, b"hello" * 1000), 1.0)
        s.close()
        self.assertIn("127.0.0.11", self.nodes[0].peers, "node 0 must see node 1's own address")

    def test_large_transfer_both_ways(self):
        s = dial(2, 1, timeout=20)
        payload = os.urandom(4 * 1024 * 1024)
        received = bytearray()

        def reader():
            while len(received) < len(payload):
                chunk = s.recv(1 << 16)
                if not chunk:
                    return
                received.extend(chunk)

        t = threading.Thread(target=reader)
        t.start()
        s.sendall(payload)
        t.join(20)
        self.assertEqual(bytes(received), payload)
        s.close()

    def test_half_close(self):
        s = dial(0, 2)
        s.sendall(b"abc")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(100):
            data += chunk
        self.assertEqual(data, b"abcbye")
        s.close()

    def test_partition_and_heal(self):
        across = dial(1, 0)
        inside = dial(2, 1)
        round_trip(across)
        round_trip(inside)
        status = self.ctl("partition", "0", "/", "1,2")
        self.assertEqual(status["cut"], [[0, 1], [0, 2]])
        self.assertTrue(is_broken(across), "a connection across the partition must be reset")
        round_trip(inside)  # same side: untouched
        self.assertTrue(refused(2, 0), "a new connection across must be refused")
        self.assertTrue(refused(0, 1), "both directions are cut")
        self.ctl("heal")
        healed = dial(1, 0)
        round_trip(healed)
        for s in (across, inside, healed):
            s.close()
        self.assertGreaterEqual(self.ctl("status")["counters"].get("refused", 0), 2)

    def test_symmetric_split_and_isolate(self):
        self.ctl("isolate", "2")
        self.assertEqual(self.ctl("status")["cut"], [[0, 2], [1, 2]])
        round_trip(dial(0, 1))
        self.assertTrue(refused(1, 2))
        self.ctl("heal", "1", "/", "2")
        round_trip(dial(1, 2))
        self.assertTrue(refused(0, 2))

    def test_delay_and_jitter(self):
        s = dial(0, 1)
        self.assertLess(round_trip(s), 0.15)
        self.ctl("delay", "150", "20")
        rtts = [round_trip(s) for _ in range(3)]  # existing connections feel it too
        self.assertTrue(all(0.25 <= r < 1.0 for r in rtts), rtts)  # 150±20 each way
        self.ctl("delay", "0")
        self.assertLess(round_trip(s), 0.15)
        s.close()

    def test_per_link_delay(self):
        self.ctl("delay", "200", "on", "0", "/", "1")
        slow, fast = dial(0, 1), dial(2, 1)
        self.assertGreaterEqual(round_trip(slow), 0.35)
        self.assertLess(round_trip(fast), 0.15)

    def test_loss_stalls_and_rate(self):
        s = dial(1, 2)
        self.ctl("loss", "1", "100")
        self.assertGreaterEqual(round_trip(s), 0.18)  # every chunk stalled 100 ms each way
        self.ctl("clear")
        self.ctl("rate", "100000")
        s.settimeout(10)
        start = time.monotonic()
        payload = os.urandom(100_000)
        t = threading.Thread(target=s.sendall, args=(payload,))
        t.start()
        self.assertEqual(recv_exactly(s, len(payload)), payload)
        t.join()
        self.assertGreaterEqual(time.monotonic() - start, 0.8)  # 100 kB at 100 kB/s, paced both ways
        s.close()

    def test_random_resets(self):
        s = dial(2, 0)
        round_trip(s)
        self.ctl("reset", "1")
        time.sleep(1.5)
        self.assertTrue(is_broken(s))
        self.ctl("reset", "0")
        round_trip(dial(2, 0))

    def test_bad_commands(self):
        out = subprocess.run([sys.executable, RELAY, "ctl", self.sock, "partition", "0", "/", "7"],
                             capture_output=True, text=True, timeout=10)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("not 0", out.stderr)
        with socket.socket(socket.AF_UNIX) as c:  # garbage on the control socket
            c.connect(self.sock)
            c.sendall(b"not json\n")
            self.assertFalse(json.loads(c.makefile().readline())["ok"])
        round_trip(dial(0, 1))

    def test_relay_survives_upstream_down(self):
        # No node listens on BASE+NODES… a relay for a dead node resets the client only.
        self.nodes[1].close()
        try:
            self.assertTrue(refused(0, 1))
        finally:
            self.nodes[1] = EchoNode(BASE + 1)
            self.nodes[1].start()
        round_trip(dial(0, 1))
        self.assertIsNone(self.proc.poll())


if __name__ == "__main__":
    # Children inherit a blocked SIGTERM from a Swift test runner: clear it first.
    import signal

    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    unittest.main()
