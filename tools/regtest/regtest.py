#!/usr/bin/env python3
"""A local Bitcoin regtest chain for SideNode's tests and local testnet.

Every block is validated by Bitcoin Core's own validation engine (libbitcoinkernel,
through py-bitcoinkernel). The node mines a block every --block-interval seconds and on
request, keeps a mempool with basic policy, and serves the esplora HTTP API on
127.0.0.1 (plus POST /regtest/mine, POST /regtest/faucet and POST /regtest/reorg, which
replaces the last blocks with a longer branch that may carry a conflicting transaction).

A submitted transaction is checked first against policy (standard outputs, one
OP_RETURN of at most 83 bytes, dust, 1 sat/vB, conflicts and replacement by a higher
fee), then by Bitcoin Core itself: a candidate block holding the mempool and the new
transaction is validated on a scratch copy of the chain, and a rejection is returned
with Core's own reason (which libbitcoinkernel reports only through its log).

    tools/regtest/regtest.py --port 3002 [--block-interval 2] [--datadir DIR [--resume]]

With --datadir the chain is kept there as it grows (blocks.hex, mempool.hex,
faucet_key.hex); --resume reloads it, validating every block again with Bitcoin
Core's engine, instead of starting a new chain.
"""

import argparse
import copy
import hashlib
import json
import os
import shutil
import signal
import struct
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pbk
from embit import ec
from embit import script as escript
from embit.transaction import Transaction as EmbitTx

COIN = 100_000_000
MIN_RELAY_FEE_RATE = 1.0  # sat/vB
MAX_OP_RETURN_SCRIPT = 83  # bytes, Bitcoin Core's default -datacarriersize


def sha256d(b):
    return hashlib.sha256(hashlib.sha256(b).digest()).digest()


def compact(n):
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + struct.pack("<H", n)
    if n <= 0xFFFFFFFF:
        return b"\xfe" + struct.pack("<I", n)
    return b"\xff" + struct.pack("<Q", n)


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("truncated transaction")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self):
        return self.take(1)[0]

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def compact(self):
        first = self.u8()
        if first < 0xFD:
            return first
        return struct.unpack({0xFD: "<H", 0xFE: "<I", 0xFF: "<Q"}[first], self.take({0xFD: 2, 0xFE: 4, 0xFF: 8}[first]))[0]

    def var(self):
        return self.take(self.compact())


class Tx:
    """A parsed transaction: enough for indexing, policy and the esplora JSON."""

    def __init__(self, raw, reader=None):
        r = reader or Reader(raw)
        start = r.pos
        self.version = struct.unpack("<i", r.take(4))[0]
        n = r.compact()
        segwit = False
        if n == 0:
            if r.u8() != 1:
                raise ValueError("bad segwit flag")
            segwit = True
            n = r.compact()
        self.vin = []
        for _ in range(n):
            prev = r.take(32)[::-1].hex()
            vout = r.u32()
            self.vin.append({"txid": prev, "vout": vout, "scriptsig": r.var(), "sequence": r.u32(), "witness": []})
        self.vout = [{"value": struct.unpack("<Q", r.take(8))[0], "spk": r.var()} for _ in range(r.compact())]
        if segwit:
            for i in self.vin:
                i["witness"] = [r.var() for _ in range(r.compact())]
        self.locktime = r.u32()
        if reader is not None:
            raw = r.data[start:r.pos]  # one transaction of a block
        elif r.pos != len(raw):
            raise ValueError("trailing bytes after the transaction")
        self.raw = raw
        self.stripped = self.serialize(False)
        self.txid = sha256d(self.stripped)[::-1].hex()
        self.weight = len(self.stripped) * 3 + len(raw)
        self.vsize = (self.weight + 3) // 4
        self.coinbase = len(self.vin) == 1 and self.vin[0]["txid"] == "00" * 32 and self.vin[0]["vout"] == 0xFFFFFFFF

    def serialize(self, witness=True):
        has_witness = witness and any(i["witness"] for i in self.vin)
        out = struct.pack("<i", self.version) + (b"\x00\x01" if has_witness else b"")
        out += compact(len(self.vin))
        for i in self.vin:
            out += bytes.fromhex(i["txid"])[::-1] + struct.pack("<I", i["vout"]) + compact(len(i["scriptsig"])) + i["scriptsig"] + struct.pack("<I", i["sequence"])
        out += compact(len(self.vout))
        for o in self.vout:
            out += struct.pack("<Q", o["value"]) + compact(len(o["spk"])) + o["spk"]
        if has_witness:
            for i in self.vin:
                out += compact(len(i["witness"])) + b"".join(compact(len(w)) + w for w in i["witness"])
        return out + struct.pack("<I", self.locktime)


def address_of(spk):
    """The regtest address of a segwit output script, else None."""
    try:
        return escript.Script(spk).address(NETWORK)
    except Exception:
        return None


def dust_threshold(spk):
    """Bitcoin Core's dust limit at the default 3 sat/vB dust relay fee."""
    if spk[:1] == b"\x6a":
        return 0
    if len(spk) == 22 and spk[0] == 0:
        return 294
    if len(spk) >= 4 and (spk[0] == 0 or 0x51 <= spk[0] <= 0x60):
        return 330
    return 546


def is_standard_output(spk):
    if spk[:1] == b"\x6a":
        return len(spk) <= MAX_OP_RETURN_SCRIPT
    if len(spk) == 22 and spk[:2] == b"\x00\x14":  # P2WPKH
        return True
    if len(spk) == 34 and spk[:2] in (b"\x00\x20", b"\x51\x20"):  # P2WSH, P2TR
        return True
    if len(spk) == 25 and spk[:3] == b"\x76\xa9\x14" and spk[23:] == b"\x88\xac":  # P2PKH
        return True
    if len(spk) == 23 and spk[:2] == b"\xa9\x14" and spk[22:] == b"\x87":  # P2SH
        return True
    return False


NETWORK = escript.NETWORKS["regtest"]


class Rejected(Exception):
    """A transaction refused, with the reason bitcoind would give."""


class KernelChain:
    """One libbitcoinkernel chainstate, and what it said about the last block."""

    log_lock = threading.Lock()
    log = []
    _connection = None

    @classmethod
    def start_logging(cls):
        if cls._connection is None:
            pbk.logging_set_options(pbk.LoggingOptions(log_timestamps=False))
            pbk.enable_log_category(pbk.LogCategory.VALIDATION)
            cls._connection = pbk.LoggingConnection(cb=lambda msg: cls.log.append(str(msg)))

    def __init__(self, datadir):
        KernelChain.start_logging()
        self.datadir = datadir
        os.makedirs(datadir, exist_ok=True)
        self.checked = []
        opts = pbk.ContextOptions()
        opts.set_chainparams(pbk.ChainParameters(pbk.ChainType.REGTEST))
        opts.set_validation_interface(pbk.ValidationInterfaceCallbacks(
            block_checked=lambda ud, block, state: self.checked.append((state.validation_mode, state.block_validation_result))))
        self.context = pbk.Context(opts)
        cmo = pbk.ChainstateManagerOptions(self.context, datadir, os.path.join(datadir, "blocks"))
        cmo.update_block_tree_db_in_memory(True)
        cmo.update_chainstate_db_in_memory(True)
        self.chainman = pbk.ChainstateManager(cmo)

    @property
    def height(self):
        return self.chainman.get_active_chain().height

    def process(self, raw_block):
        """Validates a block with Bitcoin Core's engine; returns None when it became the
        tip, else Core's reason."""
        before = self.height
        self.checked.clear()
        del KernelChain.log[:]
        try:
            self.chainman.process_block(pbk.Block(raw_block))
        except pbk.ProcessBlockException as e:
            return f"block rejected before validation (code {e}): " + self.reason()
        if self.height == before + 1:
            return None
        return self.reason() or f"block not connected: {self.checked}"

    @staticmethod
    def reason():
        # e.g. "... ConnectBlock ... failed, block-script-verify-flag-failed (Invalid Schnorr signature), ..."
        for line in KernelChain.log:
            if "Block validation error:" in line:
                return line.split("Block validation error:", 1)[1].strip().split(", input ")[0]
        for line in KernelChain.log:
            if "failed," in line:
                return line.split("failed,", 1)[1].strip().split(", ")[0]
        return KernelChain.log[-1].strip() if KernelChain.log else ""

    def close(self):
        del self.chainman
        del self.context
        shutil.rmtree(self.datadir, ignore_errors=True)


class Node:
    """The chain. With --datadir it is kept there (blocks.hex: one raw block per line
    from height 1, rewritten after a reorg; mempool.hex; faucet_key.hex) and --resume
    reloads it: every block validated again by Bitcoin Core's engine."""

    def __init__(self, datadir, persist=False):
        self.lock = threading.RLock()
        self.datadir = datadir
        self.persist = persist
        self.chain = KernelChain(os.path.join(datadir, "chain"))
        self.scratch = None  # built on demand; see check_with_core
        self.blocks = []  # raw blocks, index = height (0 = genesis placeholder)
        self.block_info = []  # per height: hash, time, txids, size, weight, prev, merkle, nonce
        self.txs = {}  # txid -> Tx
        self.tx_height = {}  # txid -> height (confirmed)
        self.utxos = {}  # (txid, vout) -> {"value", "spk", "height", "coinbase"}
        self.spent = {}  # (txid, vout) -> (spending txid, vin)
        self.mempool = {}  # txid -> {"tx", "fee"}, in arrival order
        self.faucet_key = ec.PrivateKey(self._faucet_secret())
        self.faucet_spk = escript.p2wpkh(self.faucet_key.get_public_key()).data
        genesis = self.chain.chainman.get_active_chain().block_tree_entries[0]
        self.block_info.append({"hash": str(genesis.block_hash), "prev": None, "time": 1296688602, "txids": [], "size": 285, "weight": 1140, "merkle": "", "nonce": 2, "raw": None})
        self.blocks.append(None)
        self.genesis_hash_internal = bytes(genesis.block_hash)

    # Kept on disk

    def path(self, name):
        return os.path.join(self.datadir, name)

    def _faucet_secret(self):
        """The faucet's key: kept beside the blocks so that a resumed chain can spend its coinbases."""
        if self.persist and os.path.exists(self.path("faucet_key.hex")):
            return bytes.fromhex(open(self.path("faucet_key.hex")).read().strip())
        secret = os.urandom(32)
        if self.persist:
            self._write("faucet_key.hex", secret.hex() + "\n")
        return secret

    def _write(self, name, text):
        tmp = self.path(name + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path(name))

    def save_blocks(self):
        if self.persist:
            self._write("blocks.hex", "".join(raw.hex() + "\n" for raw in self.blocks[1:]))

    def save_mempool(self):
        if self.persist:
            self._write("mempool.hex", "".join(e["tx"].raw.hex() + "\n" for e in self.mempool.values()))

    def load(self):
        """Replays blocks.hex through Bitcoin Core's engine and refills the mempool from
        mempool.hex (each transaction checked again). Returns the number of blocks."""
        lines = open(self.path("blocks.hex")).read().split("\n")
        with self.lock:
            for n, line in enumerate(lines):
                if not line.strip():
                    continue
                try:
                    raw = bytes.fromhex(line.strip())
                except ValueError:
                    if n == len(lines) - 1:
                        break  # a torn last line: the block was never acknowledged
                    raise
                height = self.height + 1
                reason = self.chain.process(raw)
                if reason is not None:
                    raise SystemExit(f"regtest: saved block {height} refused by Bitcoin Core: {reason}")
                r = Reader(raw)
                header = r.take(80)
                txs = [Tx(None, r) for _ in range(r.compact())]
                info = {"hash": sha256d(header)[::-1].hex(), "time": struct.unpack("<I", header[68:72])[0],
                        "merkle": header[36:68][::-1].hex(), "nonce": struct.unpack("<I", header[76:80])[0],
                        "prev": header[4:36][::-1].hex()}
                self.connect(raw, txs, info, height, save=False)
            self.save_blocks()  # without a torn line
            kept = 0
            if os.path.exists(self.path("mempool.hex")):
                for line in open(self.path("mempool.hex")).read().split():
                    try:
                        self.accept(bytes.fromhex(line))
                        kept += 1
                    except (Rejected, ValueError) as e:
                        print(f"regtest: a saved mempool transaction is dropped: {e}", file=sys.stderr)
            self.save_mempool()
        return self.height, kept

    # Blocks

    @property
    def height(self):
        return len(self.block_info) - 1

    def tip_internal(self):
        return self.genesis_hash_internal if self.height == 0 else bytes.fromhex(self.block_info[-1]["hash"])[::-1]

    def build_block(self, txs, coinbase_spk, prev_internal, height, fees, prev_time=None):
        subsidy = (50 * COIN) >> (height // 150)
        height_push = bytes([0x50 + height]) if 1 <= height <= 16 else self._script_num(height)
        coinbase_outputs = [(subsidy + fees, coinbase_spk)]
        has_witness = any(any(i["witness"] for i in t.vin) for t in txs)
        if has_witness:
            wtxids = [b"\x00" * 32] + [sha256d(t.raw) for t in txs]
            commitment = sha256d(self._merkle(wtxids) + b"\x00" * 32)
            coinbase_outputs.append((0, b"\x6a\x24\xaa\x21\xa9\xed" + commitment))
        coinbase = struct.pack("<i", 2)
        if has_witness:
            coinbase += b"\x00\x01"
        coinbase += b"\x01" + b"\x00" * 32 + b"\xff\xff\xff\xff"
        script_sig = height_push + b"\x04" + os.urandom(4)
        coinbase += compact(len(script_sig)) + script_sig + b"\xff\xff\xff\xff"
        coinbase += compact(len(coinbase_outputs)) + b"".join(struct.pack("<Q", v) + compact(len(s)) + s for v, s in coinbase_outputs)
        if has_witness:
            coinbase += b"\x01\x20" + b"\x00" * 32
        coinbase += b"\x00\x00\x00\x00"
        cb = Tx(coinbase)
        all_txs = [cb] + txs
        merkle = self._merkle([bytes.fromhex(t.txid)[::-1] for t in all_txs])
        if prev_time is None:
            prev_time = self.block_info[-1]["time"] if prev_internal == self.tip_internal() else int(time.time())
        timestamp = max(int(time.time()), prev_time + 1)
        header_base = struct.pack("<i", 0x20000000) + prev_internal + merkle + struct.pack("<I", timestamp) + struct.pack("<I", 0x207FFFFF)
        target = 0x7FFFFF << (8 * (0x20 - 3))
        nonce = 0
        while True:
            header = header_base + struct.pack("<I", nonce)
            if int.from_bytes(sha256d(header), "little") <= target:
                break
            nonce += 1
        raw = header + compact(len(all_txs)) + b"".join(t.raw for t in all_txs)
        return raw, all_txs, {"hash": sha256d(header)[::-1].hex(), "time": timestamp, "merkle": merkle[::-1].hex(), "nonce": nonce, "prev": prev_internal[::-1].hex()}

    @staticmethod
    def _script_num(n):
        out = b""
        while n:
            out += bytes([n & 0xFF])
            n >>= 8
        if out[-1] & 0x80:
            out += b"\x00"
        return bytes([len(out)]) + out

    @staticmethod
    def _merkle(hashes):
        level = list(hashes)
        while len(level) > 1:
            if len(level) % 2:
                level.append(level[-1])
            level = [sha256d(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
        return level[0]

    def mine(self, count=1, coinbase_spk=None):
        hashes = []
        with self.lock:
            for _ in range(count):
                txs = [entry["tx"] for entry in self.mempool.values()]
                fees = sum(entry["fee"] for entry in self.mempool.values())
                height = self.height + 1
                raw, all_txs, info = self.build_block(txs, coinbase_spk or self.faucet_spk, self.tip_internal(), height, fees)
                reason = self.chain.process(raw)
                if reason is not None:
                    # Should not happen (every transaction passed Core before entering the
                    # mempool): drop the mempool rather than stall, and say why.
                    print(f"regtest: Bitcoin Core rejected block {height}: {reason}; mempool dropped", file=sys.stderr)
                    self.mempool.clear()
                    continue
                if self.scratch is not None and self.scratch.process(raw) is not None:
                    self._drop_scratch()
                self.connect(raw, all_txs, info, height)
                hashes.append(info["hash"])
            self.save_mempool()
        return hashes

    def connect(self, raw, all_txs, info, height, save=True):
        self.blocks.append(raw)
        if save and self.persist:
            with open(self.path("blocks.hex"), "a") as f:
                f.write(raw.hex() + "\n")
        info.update({"txids": [t.txid for t in all_txs], "size": len(raw), "weight": sum(t.weight for t in all_txs) + 80 * 4 + len(compact(len(all_txs))) * 4})
        self.block_info.append(info)
        for t in all_txs:
            self.txs[t.txid] = t
            self.tx_height[t.txid] = height
            self.mempool.pop(t.txid, None)
            if not t.coinbase:
                for n, i in enumerate(t.vin):
                    self.utxos.pop((i["txid"], i["vout"]), None)
                    self.spent[(i["txid"], i["vout"])] = (t.txid, n)
            for n, o in enumerate(t.vout):
                if o["spk"][:1] != b"\x6a":
                    self.utxos[(t.txid, n)] = {"value": o["value"], "spk": o["spk"], "height": height, "coinbase": t.coinbase}

    def reorg(self, depth, replace=None, drop=()):
        """Replaces the last `depth` blocks with a branch one block longer, mined on the
        block before them, which Bitcoin Core's engine then switches to (a reorg). The
        disconnected transactions go back in, except `drop` (txids); `replace` maps a txid
        to a conflicting transaction (raw bytes) mined in its place. Returns the new
        branch's block hashes; on any failure nothing changes."""
        replace = replace or {}
        with self.lock:
            if not 1 <= depth <= min(self.height - 1, 100):
                raise Rejected(f"depth must be 1…{min(self.height - 1, 100)}")
            saved = copy.deepcopy((self.blocks, self.block_info, self.tx_height, self.utxos, self.spent, self.mempool))
            known = dict(self.txs)
            try:
                fork = self.height - depth
                returned = []
                for h in range(self.height, fork, -1):
                    block_txs = [self.txs[t] for t in self.block_info[h]["txids"]]
                    for t in reversed(block_txs):
                        self.tx_height.pop(t.txid, None)
                        for n in range(len(t.vout)):
                            self.utxos.pop((t.txid, n), None)
                        if t.coinbase:
                            continue
                        for i in t.vin:
                            key = (i["txid"], i["vout"])
                            self.spent.pop(key, None)
                            prev = self.txs[i["txid"]]
                            if i["txid"] in self.tx_height:
                                o = prev.vout[i["vout"]]
                                self.utxos[key] = {"value": o["value"], "spk": o["spk"], "height": self.tx_height[i["txid"]], "coinbase": prev.coinbase}
                        returned.insert(0, t)
                    self.blocks.pop()
                    self.block_info.pop()
                old_mempool = [e["tx"] for e in self.mempool.values()]
                self.mempool = {}
                for t in [Tx(replace[t.txid]) if t.txid in replace else t for t in returned if t.txid not in drop] + old_mempool:
                    if t.txid in self.mempool or any(self.spent_in_mempool((i["txid"], i["vout"])) for i in t.vin):
                        continue  # a conflict of something already back in
                    found = [self.prevout(i["txid"], i["vout"]) for i in t.vin]
                    if any(f is None for f in found):
                        continue  # its parent was dropped
                    self.txs[t.txid] = t
                    fee = sum(f[0] for f in found) - sum(o["value"] for o in t.vout)
                    self.mempool[t.txid] = {"tx": t, "fee": fee, "time": int(time.time())}
                built = []
                prev = self.tip_internal()
                # Later than the blocks it replaces (median-time-past stays behind it).
                prev_time = max(b["time"] for b in saved[1][fork:])
                for k in range(depth + 1):
                    txs = [e["tx"] for e in self.mempool.values()] if k == 0 else []
                    fees = sum(e["fee"] for e in self.mempool.values()) if k == 0 else 0
                    raw, all_txs, info = self.build_block(txs, self.faucet_spk, prev, fork + 1 + k, fees, prev_time)
                    built.append((raw, all_txs, info))
                    prev = bytes.fromhex(info["hash"])[::-1]
                    prev_time = info["time"]
                before = self.chain.height
                for raw, _, _ in built:
                    try:
                        self.chain.chainman.process_block(pbk.Block(raw))
                    except pbk.ProcessBlockException as e:
                        raise Rejected(f"Bitcoin Core refused a block of the new branch (code {e}): {KernelChain.reason()}")
                if self.chain.height != before + 1:
                    raise Rejected(f"Bitcoin Core did not switch to the new branch: {KernelChain.reason()}")
                for k, (raw, all_txs, info) in enumerate(built):
                    self.connect(raw, all_txs, info, fork + 1 + k, save=False)
                self.save_blocks()
                self.save_mempool()
            except Exception:
                self.blocks, self.block_info, self.tx_height, self.utxos, self.spent, self.mempool = saved
                self.txs = known
                raise
            finally:
                self._drop_scratch()
            return [info["hash"] for _, _, info in built]

    # Mempool

    def prevout(self, txid, vout):
        """The output (value, spk) a transaction would spend, confirmed or in the mempool."""
        if (txid, vout) in self.utxos:
            u = self.utxos[(txid, vout)]
            return u["value"], u["spk"], u
        if txid in self.mempool and vout < len(self.mempool[txid]["tx"].vout):
            o = self.mempool[txid]["tx"].vout[vout]
            return o["value"], o["spk"], None
        return None

    def accept(self, raw):
        with self.lock:
            try:
                tx = Tx(raw)
            except Exception as e:
                raise Rejected(f"TX decode failed: {e}")
            if tx.coinbase:
                raise Rejected("coinbase")
            if tx.txid in self.mempool or tx.txid in self.tx_height:
                raise Rejected("txn-already-known" if tx.txid in self.mempool else "txn-already-in-mempool")
            if not tx.vin or not tx.vout:
                raise Rejected("bad-txns-vin-empty" if not tx.vin else "bad-txns-vout-empty")
            op_returns = 0
            for o in tx.vout:
                if not is_standard_output(o["spk"]):
                    raise Rejected("scriptpubkey" if o["spk"][:1] != b"\x6a" else "datacarrier")
                if o["spk"][:1] == b"\x6a":
                    op_returns += 1
                elif o["value"] < dust_threshold(o["spk"]):
                    raise Rejected("dust")
            if op_returns > 1:
                raise Rejected("multi-op-return")
            total_in = 0
            conflicts = set()
            for i in tx.vin:
                key = (i["txid"], i["vout"])
                found = self.prevout(*key)
                if found is None:
                    raise Rejected("bad-txns-inputs-missingorspent")
                value, _, utxo = found
                if utxo and utxo["coinbase"] and self.height + 1 - utxo["height"] < 100:
                    raise Rejected("bad-txns-premature-spend-of-coinbase")
                for other_id, other in self.mempool.items():
                    if any((j["txid"], j["vout"]) == key for j in other["tx"].vin):
                        conflicts.add(other_id)
                total_in += value
            total_out = sum(o["value"] for o in tx.vout)
            if total_out > total_in:
                raise Rejected("bad-txns-in-belowout")
            fee = total_in - total_out
            if fee < MIN_RELAY_FEE_RATE * tx.vsize:
                raise Rejected(f"min relay fee not met, {fee} < {int(MIN_RELAY_FEE_RATE * tx.vsize)}")
            if conflicts:
                # Replacement (full RBF, as Bitcoin Core 28 by default): a higher fee and
                # fee rate than everything it replaces, descendants included.
                replaced = self.with_descendants(conflicts)
                old_fee = sum(self.mempool[t]["fee"] for t in replaced)
                old_rate = max(self.mempool[t]["fee"] / self.mempool[t]["tx"].vsize for t in replaced)
                if fee <= old_fee or fee / tx.vsize <= old_rate:
                    raise Rejected(f"insufficient fee, rejecting replacement {tx.txid}; new fee {fee} not above {old_fee}")
                if any(i["txid"] in replaced for i in tx.vin):
                    raise Rejected("replacement-adds-unconfirmed")
            else:
                replaced = set()
            kept = [e["tx"] for t, e in self.mempool.items() if t not in replaced]
            reason = self.check_with_core(kept + [tx])
            if reason is not None:
                raise Rejected(reason)
            for t in replaced:
                del self.mempool[t]
            self.mempool[tx.txid] = {"tx": tx, "fee": fee, "time": int(time.time())}
            self.txs[tx.txid] = tx
            self.save_mempool()
            return tx.txid

    def with_descendants(self, roots):
        out = set(roots)
        changed = True
        while changed:
            changed = False
            for t, e in self.mempool.items():
                if t not in out and any(i["txid"] in out for i in e["tx"].vin):
                    out.add(t)
                    changed = True
        return out

    def check_with_core(self, txs):
        """Validates a candidate block (the given transactions on the current tip) with
        Bitcoin Core on a scratch chainstate; returns Core's reason, or None if valid."""
        if self.scratch is None:
            self.scratch = KernelChain(tempfile.mkdtemp(prefix="scratch-", dir=self.datadir))
            for raw in self.blocks[1:]:
                self.scratch.process(raw)
        raw, _, _ = self.build_block(txs, self.faucet_spk, self.tip_internal(), self.height + 1, 0)
        reason = self.scratch.process(raw)
        if reason is None:
            self._drop_scratch()  # it moved past the real tip: rebuilt at the next check
        return reason

    def _drop_scratch(self):
        if self.scratch is not None:
            self.scratch.close()
            self.scratch = None

    # Faucet

    def faucet(self, address, sats):
        with self.lock:
            spk = escript.address_to_scriptpubkey(address).data
            spendable = sorted(
                ((k, u) for k, u in self.utxos.items() if u["spk"] == self.faucet_spk and (not u["coinbase"] or self.height + 1 - u["height"] >= 100) and not self.spent_in_mempool(k)),
                key=lambda item: item[1]["height"])
            if not spendable:
                raise Rejected("the faucet has no mature coins yet")
            (txid, vout), utxo = spendable[0]
            if utxo["value"] < sats + 10_000:
                raise Rejected(f"the faucet coin holds {utxo['value']} sats, less than {sats}")
            fee = 200
            tx = EmbitTx.from_string(self.unsigned_hex(txid, vout, [(sats, spk), (utxo["value"] - sats - fee, self.faucet_spk)]))
            sighash = tx.sighash_segwit(0, escript.p2pkh(self.faucet_key.get_public_key()), utxo["value"])
            signature = self.faucet_key.sign(sighash).serialize() + b"\x01"
            tx.vin[0].witness = escript.Witness([signature, self.faucet_key.get_public_key().sec()])
            return self.accept(tx.serialize())

    @staticmethod
    def unsigned_hex(txid, vout, outputs):
        out = struct.pack("<i", 2) + b"\x01" + bytes.fromhex(txid)[::-1] + struct.pack("<I", vout) + b"\x00" + struct.pack("<I", 0xFFFFFFFD)
        out += compact(len(outputs)) + b"".join(struct.pack("<Q", v) + compact(len(s)) + s for v, s in outputs)
        return (out + b"\x00\x00\x00\x00").hex()

    def spent_in_mempool(self, key):
        return any((i["txid"], i["vout"]) == key for e in self.mempool.values() for i in e["tx"].vin)

    # Esplora JSON

    def status(self, txid):
        if txid in self.tx_height:
            h = self.tx_height[txid]
            b = self.block_info[h]
            return {"confirmed": True, "block_height": h, "block_hash": b["hash"], "block_time": b["time"]}
        return {"confirmed": False}

    def tx_json(self, t):
        vin = []
        fee = 0
        for i in t.vin:
            entry = {"txid": i["txid"], "vout": i["vout"], "scriptsig": i["scriptsig"].hex(), "witness": [w.hex() for w in i["witness"]], "sequence": i["sequence"], "is_coinbase": t.coinbase}
            prev = self.txs.get(i["txid"])
            if prev is not None and not t.coinbase:
                o = prev.vout[i["vout"]]
                entry["prevout"] = {"scriptpubkey": o["spk"].hex(), "scriptpubkey_address": address_of(o["spk"]), "value": o["value"]}
                fee += o["value"]
            vin.append(entry)
        vout = [{"scriptpubkey": o["spk"].hex(), "scriptpubkey_address": address_of(o["spk"]), "value": o["value"]} for o in t.vout]
        fee = 0 if t.coinbase else fee - sum(o["value"] for o in t.vout)
        return {"txid": t.txid, "version": t.version, "locktime": t.locktime, "vin": vin, "vout": vout, "size": len(t.raw), "weight": t.weight, "fee": fee, "status": self.status(t.txid)}

    def address_utxos(self, spk):
        out = []
        for (txid, vout), u in self.utxos.items():
            if u["spk"] == spk:
                out.append({"txid": txid, "vout": vout, "value": u["value"], "status": self.status(txid)})
        for txid, e in self.mempool.items():
            for n, o in enumerate(e["tx"].vout):
                if o["spk"] == spk:
                    out.append({"txid": txid, "vout": n, "value": o["value"], "status": {"confirmed": False}})
        return [u for u in out if not self.spent_in_mempool((u["txid"], u["vout"]))]

    def outspend(self, txid, vout):
        for t, e in self.mempool.items():
            for n, i in enumerate(e["tx"].vin):
                if (i["txid"], i["vout"]) == (txid, vout):
                    return {"spent": True, "txid": t, "vin": n, "status": {"confirmed": False}}
        if (txid, vout) in self.spent:
            t, n = self.spent[(txid, vout)]
            return {"spent": True, "txid": t, "vin": n, "status": self.status(t)}
        return {"spent": False}

    def fee_estimates(self):
        # An empty regtest mempool clears at the minimum; a busy one at its median rate.
        rates = sorted(e["fee"] / e["tx"].vsize for e in self.mempool.values())
        base = max(1.0, rates[len(rates) // 2] if rates else 1.0)
        return {str(k): round(base * (1.5 if k <= 2 else 1.0), 3) for k in (1, 2, 3, 4, 5, 6, 10, 20, 144, 504, 1008)}


class Handler(BaseHTTPRequestHandler):
    node = None
    prefix = ""

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body, content_type="text/plain"):
        data = body if isinstance(body, bytes) else (json.dumps(body) if not isinstance(body, str) else body).encode()
        if not isinstance(body, (bytes, str)):
            content_type = "application/json"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def path_parts(self):
        path = self.path.split("?")[0]
        if self.prefix and path.startswith(self.prefix):
            path = path[len(self.prefix):]
        return [p for p in path.split("/") if p]

    def do_GET(self):
        n = self.node
        p = self.path_parts()
        try:
            with n.lock:
                if p == ["blocks", "tip", "height"]:
                    return self.reply(200, str(n.height))
                if p == ["blocks", "tip", "hash"]:
                    return self.reply(200, n.block_info[-1]["hash"])
                if len(p) == 2 and p[0] == "block-height":
                    h = int(p[1])
                    return self.reply(200, n.block_info[h]["hash"]) if 0 <= h <= n.height else self.reply(404, "Block not found")
                if len(p) >= 2 and p[0] == "block":
                    h = next((i for i, b in enumerate(n.block_info) if b["hash"] == p[1]), None)
                    if h is None:
                        return self.reply(404, "Block not found")
                    b = n.block_info[h]
                    if len(p) == 2:
                        return self.reply(200, {"id": b["hash"], "height": h, "version": 0x20000000, "timestamp": b["time"], "tx_count": len(b["txids"]), "size": b["size"], "weight": b["weight"], "merkle_root": b["merkle"], "previousblockhash": b["prev"], "nonce": b["nonce"], "bits": 0x207FFFFF})
                    if p[2] == "raw" and n.blocks[h] is not None:
                        return self.reply(200, n.blocks[h], "application/octet-stream")
                    if p[2] == "txids":
                        return self.reply(200, b["txids"])
                    if p[2] == "status":
                        return self.reply(200, {"in_best_chain": True, "height": h, "next_best": n.block_info[h + 1]["hash"] if h < n.height else None})
                if len(p) >= 2 and p[0] == "tx":
                    t = n.txs.get(p[1])
                    if t is None:
                        return self.reply(404, "Transaction not found")
                    if len(p) == 2:
                        return self.reply(200, n.tx_json(t))
                    if p[2] == "status":
                        return self.reply(200, n.status(t.txid))
                    if p[2] == "hex":
                        return self.reply(200, t.raw.hex())
                    if p[2] == "raw":
                        return self.reply(200, t.raw, "application/octet-stream")
                    if p[2] == "outspend" and len(p) == 4:
                        return self.reply(200, n.outspend(t.txid, int(p[3])))
                    if p[2] == "outspends":
                        return self.reply(200, [n.outspend(t.txid, i) for i in range(len(t.vout))])
                if len(p) >= 2 and p[0] == "address":
                    try:
                        spk = escript.address_to_scriptpubkey(p[1]).data
                    except Exception:
                        return self.reply(400, "Invalid Bitcoin address")
                    if len(p) == 3 and p[2] == "utxo":
                        return self.reply(200, n.address_utxos(spk))
                    if len(p) == 2:
                        confirmed = [(k, u) for k, u in n.utxos.items() if u["spk"] == spk]
                        unconfirmed = [u for u in n.address_utxos(spk) if not u["status"]["confirmed"]]
                        return self.reply(200, {"address": p[1], "chain_stats": {"funded_txo_count": len(confirmed), "funded_txo_sum": sum(u["value"] for _, u in confirmed), "spent_txo_count": 0, "spent_txo_sum": 0, "tx_count": len(confirmed)}, "mempool_stats": {"funded_txo_count": len(unconfirmed), "funded_txo_sum": sum(u["value"] for u in unconfirmed), "spent_txo_count": 0, "spent_txo_sum": 0, "tx_count": len(unconfirmed)}})
                if p == ["fee-estimates"]:
                    return self.reply(200, n.fee_estimates())
                if p == ["mempool", "txids"]:
                    return self.reply(200, list(n.mempool))
            return self.reply(404, "Not found")
        except (ValueError, IndexError) as e:
            return self.reply(400, f"bad request: {e}")

    def do_POST(self):
        n = self.node
        p = self.path_parts()
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        try:
            if p == ["tx"]:
                try:
                    raw = bytes.fromhex(body.decode().strip())
                except ValueError:
                    return self.reply(400, 'sendrawtransaction RPC error: {"code":-22,"message":"TX decode failed"}')
                return self.reply(200, n.accept(raw))
            if p == ["regtest", "mine"]:
                args = json.loads(body or b"{}")
                count = int(args.get("blocks", 1))
                if not 1 <= count <= 1000:
                    return self.reply(400, "blocks must be 1…1000")
                spk = escript.address_to_scriptpubkey(args["address"]).data if args.get("address") else None
                return self.reply(200, {"hashes": n.mine(count, spk), "height": n.height})
            if p == ["regtest", "reorg"]:
                # {"depth": D, "replace": {txid: hex}, "drop": [txid]}: a longer branch
                # from D blocks back, validated by Bitcoin Core, which switches to it.
                args = json.loads(body or b"{}")
                replace = {t: bytes.fromhex(h) for t, h in (args.get("replace") or {}).items()}
                hashes = n.reorg(int(args.get("depth", 1)), replace, set(args.get("drop") or []))
                return self.reply(200, {"hashes": hashes, "height": n.height})
            if p == ["regtest", "faucet"]:
                args = json.loads(body or b"{}")
                txid = n.faucet(args["address"], int(args["sats"]))
                if args.get("mine", False):
                    n.mine(1)
                return self.reply(200, {"txid": txid})
            return self.reply(404, "Not found")
        except Rejected as e:
            return self.reply(400, 'sendrawtransaction RPC error: ' + json.dumps({"code": -26, "message": str(e)}))
        except (ValueError, KeyError, TypeError) as e:
            return self.reply(400, f"bad request: {e}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=3002)
    parser.add_argument("--block-interval", type=float, default=2.0, help="seconds between blocks (0: only on request)")
    parser.add_argument("--datadir", default=None, help="working directory, where the chain is kept (default: a temporary one, not kept)")
    parser.add_argument("--resume", action="store_true", help="reload the chain kept in --datadir instead of starting a new one")
    parser.add_argument("--prefix", default="", help="URL prefix, e.g. /api")
    args = parser.parse_args()
    if args.resume and not (args.datadir and os.path.exists(os.path.join(args.datadir, "blocks.hex"))
                            and os.path.exists(os.path.join(args.datadir, "faucet_key.hex"))):
        parser.error("--resume needs a --datadir holding a kept chain (blocks.hex, faucet_key.hex)")
    datadir = args.datadir or tempfile.mkdtemp(prefix="sidenode-regtest-")
    os.makedirs(datadir, exist_ok=True)
    shutil.rmtree(os.path.join(datadir, "chain"), ignore_errors=True)
    start = time.time()
    if args.resume:
        node = Node(datadir, persist=True)
        height, kept = node.load()
        print(f"regtest: resumed {height} blocks (validated again by Bitcoin Core) and {kept} mempool "
              f"transactions from {datadir} in {time.time() - start:.2f} s", flush=True)
    else:
        if args.datadir:
            for name in ("blocks.hex", "mempool.hex", "faucet_key.hex"):
                if os.path.exists(os.path.join(datadir, name)):
                    os.unlink(os.path.join(datadir, name))
        node = Node(datadir, persist=bool(args.datadir))
    if node.height < 101:
        node.mine(101 - node.height)  # the faucet's first coinbase matures
        print(f"regtest: {node.height} blocks mined and validated by Bitcoin Core in {time.time() - start:.2f} s", flush=True)
    # libbitcoinkernel replaces the default signal handlers; stop at once on SIGTERM and
    # SIGINT (every block and the mempool are written as they change: nothing to flush).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: os._exit(0))
    Handler.node = node
    Handler.prefix = args.prefix.rstrip("/")
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    if args.block_interval > 0:
        def miner():
            while True:
                time.sleep(args.block_interval)
                node.mine(1)
        threading.Thread(target=miner, daemon=True).start()
    print(f"regtest: esplora API on http://127.0.0.1:{args.port}{Handler.prefix} (a block every {args.block_interval:g} s)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
