import Bitcoin
import Checkpoint
import Consensus
import Foundation
import Gossip
import Ledger
import Node
import NodeCrypto
@_spi(Testing) import Noise
import StateSync
import StateTree

extension FuzzTargets {
    /// A corpus file's name: its content's hash, as libFuzzer names what it keeps.
    public static func corpusName(_ input: [UInt8]) -> String { Hex.encode(SHA256.hash(input).prefix(20)) }

    /// Seed inputs for every target but `consensus` and `sync` (those come from a simulated
    /// run: the codec test writes them): real encodings built with fixed keys, the BIP174 /
    /// BIP371 PSBT vectors and the BIP143 transactions under `vectors`, and the
    /// documents operators write. scripts/fuzz.sh --seed writes them to Fuzz/corpus.
    public static func seeds(vectors: URL) -> [String: [[UInt8]]] {
        var seeds: [String: [[UInt8]]] = [:]
        let key = try! Ed25519.PrivateKey(seed: [UInt8](repeating: 9, count: 32))
        let other = try! Ed25519.PrivateKey(seed: [UInt8](repeating: 8, count: 32)).publicKey

        // Handshake: each message of a real transcript, as the other side receives it.
        var a = channel(.initiator(expectedPeer: nil), seed: 10)
        var b = channel(.responder, seed: 20)
        let first = a.start().compactMap { if case .write(let w) = $0 { w } else { nil } }
        let second = first.flatMap { b.receive($0[...]) }.compactMap { if case .write(let w) = $0 { w } else { nil } }
        let third = second.flatMap { a.receive($0[...]) }.compactMap { if case .write(let w) = $0 { w } else { nil } }
        seeds["noise_handshake"] = (first + second + third).map { [7] + $0 } + [[1] + first.joined()]
        seeds["transport"] = [
            [0, 5] + Array("hello".utf8), [1, 3] + Array("a message that is split".utf8), [2, 9] + [UInt8](0..<200),
            [1, 63] + [UInt8](repeating: 0x41, count: 4_000),
        ]

        let addresses = [
            NodeAddress(nodeID: other, host: "1.2.3.4", port: 26656),
            NodeAddress(nodeID: key.publicKey, host: "2a01:4f8::1", port: 1),
        ]
        let gossip: [GossipMessage] = [
            .hello(listenPort: 26656, agent: "p2pnode/0.1"), .ping(nonce: 42), .pong(nonce: 42), .getAddresses,
            .addresses(addresses), .publish(payload: [1, 2, 3]), .direct(payload: [0x10, 0, 1]),
        ]
        seeds["gossip"] = gossip.map { $0.encoded() }

        let transactions = [
            Transaction(
                chainID: chainID, author: key, seq: 1, fee: 10, payload: .transfer(to: other, amount: 5),
                predecessors: []),
            Transaction(
                chainID: chainID, author: key, seq: 2, fee: 0, payload: .data(Array("note".utf8)), predecessors: []),
            Transaction(
                chainID: chainID, author: key, seq: 3, fee: 1_000,
                payload: .contract(
                    .instantiate(
                        codeID: 1, admin: other, label: "token", msg: Array(#"{"count":1}"#.utf8), funds: 5,
                        gasLimit: 1_000_000)),
                predecessors: []),
            Transaction(
                chainID: chainID, author: key, seq: 4, fee: 1_000,
                payload: .contract(
                    .execute(
                        contract: [UInt8](repeating: 3, count: 32), msg: Array(#"{"increment":{}}"#.utf8), funds: 0,
                        gasLimit: 1_000_000)),
                predecessors: []),
        ]
        seeds["transaction"] = transactions.map(\.encoded)
        seeds["gossip"]! += transactions.map { GossipMessage.publish(payload: [1] + $0.encoded).encoded() }

        // PSBTs and transactions from the BIP vectors.
        var psbts: [[UInt8]] = []
        var txs: [[UInt8]] = []
        if let data = try? Data(contentsOf: vectors.appendingPathComponent("psbt-vectors.json")),
            let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        {
            for bip in ["bip174", "bip371"] {
                // In key order: the seeds (and their file names) must not depend on hashing.
                for (_, list) in ((json[bip] as? [String: Any]) ?? [:]).sorted(by: { $0.key < $1.key }) {
                    for case let entry as [String: Any] in (list as? [Any]) ?? [] {
                        if let hex = entry["hex"] as? String, let bytes = try? Hex.decode(hex) { psbts.append(bytes) }
                    }
                }
            }
        }
        if let data = try? Data(contentsOf: vectors.appendingPathComponent("bip143-vectors.json")),
            let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        {
            for case let entry as [String: Any] in (json["vectors"] as? [Any]) ?? [] {
                for field in ["unsigned_tx", "signed_tx"] {
                    if let hex = entry[field] as? String, let bytes = try? Hex.decode(hex) { txs.append(bytes) }
                }
            }
        }
        seeds["state_sync"] = stateSyncSeeds()
        seeds["contract_upload"] = ContractFuzzSeeds.modules
        seeds["psbt"] = psbts
        seeds["bitcoin_tx"] = txs + psbts.compactMap { try? PSBT(bytes: $0).unsignedTx.serialized(withWitness: true) }
        seeds["checkpoint"] =
            psbts.prefix(8).compactMap { try? PSBT(bytes: $0) }.map { CheckpointMessage.signature($0).encoded() }
            + [CheckpointMessage.refusal(txid: String(repeating: "ab", count: 32), reason: "fee too high").encoded()]

        seeds["esplora_json"] = [
            #"{"confirmed":true,"block_height":101,"block_hash":"00ab","block_time":1700000000}"#,
            #"{"confirmed":false}"#,
            #"[{"txid":"\#(String(repeating: "1", count: 64))","vout":0,"value":5000,"status":{"confirmed":true,"block_height":3}}]"#,
            #"{"spent":true,"txid":"\#(String(repeating: "2", count: 64))","vin":0,"status":{"confirmed":false}}"#,
            #"{"1":20.5,"2":10.1,"144":1.0}"#,
        ].map { Array($0.utf8) }
        seeds["admin_jsonrpc"] = [
            #"{"jsonrpc":"2.0","id":1,"method":"getinfo"}"#,
            #"{"jsonrpc":"2.0","id":"x","method":"setban","params":{"ip":"1.2.3.4","seconds":1e308}}"#,
            #"{"jsonrpc":"2.0","id":null,"method":"connect","params":{"address":"\#(other.hex)@1.2.3.4:26656"}}"#,
            #"{"jsonrpc":"2.0","method":"getblock","params":[1]}"#, #"[1,2,{"a":"\u00e9"}]"#,
        ].map { Array($0.utf8) }
        seeds["config_toml"] = [
            """
            chain_id = "sidenode-testnet"
            listen = "127.0.0.1:26656"
            handshake_timeout = 5
            [gossip]
            max_connections_per_ip = 64
            allow_local_addresses = true
            [bitcoin]
            network = "regtest"
            esplora = "http://127.0.0.1:3002"
            confirmations = 1
            """,
            "listen = 5\n", "[gossip]\nping_interval = 1e308\n",
        ].map { Array($0.utf8) }
        var genesis = Genesis(
            chainID: chainID, genesisTime: 0, epochLength: 100,
            validators: [
                .init(node_id: key.publicKey.hex, power: 1, bitcoin_xonly: String(repeating: "79", count: 32))
            ],
            balances: [other.hex: 1_000])
        genesis.checkpoint.coin = String(repeating: "ab", count: 32) + ":0"
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        seeds["genesis"] = [try! Array(encoder.encode(genesis))]
        seeds["address"] = [
            "\(other.hex)@1.2.3.4:26656", "\(other.hex)@[2a01:4f8::1]:1", "# seeds\n\(other.hex)@seed.example:26656\n",
            "::ffff:1.2.3.4", "1:2:3:4:5:6:7:8", "127.0.0.1:26656",
        ].map { Array($0.utf8) }
        return seeds
    }

    /// A small state with real proofs, a descriptor whose QC the harness's validators
    /// signed, and every snapshot message about it.
    static func stateSyncSeeds() -> [[UInt8]] {
        let signers = (1...4).map { try! Ed25519.PrivateKey(seed: [UInt8](repeating: $0, count: 32)) }
        let accounts = (1...40).map { try! Ed25519.PrivateKey(seed: [UInt8](repeating: 100 + $0, count: 32)).publicKey }
        var state = LedgerState(
            chainID: chainID, balances: Dictionary(uniqueKeysWithValues: accounts.map { ($0, 7) }),
            system: SystemState(
                epoch: 1, epochLength: 100,
                validators: signers.enumerated().map {
                    .init(
                        id: $0.element.publicKey, power: 1,
                        bitcoinKey: [UInt8](repeating: UInt8($0.offset + 1), count: 32))
                }))
        _ = state.executeBlock([], proposer: signers[0].publicKey)  // names height 1
        let root = Hash32(computed: state.root)
        let block = Block(
            epoch: 1, round: 5, author: signers[0].publicKey, payload: [],
            qc: .genesis(epoch: 1, blockID: .zero, stateID: .zero))
        let info = VoteInfo(
            blockID: Hash32.of(block.id.bytes), round: 6, parentID: block.id, parentRound: 5, execStateID: root,
            epoch: 1)
        let commit = LedgerCommitInfo(epoch: 1, round: 6, commitStateID: root, voteInfoHash: info.hash)
        let message = commit.signingMessage(chainID: chainID)
        let qc = QuorumCert(
            voteInfo: info, commitInfo: commit,
            signatures: signers.prefix(3).map {
                SignerSignature(signer: $0.publicKey, signature: $0.signature(for: message))
            })
        let (system, systemProof) = state.proof(key: StateKey.system)
        let descriptor = SnapshotDescriptor(
            height: 1, block: block, stateID: root, commitQC: qc, heightProof: state.proof(key: StateKey.height).proof,
            system: system ?? [], systemProof: systemProof)
        let (leaves, proof) = state.tree.range(prefix: .placeholder, depth: 2)
        let messages: [SnapshotMessage] = [
            .getSnapshot, .snapshot(descriptor), .getEpochEnds(from: 1), .epochEnds([]),
            .getChunk(height: 1, prefix: .placeholder, depth: 2),
            .chunk(height: 1, prefix: .placeholder, depth: 2, .leaves(leaves, proof)),
            .chunk(height: 1, prefix: .placeholder, depth: 2, .tooLarge),
            .chunk(height: 1, prefix: .placeholder, depth: 2, .busy),
        ]
        let key = StateKey.account(accounts[3].rawRepresentation)
        let (value, keyProof) = state.proof(key: key)
        let certified = CertifiedProof(root: descriptor, epochEnds: [], key: key, value: value, proof: keyProof)
        let absent = state.proof(key: StateKey.account([UInt8](repeating: 1, count: 32))).proof
        let node = StoredNode.leaf(StateLeaf(key: key, value: value ?? []))
        var out: [[UInt8]] = messages.map { [0] + $0.encoded() }
        out.append([1] + certified.encoded)
        out.append([2] + keyProof.encoded)
        out.append([2] + absent.encoded)
        out.append([3] + node.encoded)
        return out
    }
}
