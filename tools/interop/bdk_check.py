#!/usr/bin/env python3
"""Independent checks with BDK (bdkpython) of what SideNode's Bitcoin code produces.

Reads JSON on stdin: {"network": "regtest", "descriptors": [...], "psbts": [...]}.
For each descriptor BDK parses it (checking its checksum) and derives its address; each
PSBT (base64) is parsed and its unsigned transaction id computed. Prints JSON results.
"""
import json
import sys

import bdkpython as bdk

NETWORKS = {"regtest": bdk.Network.REGTEST, "signet": bdk.Network.SIGNET, "mutinynet": bdk.Network.SIGNET,
            "testnet": bdk.Network.TESTNET, "mainnet": bdk.Network.BITCOIN}


def main():
    request = json.load(sys.stdin)
    network = NETWORKS[request.get("network", "regtest")]
    kind = bdk.NetworkKind.MAIN if network == bdk.Network.BITCOIN else bdk.NetworkKind.TEST
    out = {"descriptors": [], "psbts": []}
    for text in request.get("descriptors", []):
        try:
            d = bdk.Descriptor(text, kind)
            out["descriptors"].append({"canonical": str(d), "address": str(d.derive_address(0, network))})
        except Exception as e:  # report, do not stop: the Swift test asserts on it
            out["descriptors"].append({"error": f"{type(e).__name__}: {e}"})
    for b64 in request.get("psbts", []):
        try:
            p = bdk.Psbt(b64)
            # The JSON view: Psbt.input() cannot convert taproot maps in bdkpython 3.1.1.
            view = json.loads(p.json_serialize())
            first = view["inputs"][0] if view["inputs"] else {}
            out["psbts"].append({"txid": str(p.extract_tx_unchecked_fee_rate().compute_txid()),
                                 "inputs": len(view["inputs"]), "outputs": len(view["outputs"]),
                                 "tap_scripts": len(first.get("tap_scripts") or {}),
                                 "tap_script_sigs": len(first.get("tap_script_sigs") or {}),
                                 "tap_internal_key": first.get("tap_internal_key"),
                                 "serialized": p.serialize()})
        except Exception as e:
            out["psbts"].append({"error": f"{type(e).__name__}: {e}"})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
