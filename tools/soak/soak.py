#!/usr/bin/env python3
"""Sampler and verdict for scripts/soak.sh (standard library only).

    soak.py ready  --dir DIR --nodes N [--timeout S]
    soak.py sample --dir DIR --nodes N --csv FILE --t0 UNIX [--esplora URL]
    soak.py report --csv FILE [--warmup S] [--max-rss-growth-pct P] [--max-rss-slope MIB_PER_H]
                   [--max-fd-growth N] [--svg FILE]

`sample` appends one row per node (and one for the regtest chain) to the CSV and prints
them: RSS (VmRSS), anonymous RSS, open descriptors, threads, CPU, disk of the data
directory split into consensus.sqlite*, ledger.sqlite* and node.log, committed height,
DAG size (getmempool count/pending) and committed transactions, read straight from
/proc and the admin socket. `report` fits a least-squares line to each node's RSS and
descriptor count after the warm-up and prints the verdict; it exits 1 if a node grows
(or died), 3 if too few samples came after the warm-up, 0 if every node is flat.
"""

import argparse
import csv
import json
import math
import os
import socket
import sys
import time
import urllib.request

SQLITE_CACHE_KIB = 64 * 1024  # ConsensusStore: PRAGMA cache_size=-65536

FIELDS = [
    "t", "wall", "node", "pid", "rss_kib", "anon_kib", "fds", "threads", "cpu_s", "disk_kib",
    "consensus_kib", "ledger_kib", "log_kib", "checkpoints_kib", "height", "epoch", "dag", "dag_pending", "committed_txs",
]


# ---------------------------------------------------------------- processes

def processes():
    """(pid, argv) of every process we can read."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        if argv:
            out.append((int(name), argv))
    return out


def find_node(procs, data_dir):
    """The `p2pnode [run] --data-dir DATA_DIR` process (not an admin or load client)."""
    for pid, argv in procs:
        if len(argv) < 3 or "--data-dir" not in argv:
            continue
        i = argv.index("--data-dir")
        if i + 1 < len(argv) and os.path.realpath(argv[i + 1]) == data_dir:
            if argv[1] in ("run", "--data-dir"):
                return pid
    return None


def find_regtest(procs, data_dir):
    for pid, argv in procs:
        if any(a.endswith("regtest.py") for a in argv) and "--datadir" in argv:
            i = argv.index("--datadir")
            if i + 1 < len(argv) and os.path.realpath(argv[i + 1]) == data_dir:
                return pid
    return None


def proc_status(pid):
    """VmRSS, RssAnon (KiB), threads, open fds, CPU seconds; None if the process is gone."""
    try:
        fields = {}
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(stat[11]) + int(stat[12])) / ticks  # utime + stime
    except (OSError, IndexError, ValueError):
        return None
    kib = lambda k: int(fields.get(k, "0 kB").split()[0])
    return {"rss_kib": kib("VmRSS"), "anon_kib": kib("RssAnon"), "threads": int(fields.get("Threads", 0)),
            "fds": fds, "cpu_s": round(cpu, 2)}


def disk_kib(path, prefix=None):
    """Allocated KiB under `path` (as du), or of its files whose name starts with `prefix`."""
    total = 0
    if prefix is not None:
        try:
            names = os.listdir(path)
        except OSError:
            return 0
        for n in names:
            if n.startswith(prefix):
                try:
                    total += os.lstat(os.path.join(path, n)).st_blocks * 512
                except OSError:
                    pass
        return total // 1024
    for root, _, files in os.walk(path):
        for n in files:
            try:
                total += os.lstat(os.path.join(root, n)).st_blocks * 512
            except OSError:
                pass
    return total // 1024


# ---------------------------------------------------------------- admin socket

def admin(sock_path, method, timeout=10):
    """One JSON-RPC call on the node's admin socket; the result or None."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(sock_path)
            s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method}).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        reply = json.loads(buf)
        return reply.get("result")
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- commands

def cmd_ready(a):
    deadline = time.time() + a.timeout
    root = os.path.realpath(a.dir)
    while time.time() < deadline:
        heights = []
        for i in range(a.nodes):
            st = admin(f"{root}/node{i}/admin.sock", "getstatus", timeout=3)
            heights.append((st or {}).get("committed_height", 0))
        if all(h >= 1 for h in heights):
            print(f"    all {a.nodes} nodes committing (heights {heights})")
            return 0
        time.sleep(2)
    print(f"the testnet did not start committing within {a.timeout} s (heights {heights})", file=sys.stderr)
    return 1


def read_rows(path):
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def cmd_sample(a):
    root = os.path.realpath(a.dir)
    previous = {}
    for r in read_rows(a.csv):
        previous[r["node"]] = r
    procs = processes()
    now = time.time()
    t = round(now - a.t0, 1)
    rows = []
    for i in range(a.nodes):
        d = f"{root}/node{i}"
        pid = find_node(procs, d)
        row = {"t": t, "wall": time.strftime("%H:%M:%S"), "node": f"node{i}", "pid": pid or ""}
        ps = proc_status(pid) if pid else None
        row.update(ps or {})
        row["disk_kib"] = disk_kib(d)
        row["consensus_kib"] = disk_kib(d, "consensus.sqlite")
        row["ledger_kib"] = disk_kib(d, "ledger.sqlite")
        row["log_kib"] = disk_kib(d, "node.log")
        row["checkpoints_kib"] = disk_kib(d, "checkpoints.json")
        st = admin(f"{d}/admin.sock", "getstatus") if ps else None
        mp = admin(f"{d}/admin.sock", "getmempool") if ps else None
        if st:
            row.update(height=st.get("committed_height", ""), epoch=st.get("epoch", ""),
                       committed_txs=st.get("committed_transactions", ""))
        if mp:
            row.update(dag=mp.get("count", ""), dag_pending=mp.get("pending", ""))
        rows.append(row)
    # The regtest chain (informational: a test tool, not SideNode).
    rd = f"{root}/regtest"
    pid = find_regtest(procs, rd)
    row = {"t": t, "wall": time.strftime("%H:%M:%S"), "node": "regtest", "pid": pid or ""}
    row.update((proc_status(pid) if pid else None) or {})
    row["disk_kib"] = disk_kib(rd)
    if a.esplora:
        try:
            row["height"] = int(urllib.request.urlopen(f"{a.esplora}/blocks/tip/height", timeout=3).read())
        except Exception:
            pass
    rows.append(row)

    new = not os.path.exists(a.csv) or os.path.getsize(a.csv) == 0
    with open(a.csv, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in FIELDS})

    def num(v):
        try:
            return float(v)
        except (TypeError, ValueError):
            return None

    print(f"--- t={t:>7.0f}s  {time.strftime('%H:%M:%S')}")
    print(f"    {'node':<8}{'pid':>8}{'RSS MiB':>9}{'anon':>8}{'fds':>6}{'thr':>5}{'cpu%':>6}"
          f"{'disk MiB':>10}{'cons':>8}{'ledger':>8}{'log':>7}{'height':>8}{'DAG':>10}{'pend':>6}{'tx/s':>8}")
    for r in rows:
        p = previous.get(r["node"], {})
        dt = t - (num(p.get("t")) or t)
        cpu = rate = ""
        if dt > 0 and num(r.get("cpu_s")) is not None and num(p.get("cpu_s")) is not None:
            cpu = f"{100 * (num(r['cpu_s']) - num(p['cpu_s'])) / dt:.0f}"
        if dt > 0 and num(r.get("committed_txs")) is not None and num(p.get("committed_txs")) is not None:
            rate = f"{(num(r['committed_txs']) - num(p['committed_txs'])) / dt:.0f}"
        mib = lambda k: f"{num(r.get(k)) / 1024:.1f}" if num(r.get(k)) is not None else "-"
        if not r["pid"]:
            print(f"    {r['node']:<8}{'GONE':>8}")
            continue
        print(f"    {r['node']:<8}{r['pid']:>8}{mib('rss_kib'):>9}{mib('anon_kib'):>8}{r.get('fds', '-'):>6}"
              f"{r.get('threads', '-'):>5}{cpu:>6}{mib('disk_kib'):>10}"
              f"{(mib('consensus_kib') if r['node'] != 'regtest' else ''):>8}"
              f"{(mib('ledger_kib') if r['node'] != 'regtest' else ''):>8}"
              f"{(mib('log_kib') if r['node'] != 'regtest' else ''):>7}"
              f"{r.get('height', '-'):>8}{r.get('dag', ''):>10}{r.get('dag_pending', ''):>6}{rate:>8}")
    sys.stdout.flush()
    return 0


def fit(xs, ys):
    """Least-squares slope and intercept."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0, my
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return slope, my - slope * mx


def cmd_report(a):
    rows = read_rows(a.csv)
    if not rows:
        print("no samples", file=sys.stderr)
        return 3
    f = lambda r, k: float(r[k]) if r.get(k) not in (None, "") else None
    nodes = []
    for r in rows:
        if r["node"] not in nodes:
            nodes.append(r["node"])
    end = max(float(r["t"]) for r in rows)
    warmup = a.warmup if a.warmup is not None else min(0.2 * end, 600.0)
    print()
    print(f"==> verdict (samples after a warm-up of {warmup:.0f} s of {end:.0f} s; RSS flat if its fitted growth "
          f"is < {a.max_rss_growth_pct:g} % of its mean or its slope < {a.max_rss_slope:g} MiB/h; "
          f"descriptors flat if their fitted growth is < {a.max_fd_growth:g})")
    print(f"    {'node':<8}{'samples':>8}{'RSS mean':>10}{'slope MiB/h':>13}{'growth MiB':>12}{'growth %':>10}"
          f"{'fds':>6}{'fd slope/h':>12}{'fd growth':>10}  verdict")
    growing = []
    judged = 0
    disk_lines = []
    dag_lines = []
    for node in nodes:
        mine = [r for r in rows if r["node"] == node]
        gone = [r for r in mine if not r["pid"]]
        post = [r for r in mine if float(r["t"]) >= warmup and r["pid"] and f(r, "rss_kib") is not None]
        label = node
        if gone and node != "regtest":
            print(f"    {label:<8}  process gone at t={gone[0]['t']} s  verdict: DIED")
            growing.append(node)
            continue
        if len(post) < 3:
            print(f"    {label:<8}{len(post):>8}  too few samples after the warm-up  verdict: inconclusive")
            continue
        xs = [float(r["t"]) / 3600 for r in post]
        window = xs[-1] - xs[0]
        rss = [f(r, "rss_kib") / 1024 for r in post]
        fds = [f(r, "fds") for r in post]
        slope, _ = fit(xs, rss)
        mean = sum(rss) / len(rss)
        growth = slope * window
        pct = 100 * growth / mean if mean else 0.0
        fd_slope, _ = fit(xs, fds)
        fd_growth = fd_slope * window
        rss_flat = pct < a.max_rss_growth_pct or slope < a.max_rss_slope
        fd_flat = fd_growth < a.max_fd_growth
        verdict = "flat" if rss_flat and fd_flat else "growing"
        why = [] if verdict == "flat" else [w for w, bad in (("RSS", not rss_flat), ("fds", not fd_flat)) if bad]
        note = " (informational: the test chain)" if node == "regtest" else ""
        print(f"    {label:<8}{len(post):>8}{mean:>10.1f}{slope:>13.1f}{growth:>12.1f}{pct:>9.1f}%"
              f"{fds[-1]:>6.0f}{fd_slope:>12.1f}{fd_growth:>10.1f}  {verdict}"
              f"{' (' + ', '.join(why) + ')' if why else ''}{note}")
        if node != "regtest":
            judged += 1
            if verdict != "flat":
                growing.append(node)
        if node == "regtest":
            continue
        first, last = post[0], post[-1]
        dh = (f(last, "height") or 0) - (f(first, "height") or 0)
        dtx = (f(last, "committed_txs") or 0) - (f(first, "committed_txs") or 0)
        if dh > 0:
            per = lambda k: ((f(last, k) or 0) - (f(first, k) or 0)) / 1024 / dh * 1000
            per_tx = lambda k: ((f(last, k) or 0) - (f(first, k) or 0)) * 1024 / dtx if dtx > 0 else float("nan")
            disk_lines.append(
                f"    {node:<8}{dh:>8.0f}{dtx:>10.0f}{per('disk_kib'):>10.2f}{per('consensus_kib'):>12.2f}"
                f"{per('ledger_kib'):>10.2f}{per('log_kib'):>9.2f}{per('checkpoints_kib'):>8.2f}"
                f"{per_tx('consensus_kib'):>11.0f}{per_tx('ledger_kib'):>9.0f}")
        dags = [(float(r["t"]) / 3600, f(r, "dag")) for r in post if f(r, "dag") is not None]
        if len(dags) >= 2:
            ds, _ = fit([x for x, _ in dags], [y for _, y in dags])
            kib_per_tx = (slope * 1024 / ds) if ds > 0 else float("nan")
            dag_lines.append(f"    {node:<8}{dags[-1][1]:>12.0f}{ds:>14.0f}"
                             f"{(f'{kib_per_tx:.2f}' if ds > 0 and slope > 0 else '-'):>16}")
    if disk_lines:
        print()
        print("==> disk after the warm-up (grows with the chain unless blocks are pruned; MiB per 1,000 committed "
              "blocks, and bytes per committed transaction)")
        print(f"    {'node':<8}{'blocks':>8}{'txs':>10}{'total':>10}{'consensus':>12}{'ledger':>10}{'log':>9}{'ckpt':>8}"
              f"{'cons B/tx':>11}{'led B/tx':>9}")
        print("\n".join(disk_lines))
        print("    consensus = consensus.sqlite* (committed blocks, receipts, state versions: the committed chain);"
              " ledger = ledger.sqlite* (the transaction DAG); log = node.log; ckpt = checkpoints.json")
    if dag_lines:
        print()
        print("==> transaction DAG in memory (getmempool count; flat once the DAG is pruned below what is committed)")
        print(f"    {'node':<8}{'entries':>12}{'growth/h':>14}{'RSS KiB/entry':>16}")
        print("\n".join(dag_lines))
    # consensus.sqlite's page cache (PRAGMA cache_size, 64 MiB) fills as the file grows:
    # RSS growth before the file passes 64 MiB is partly that cache.
    notes = {}
    for node in nodes:
        if node == "regtest":
            continue
        mine = [r for r in rows if r["node"] == node and f(r, "consensus_kib") is not None]
        past = [float(r["t"]) for r in mine if f(r, "consensus_kib") >= SQLITE_CACHE_KIB]
        if not past:
            notes.setdefault("consensus.sqlite stayed below 64 MiB: its SQLite page cache (up to 64 MiB) was still "
                             "filling, part of the RSS growth", []).append(node)
        elif past[0] > warmup:
            notes.setdefault(f"consensus.sqlite passed 64 MiB after the warm-up (t={past[0]:.0f} s): until then its "
                             f"SQLite page cache was filling (--warmup {past[0]:.0f} excludes it)", []).append(node)
    for text, who in notes.items():
        print(f"\n    note ({', '.join(who)}): {text}")
    if a.svg:
        write_svg(rows, nodes, warmup, a.svg)
        print(f"\n    plot: {a.svg}")
    print()
    if growing:
        print(f"VERDICT: growing ({', '.join(growing)})")
        return 1
    if judged == 0:
        print("VERDICT: inconclusive (too few samples after the warm-up: a longer run or a shorter --interval)")
        return 3
    print("VERDICT: flat")
    return 0


def write_svg(rows, nodes, warmup, path):
    """Four panels against time: RSS, descriptors, DAG entries, disk."""
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    panels = [("RSS (MiB)", "rss_kib", 1 / 1024), ("open descriptors", "fds", 1),
              ("DAG entries", "dag", 1), ("disk (MiB)", "disk_kib", 1 / 1024)]
    W, H, pw, ph, left, top = 1000, 640, 400, 220, 80, 50
    tmax = max(float(r["t"]) for r in rows) or 1
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
           '<rect width="100%" height="100%" fill="white"/>']
    for k, (title, key, scale) in enumerate(panels):
        ox = left + (k % 2) * (pw + 100)
        oy = top + (k // 2) * (ph + 80)
        series = {}
        for r in rows:
            if r.get(key) not in ("", None):
                series.setdefault(r["node"], []).append((float(r["t"]), float(r[key]) * scale))
        ymax = max([y for s in series.values() for _, y in s] + [1]) * 1.1
        out.append(f'<rect x="{ox}" y="{oy}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
        out.append(f'<text x="{ox + pw / 2}" y="{oy - 8}" text-anchor="middle" font-size="13">{title}</text>')
        wx = ox + warmup / tmax * pw
        out.append(f'<line x1="{wx:.1f}" y1="{oy}" x2="{wx:.1f}" y2="{oy + ph}" stroke="#bbb" stroke-dasharray="4,3"/>')
        for i in range(5):
            yv = ymax * i / 4
            yy = oy + ph - i / 4 * ph
            out.append(f'<text x="{ox - 5}" y="{yy + 4:.1f}" text-anchor="end">{yv:.4g}</text>')
            tv = tmax * i / 4
            out.append(f'<text x="{ox + i / 4 * pw:.1f}" y="{oy + ph + 15}" text-anchor="middle">{tv / 60:.0f} min</text>')
        for j, node in enumerate(nodes):
            pts = series.get(node, [])
            if not pts:
                continue
            c = colors[j % len(colors)]
            line = " ".join(f"{ox + t / tmax * pw:.1f},{oy + ph - y / ymax * ph:.1f}" for t, y in pts)
            out.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{line}"/>')
    for j, node in enumerate(nodes):
        c = colors[j % len(colors)]
        out.append(f'<rect x="{left + j * 90}" y="{H - 22}" width="12" height="12" fill="{c}"/>'
                   f'<text x="{left + j * 90 + 16}" y="{H - 12}">{node}</text>')
    out.append(f'<text x="{W - 20}" y="{H - 12}" text-anchor="end">dashed line: end of the warm-up</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("ready")
    r.add_argument("--dir", required=True)
    r.add_argument("--nodes", type=int, default=4)
    r.add_argument("--timeout", type=float, default=300)
    s = sub.add_parser("sample")
    s.add_argument("--dir", required=True)
    s.add_argument("--nodes", type=int, default=4)
    s.add_argument("--csv", required=True)
    s.add_argument("--t0", type=float, required=True)
    s.add_argument("--esplora")
    v = sub.add_parser("report")
    v.add_argument("--csv", required=True)
    v.add_argument("--warmup", type=float)
    v.add_argument("--max-rss-growth-pct", type=float, default=5.0)
    v.add_argument("--max-rss-slope", type=float, default=16.0)
    v.add_argument("--max-fd-growth", type=float, default=8.0)
    v.add_argument("--svg")
    a = p.parse_args()
    return {"ready": cmd_ready, "sample": cmd_sample, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
