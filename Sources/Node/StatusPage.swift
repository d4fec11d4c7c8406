/// The status page served at `GET /status` on `metrics_listen` (docs/observability.md).
/// It polls `status.json` every 2 s and writes every value with `textContent`. Its
/// Content-Security-Policy allows only its own inline script and style by hash: after
/// editing either, `python3 tools/statuspage/check.py --csp` prints the new hashes.
public enum StatusPage {
    public static let html: String = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'sha256-49ntKziTDfaepplvgdr68azwQ3uYJMqDDqU3mX9/zhw=';
         style-src 'sha256-6UqpMFe+JcM7+1c5o9qstKPfyaKBZkCI+lv4+Aw3hh8='; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'">
        <link rel="icon" href="data:,">
        <title>SideNode status</title>
        <style>
        :root { color-scheme: light dark; --bad: #c62828; --warn: #b26a00; --ok: #2e7d32; --line: #8884; }
        body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 72rem; padding: 0 1rem 2rem; }
        header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 0 1rem; }
        h1 { font-size: 1.3rem; margin: 1rem 0 .5rem; }
        h2 { font-size: 1rem; margin: 1.2rem 0 .4rem; border-bottom: 1px solid var(--line); }
        .mono, td.mono { font-family: ui-monospace, monospace; }
        #conn { padding: .1rem .6rem; border-radius: .3rem; background: var(--line); }
        body[data-state="live"] #conn { background: var(--ok); color: #fff; }
        body[data-state="unreachable"] #conn, body[data-state="error"] #conn { background: var(--bad); color: #fff;
          font-weight: bold; }
        body[data-state="unreachable"] main, body[data-state="error"] main { opacity: .45; }
        #alarm { background: var(--bad); color: #fff; font-weight: bold; padding: .6rem 1rem; border-radius: .3rem; }
        [hidden] { display: none !important; }
        .cols { display: grid; grid-template-columns: repeat(auto-fit, minmax(20rem, 1fr)); gap: 0 2rem; }
        dl { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: 0; }
        dt { color: GrayText; }
        dd { margin: 0; overflow-wrap: anywhere; }
        .warn { color: var(--warn); font-weight: bold; }
        .bad { color: var(--bad); font-weight: bold; }
        table { border-collapse: collapse; width: 100%; }
        th, td { text-align: left; padding: .15rem .6rem .15rem 0; border-bottom: 1px solid var(--line); }
        td.num, th.num { text-align: right; }
        #spark { display: block; margin-top: .5rem; color: var(--ok); }
        </style>
        </head>
        <body data-state="loading">
        <header>
        <h1>SideNode <span id="node-id" class="mono">—</span></h1>
        <span id="conn">loading…</span>
        </header>
        <p id="alarm" role="alert" hidden></p>
        <main>
        <div class="cols">
        <section>
        <h2>Consensus</h2>
        <dl>
        <dt>Chain</dt><dd id="chain">—</dd>
        <dt>Epoch</dt><dd id="epoch">—</dd>
        <dt>Height</dt><dd id="height">—</dd>
        <dt>Round</dt><dd id="round">—</dd>
        <dt>Leader</dt><dd id="leader" class="mono">—</dd>
        <dt>State id</dt><dd id="state-id" class="mono">—</dd>
        <dt>Syncing</dt><dd id="syncing">—</dd>
        <dt>Validator</dt><dd id="validator">—</dd>
        <dt>Transactions</dt><dd id="txs">—</dd>
        </dl>
        </section>
        <section>
        <h2>Last <span id="window">60</span> s</h2>
        <dl>
        <dt>Blocks/s</dt><dd id="bps">—</dd>
        <dt>Transactions/s</dt><dd id="tps">—</dd>
        <dt>Commit latency</dt><dd id="latency">—</dd>
        <dt>Node</dt><dd id="version">—</dd>
        <dt>Listening on</dt><dd id="listen">—</dd>
        <dt>Uptime</dt><dd id="uptime">—</dd>
        </dl>
        <svg id="spark" viewBox="0 0 300 40" width="300" height="40" role="img" aria-label="committed height">
        <polyline id="spark-line" fill="none" stroke="currentColor" stroke-width="1.5" points=""/>
        </svg>
        </section>
        </div>
        <section>
        <h2>Peers (<span id="peer-count">0</span>)</h2>
        <table id="peers">
        <thead><tr><th>Node</th><th>Address</th><th>Dir</th><th class="num">Ping</th><th class="num">Sent</th>
        <th class="num">Received</th></tr></thead>
        <tbody></tbody>
        </table>
        </section>
        <section>
        <h2>Checkpoints</h2>
        <p id="cp-off">—</p>
        <div id="cp-on" hidden>
        <dl>
        <dt>Status</dt><dd id="cp-status">—</dd>
        <dt>Bitcoin height</dt><dd id="cp-bitcoin">—</dd>
        <dt>Checkpoints left</dt><dd id="cp-left">—</dd>
        <dt>Coin</dt><dd id="cp-coin" class="mono">—</dd>
        </dl>
        <table id="checkpoints">
        <thead><tr><th class="num">Epoch</th><th class="num">Round</th><th>Txid</th><th>Status</th>
        <th class="num">Confirmations</th><th class="num">Bitcoin height</th></tr></thead>
        <tbody></tbody>
        </table>
        </div>
        </section>
        </main>
        <script>
        "use strict";
        (() => {
          const POLL_MS = 2000, TIMEOUT_MS = 5000, DASH = "—";
          // Relative, so the page also works behind a proxy under a prefix; from ".../status/" one level up.
          const SOURCE = location.pathname.endsWith("/status/") ? "../status.json" : "status.json";
          const $ = (id) => document.getElementById(id);
          let lastTime = null;

          const isNum = (v) => typeof v === "number" && Number.isFinite(v);
          const int = (v) => (isNum(v) ? String(v) : DASH);
          const fixed = (v, digits) => (isNum(v) ? v.toFixed(digits) : DASH);
          const str = (v) => (typeof v === "string" ? v : v === null || v === undefined ? DASH : String(v));
          const short = (v) => { const s = str(v); return s.length > 12 ? s.slice(0, 8) + "…" : s; };
          const clock = (t) => new Date(t * 1000).toLocaleTimeString("en-GB");

          function bytes(v) {
            if (!isNum(v)) return DASH;
            const units = ["B", "KiB", "MiB", "GiB", "TiB"];
            let i = 0;
            while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
            return (i === 0 ? String(v) : v.toFixed(1)) + " " + units[i];
          }

          function duration(s) {
            if (!isNum(s)) return DASH;
            const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
            return d ? d + "d " + h + "h" : h ? h + "h " + m + "m" : m + "m " + Math.floor(s % 60) + "s";
          }

          // Every value goes in as text: node ids, addresses and alarms come from peers and Bitcoin.
          function set(id, value, title, cls) {
            const e = $(id);
            e.textContent = value;
            e.title = title === undefined ? "" : str(title);
            if (cls !== undefined) e.className = cls;
          }

          function row(cells) {
            const tr = document.createElement("tr");
            for (const [value, cls, title] of cells) {
              const td = document.createElement("td");
              td.textContent = value;
              if (cls) td.className = cls;
              if (title !== undefined) td.title = str(title);
              tr.appendChild(td);
            }
            return tr;
          }

          function placeholder(columns, message) {
            const tr = row([[message]]);
            tr.firstChild.colSpan = columns;
            return tr;
          }

          function renderConsensus(info, st) {
            set("node-id", short(info.node_id), info.node_id);
            set("chain", str(info.chain_id));
            set("version", str(info.version));
            set("listen", str(info.listen));
            set("uptime", duration(info.uptime));
            if (!st || typeof st !== "object") {
              for (const id of ["epoch", "height", "round", "leader", "state-id", "syncing", "validator", "txs"]) {
                set(id, DASH);
              }
              set("epoch", "no genesis: consensus off");
              return;
            }
            set("epoch", int(st.epoch));
            set("height", int(st.committed_height));
            set("round", int(st.round));
            const self = st.leader === info.node_id && typeof st.leader === "string";
            set("leader", short(st.leader) + (self ? " (this node)" : ""), st.leader);
            set("state-id", short(st.commit_state_id), st.commit_state_id);
            if (st.syncing === true) set("syncing", "yes, to height " + int(st.sync_target), undefined, "warn");
            else set("syncing", st.syncing === false ? "no" : DASH, undefined, "");
            set("validator", st.validator === true ? "yes" : st.validator === false ? "no (full node)" : DASH);
            set("txs", int(st.committed_transactions) + " committed, " + int(st.failed_transactions) +
              " failed since start");
          }

          function renderRecent(r) {
            if (!r || typeof r !== "object") r = {};
            set("window", int(r.window_seconds));
            set("bps", fixed(r.blocks_per_second, 2));
            set("tps", fixed(r.transactions_per_second, 1));
            const l = r.commit_latency_ms;
            set("latency", l && typeof l === "object" ? "p50 " + fixed(l.p50, 0) + " ms, p99 " + fixed(l.p99, 0) +
              " ms" : DASH);
            const points = (Array.isArray(r.samples) ? r.samples : [])
              .filter((s) => s && isNum(s.time) && isNum(s.height));
            let line = "";
            if (points.length > 1) {
              const t0 = points[0].time, t1 = points[points.length - 1].time;
              const h0 = Math.min(...points.map((s) => s.height)), h1 = Math.max(...points.map((s) => s.height));
              line = points.map((s) => {
                const x = t1 > t0 ? ((s.time - t0) / (t1 - t0)) * 298 + 1 : 1;
                const y = h1 > h0 ? 39 - ((s.height - h0) / (h1 - h0)) * 38 : 20;
                return x.toFixed(1) + "," + y.toFixed(1);
              }).join(" ");
            }
            $("spark-line").setAttribute("points", line);
            $("spark").setAttribute("aria-label", "committed height over the last " + int(r.window_seconds) + " s");
          }

          function renderPeers(peers) {
            const list = Array.isArray(peers) ? peers : [];
            const rows = list.map((p) => {
              const tr = row([
                [short(p.node_id), "mono", p.node_id],
                [str(p.address)],
                [p.inbound === true ? "in" : p.inbound === false ? "out" : DASH],
                [isNum(p.ping_time) ? (p.ping_time * 1000).toFixed(1) + " ms" : DASH, "num"],
                [bytes(p.bytes_sent), "num"],
                [bytes(p.bytes_recv), "num"],
              ]);
              tr.className = "peer";
              return tr;
            });
            $("peers").tBodies[0].replaceChildren(...(rows.length ? rows : [placeholder(6, "no peers connected")]));
            set("peer-count", String(rows.length));
          }

          function renderCheckpoints(cp) {
            const alarm = $("alarm");
            if (!cp || typeof cp !== "object") {
              $("cp-on").hidden = true;
              $("cp-off").hidden = false;
              set("cp-off", "Checkpointing is off on this node (no checkpoint coin in the genesis or no esplora).");
              alarm.hidden = true;
              return;
            }
            $("cp-on").hidden = false;
            $("cp-off").hidden = true;
            const halted = cp.status !== "ok" || (cp.alarm !== null && cp.alarm !== undefined);
            set("cp-status", str(cp.status), undefined, halted ? "bad" : "");
            set("cp-bitcoin", int(cp.bitcoin_height));
            const left = cp.checkpoints_left;
            set("cp-left", isNum(left) && left < 20 ? int(left) + " (low: top the coin up)" : int(left), undefined,
              isNum(left) && left < 20 ? "warn" : "");
            set("cp-coin", str(cp.coin));
            const all = Array.isArray(cp.checkpoints) ? cp.checkpoints : [];
            const rows = all.slice(-8).reverse().map((c) => {
              const tr = row([
                [int(c.epoch), "num"],
                [int(c.round), "num"],
                [short(c.txid), "mono", c.txid],
                [str(c.status)],
                [int(c.confirmations), "num"],
                [int(c.bitcoin_height), "num"],
              ]);
              tr.className = "checkpoint";
              return tr;
            });
            $("checkpoints").tBodies[0].replaceChildren(...(rows.length ? rows : [placeholder(6, "none yet")]));
            alarm.hidden = !halted;
            alarm.textContent = halted ? "Checkpoint alarm (" + str(cp.status) + "): " +
              (typeof cp.alarm === "string" ? cp.alarm : "checkpointing stopped") : "";
          }

          function setState(state, message) {
            document.body.dataset.state = state;
            set("conn", message);
          }

          async function poll() {
            const abort = new AbortController();
            const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
            let data;
            try {
              const response = await fetch(SOURCE, { cache: "no-store", signal: abort.signal });
              if (!response.ok) throw new Error("HTTP " + response.status);
              data = await response.json();
            } catch (e) {
              const why = e && e.name === "AbortError" ? "no answer in 5 s" : e && e.message ? e.message : "error";
              setState("unreachable", "UNREACHABLE: " + why + (lastTime ? ", last update " + clock(lastTime) : ""));
              data = null;
            } finally {
              clearTimeout(timer);
            }
            if (data !== null) {
              try {
                renderConsensus(data.info && typeof data.info === "object" ? data.info : {}, data.status);
                renderRecent(data.recent);
                renderPeers(data.peers);
                renderCheckpoints(data.checkpoints);
                lastTime = isNum(data.time) ? data.time : Date.now() / 1000;
                setState("live", "live, updated " + clock(lastTime));
              } catch (e) {
                setState("error", "BAD RESPONSE: " + (e && e.message ? e.message : "error"));
              }
            }
            setTimeout(poll, POLL_MS);
          }

          poll();
        })();
        </script>
        </body>
        </html>
        """#
}
