#!/usr/bin/env python3
"""A stand-in for a node's metrics endpoint: serves the status page (from
Sources/Node/StatusPage.swift, as the node does) at /status, a synthetic /status.json
built from the fields in docs/admin-api.md (the height grows 4 blocks a second), and a
synthetic /metrics. Used by `check.py --self-test`; run it alone to look at the page:

    python3 tools/statuspage/standin.py --port 31080    # then open http://127.0.0.1:31080/status
"""

import argparse
import hashlib
import http.server
import json
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
import page  # noqa: E402

# Values a hostile peer or a broken Bitcoin view could put in front of the page.
HOSTILE = '<img src=x onerror="alert(1)"><script>alert(2)</script>&amp;'


def _hex(seed, length=64):
    out = ""
    while len(out) < length:
        out += hashlib.sha256(f"{seed}/{len(out)}".encode()).hexdigest()
    return out[:length]


class StandIn:
    """The state behind the stand-in's answers; `mode` can be changed while it runs."""

    def __init__(self, hostile=False, checkpointing=True, alarm=None):
        self.start = time.time()
        self.hostile = hostile
        self.checkpointing = checkpointing
        self.alarm = alarm
        self.mode = "ok"  # "ok"; "http503": /status.json answers 503; "json404": 404
        self.html = page.load_html()
        self.requests = []
        self.lock = threading.Lock()

    def height(self, t):
        return 1200 + int((t - self.start) * 4)

    def status_json(self):
        now = time.time()
        height = self.height(now)
        me = _hex("node0")
        validators = [me] + [_hex(f"node{i}") for i in (1, 2, 3)]
        info = {
            "node_id": me, "account_address": "side1" + _hex("acct", 38), "listen": "127.0.0.1:26656",
            "chain_id": HOSTILE if self.hostile else "sidenode-testnet", "version": "0.9.0",
            "protocol": "Noise_XX_25519_ChaChaPoly_BLAKE2b", "uptime": int(now - self.start) + 3725,
            "connections": 3, "outbound": 1, "inbound": 2, "bitcoin_xonly_pubkey": _hex("btc"),
        }
        status = {
            "epoch": 4, "round": height + 57, "leader": validators[height % 4], "committed_height": height,
            "committed_block_id": _hex(f"block{height}"), "commit_state_id": _hex(f"state{height}"),
            "state_keys": 5012, "highest_qc_round": height + 56, "validator": True, "validators": validators,
            "syncing": False, "sync_target": height,
            "catch_up": {"blocks": 0, "transactions": 0, "seconds": 0.0},
            "failed_transactions": 2, "committed_transactions": 3 * height,
            "last_checkpoint": None,
        }
        peers = []
        for i, peer in enumerate(validators[1:], start=1):
            peers.append({
                "id": i, "node_id": peer,
                "address": (HOSTILE if self.hostile and i == 2 else f"127.0.0.1:{26656 + i}"),
                "listen_port": 26656 + i, "inbound": i != 1, "connected_since": int(self.start),
                "bytes_sent": 1_234_567 * i + height, "bytes_recv": 987_654 * i + height,
                "messages_in": 100 * height, "messages_out": 99 * height, "score": 0,
                "ping_time": None if i == 3 else 0.0004 * i, "agent": HOSTILE if self.hostile else "p2pnode/0.9.0",
                "duplicates": 0, "invalid": 0, "queue_dropped": 0,
            })
        checkpoints = None
        if self.checkpointing:
            bitcoin = 300 + int((now - self.start) / 5)
            rows = []
            for k in range(12):
                round_ = 40 * (k + 1) + 7
                confirmations = max(1, bitcoin - (250 + 4 * k) + 1)
                rows.append({
                    "txid": _hex(f"cp{k}"), "epoch": k // 4 + 1, "round": round_, "commit_state_id": _hex(f"s{k}"),
                    "initiator": validators[k % 4], "status": "confirmed",
                    "bitcoin_height": bitcoin - confirmations + 1,
                    "height": 40 * (k + 1), "confirmations": confirmations, "signatures": 3, "fee": 1540,
                })
            rows.append({
                "txid": _hex("cp-mempool"), "epoch": 4, "round": 527, "commit_state_id": _hex("s-m"),
                "initiator": validators[1], "status": "mempool", "bitcoin_height": None, "height": 520,
                "confirmations": 0, "signatures": 3, "fee": 1540,
            })
            checkpoints = {
                "status": "halted" if self.alarm else "ok", "alarm": self.alarm,
                "coin": _hex("cp11") + ":0", "coin_value": 99_000_000, "coin_epoch": 4, "bitcoin_height": bitcoin,
                "confirmations_required": 1, "checkpoints_left": 17, "fee_rate": 2.0, "fee_rate_override": None,
                "checkpoints": rows[-10:],
            }
        samples = []
        for k in range(30, -1, -1):
            t = now - 2 * k
            if t >= self.start:
                samples.append({"time": t, "height": self.height(t), "committed_transactions": 3 * self.height(t)})
        recent = {
            "window_seconds": 60, "blocks_per_second": 4.0, "transactions_per_second": 12.0,
            "commit_latency_ms": {"p50": 180.5, "p99": 412.0}, "samples": samples,
        }
        return {"time": now, "info": info, "status": status, "peers": peers, "checkpoints": checkpoints,
                "recent": recent}


METRICS = """\
# TYPE sidenode_consensus_round gauge
sidenode_consensus_round 57
# TYPE sidenode_consensus_epoch gauge
sidenode_consensus_epoch 1
# TYPE sidenode_consensus_committed_height gauge
sidenode_consensus_committed_height 50
# TYPE sidenode_consensus_commits_total counter
sidenode_consensus_commits_total 50
# TYPE sidenode_consensus_timeouts_total counter
sidenode_consensus_timeouts_total{reason="local_timer"} 1
sidenode_consensus_timeouts_total{reason="f_plus_one"} 0
# TYPE sidenode_consensus_timeout_certificates_total counter
sidenode_consensus_timeout_certificates_total 1
# TYPE sidenode_consensus_evidence_total counter
sidenode_consensus_evidence_total{kind="forged_message"} 0
sidenode_consensus_evidence_total{kind="equivocation"} 0
# TYPE sidenode_p2p_peers gauge
sidenode_p2p_peers 3
# TYPE sidenode_ledger_dag_transactions gauge
sidenode_ledger_dag_transactions 10
# TYPE sidenode_ledger_dag_pruned_total counter
sidenode_ledger_dag_pruned_total 0
# TYPE sidenode_ledger_failed_transactions_total counter
sidenode_ledger_failed_transactions_total 0
# TYPE sidenode_sync_syncing gauge
sidenode_sync_syncing 0
# TYPE sidenode_sync_target_height gauge
sidenode_sync_target_height 50
# TYPE sidenode_sync_catch_up_blocks_total counter
sidenode_sync_catch_up_blocks_total 0
# TYPE sidenode_checkpoint_bitcoin_height gauge
sidenode_checkpoint_bitcoin_height 0
# TYPE sidenode_checkpoint_confirmed_total counter
sidenode_checkpoint_confirmed_total 0
# TYPE sidenode_checkpoint_coin_spent_against_rules gauge
sidenode_checkpoint_coin_spent_against_rules 0
# TYPE sidenode_checkpoint_fees_left gauge
sidenode_checkpoint_fees_left 0
# TYPE sidenode_checkpoint_orphaned_total counter
sidenode_checkpoint_orphaned_total 0
""" + "".join(
    f"# TYPE sidenode_consensus_{h}_seconds histogram\n"
    + "".join(f'sidenode_consensus_{h}_seconds_bucket{{le="{le}"}} 0\n'
              for le in ("0.05", "0.1", "0.25", "0.5", "1.0", "2.0", "5.0", "10.0", "+Inf"))
    + f"sidenode_consensus_{h}_seconds_sum 0.0\nsidenode_consensus_{h}_seconds_count 0\n"
    for h in ("round_duration", "commit_latency"))


def serve(state, port, host="127.0.0.1"):
    """Starts the stand-in on a daemon thread; returns the server (shutdown() to stop)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def send(self, status, content_type, body):
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            # The headers MetricsServer sends with every response.
            self.send_header("Content-Security-Policy", "default-src 'none'; script-src 'self' 'unsafe-inline'; "
                             "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            with state.lock:
                state.requests.append(path)
            if path in ("/status", "/status/", "/"):
                self.send(200, "text/html; charset=utf-8", state.html)
            elif path == "/status.json" and state.mode == "ok":
                self.send(200, "application/json", json.dumps(state.status_json()))
            elif path == "/status.json" and state.mode == "http503":
                self.send(503, "text/plain", "unavailable\n")
            elif path == "/metrics":
                self.send(200, "text/plain; version=0.0.4", METRICS)
            else:
                self.send(404, "text/plain", "not found; try /metrics or /status\n")

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=31080)
    parser.add_argument("--hostile", action="store_true", help="put markup in peer-supplied strings")
    parser.add_argument("--alarm", help="raise the checkpoint alarm with this reason")
    parser.add_argument("--no-checkpoints", action="store_true", help="checkpointing off (checkpoints: null)")
    args = parser.parse_args()
    state = StandIn(hostile=args.hostile, checkpointing=not args.no_checkpoints, alarm=args.alarm)
    serve(state, args.port)
    print(f"serving http://127.0.0.1:{args.port}/status (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
