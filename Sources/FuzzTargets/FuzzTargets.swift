import Bitcoin
import Checkpoint
import Consensus
import Contracts
import Esplora
import Foundation
import Gossip
import Ledger
import Node
import NodeCrypto
@_spi(Testing) import Noise
import StateSync
import StateTree

/// Every decoder that reads bytes from outside, as a function of one input. libFuzzer
/// drives them through the `SideNodeFuzz` binary (scripts/fuzz.sh, built with
/// `-sanitize=fuzzer,address`); the test suite replays the seed corpus and every
/// regression input through the same functions. A harness traps (`precondition`) when
/// a property fails, e.g. a decoded value that does not re-encode to itself.
public enum FuzzTargets {
    public static let all: [String: @Sendable ([UInt8]) -> Void] = [
        "noise_handshake": noiseHandshake,
        "transport": transport,
        "gossip": gossip,
        "consensus": consensus,
        "sync": sync,
        "transaction": transaction,
        "checkpoint": checkpoint,
        "psbt": psbt,
        "bitcoin_tx": bitcoinTransaction,
        "esplora_json": esploraJSON,
        "admin_jsonrpc": adminRequest,
        "config_toml": configTOML,
        "genesis": genesis,
        "address": address,
        "state_sync": stateSync,
        "contract_upload": contractUpload,
    ]

    /// Uploaded code: the checks must refuse or accept, never crash; accepted code must
    /// also run (`instantiate` on a ledger) without harming the node.
    static let contractUpload: @Sendable ([UInt8]) -> Void = { data in
        guard WasmEngine.check(data) == nil else { return }
        let key = try! Ed25519.PrivateKey(seed: [UInt8](repeating: 5, count: 32))
        var state = LedgerState(chainID: "fuzz", balances: [key.publicKey: 1 << 40])
        let engine = WasmEngine()
        let store = Transaction(
            chainID: "fuzz", author: key, seq: 1, fee: 1_000,
            payload: .contract(.storeCode(wasm: data, gasLimit: 1_000_000)),
            predecessors: [])
        let instantiate = Transaction(
            chainID: "fuzz", author: key, seq: 2, fee: 200,
            payload: .contract(
                .instantiate(codeID: 1, admin: nil, label: "f", msg: Array("{}".utf8), funds: 0, gasLimit: 200_000)),
            predecessors: [])
        let receipts = state.executeBlock(
            [store.encoded, instantiate.encoded], proposer: key.publicKey, contracts: engine
        )
        .receipts
        precondition(receipts[0].code == .ok, "checked code was refused at store: \(receipts[0].failure ?? "")")
    }

    /// `decode(encode(x))` must give back the same bytes: a decoder that accepts a value
    /// its encoder cannot reproduce lets two nodes disagree on what a message says.
    static func roundTrip(_ encoded: [UInt8], _ reencode: ([UInt8]) throws -> [UInt8], _ name: String) {
        guard let again = try? reencode(encoded) else { preconditionFailure("\(name): own encoding does not decode") }
        precondition(again == encoded, "\(name): encoding is not stable")
    }

    // MARK: Transport

    static let chainID = "fuzz"
    static func channel(_ role: SecureChannel.Role, seed: UInt8) -> SecureChannel {
        let identity = try! Ed25519.PrivateKey(seed: [UInt8](repeating: seed, count: 32))
        return SecureChannel(
            role: role, configuration: SecureChannelConfiguration(chainID: chainID, identity: identity),
            staticKey: try! X25519.PrivateKey(rawRepresentation: [UInt8](repeating: seed &+ 1, count: 32)),
            fixedEphemeral: try! X25519.PrivateKey(rawRepresentation: [UInt8](repeating: seed &+ 2, count: 32)))
    }

    /// Splits `data` into chunks whose sizes come from its first byte, as TCP may.
    static func chunks(_ data: ArraySlice<UInt8>, step: UInt8) -> [ArraySlice<UInt8>] {
        let size = Int(step % 64) + 1
        return stride(from: data.startIndex, to: data.endIndex, by: size).map {
            data[$0..<min($0 + size, data.endIndex)]
        }
    }

    /// Random bytes as handshake messages, to a responder and to an initiator that started:
    /// never established, never a crash.
    static let noiseHandshake: @Sendable ([UInt8]) -> Void = { data in
        guard let step = data.first else { return }
        for role in [SecureChannel.Role.responder, .initiator(expectedPeer: nil)] {
            var peer = channel(role, seed: 1)
            _ = peer.start()
            for chunk in chunks(data.dropFirst(), step: step) {
                for action in peer.receive(chunk) {
                    if case .established = action { preconditionFailure("a handshake completed on random bytes") }
                }
            }
        }
    }

    /// A pair that completed the handshake (fixed keys), copied per input.
    static let established: (SecureChannel, SecureChannel) = {
        var a = channel(.initiator(expectedPeer: nil), seed: 10)
        var b = channel(.responder, seed: 20)
        var toB = a.start().compactMap { if case .write(let w) = $0 { w } else { nil } }
        var toA: [[UInt8]] = []
        while !(a.isEstablished && b.isEstablished) {
            for w in toB { toA += b.receive(w[...]).compactMap { if case .write(let x) = $0 { x } else { nil } } }
            toB = []
            for w in toA { toB += a.receive(w[...]).compactMap { if case .write(let x) = $0 { x } else { nil } } }
            toA = []
        }
        return (a, b)
    }()

    /// Mode 0: raw bytes to an established channel (must not deliver anything). Mode 1:
    /// the input's messages, sent through the initiator, arrive in chunks and are delivered
    /// exactly, in order. Mode 2: as 1 with one byte of the ciphertext flipped: whatever was
    /// delivered before the flip is exact, nothing after it.
    static let transport: @Sendable ([UInt8]) -> Void = { data in
        guard data.count >= 2 else { return }
        var (a, b) = established
        let mode = data[0] % 3
        let body = data.dropFirst(2)
        if mode == 0 {
            for chunk in chunks(body, step: data[1]) {
                for action in b.receive(chunk) {
                    if case .deliver = action { preconditionFailure("random bytes delivered a message") }
                }
            }
            return
        }
        // At most 32 messages: every framing case needs only a few, and thousands of tiny
        // ones would cost thousands of encryptions per input.
        let messages = chunks(body, step: data[1] &* 7).prefix(32).map(Array.init)
        var wire: [UInt8] = []
        for message in messages { wire += try! a.send(message) }
        if mode == 2, !wire.isEmpty { wire[Int(data[1]) * 31 % wire.count] ^= 0x20 }
        var delivered: [[UInt8]] = []
        for chunk in chunks(wire[...], step: data[1]) {
            for action in b.receive(chunk) {
                if case .deliver(let message) = action { delivered.append(message) }
            }
        }
        precondition(Array(messages.prefix(delivered.count)) == delivered, "delivered something not sent")
        if mode == 1 { precondition(delivered == messages, "lost a message") }
    }

    // MARK: Messages

    static let gossip: @Sendable ([UInt8]) -> Void = { data in
        if let message = try? GossipMessage.decode(data, maxPayload: 1 << 20) {
            roundTrip(message.encoded(), { try GossipMessage.decode($0, maxPayload: 1 << 20).encoded() }, "gossip")
        }
        // And through the engine as a peer's message after its hello.
        var engine = connectedEngine
        _ = engine.received(1, bytes: data, now: 1)
        _ = engine.tick(now: 2)
    }

    /// An engine with one inbound peer past its hello, copied per input.
    static let connectedEngine: GossipEngine = {
        var engine = GossipEngine(
            localID: try! Ed25519.PrivateKey(seed: [UInt8](repeating: 3, count: 32)).publicKey, listenPort: 1,
            agent: "fuzz", seed: 1)
        let peer = try! Ed25519.PrivateKey(seed: [UInt8](repeating: 4, count: 32)).publicKey
        _ = engine.connected(1, peer: peer, host: "1.2.3.4", port: 5, inbound: true, now: 0)
        _ = engine.received(1, bytes: GossipMessage.hello(listenPort: 5, agent: "x").encoded(), now: 0)
        return engine
    }()

    static let consensus: @Sendable ([UInt8]) -> Void = { data in
        if let message = try? ConsensusMessage.decode(data) {
            roundTrip(message.encoded(), { try ConsensusMessage.decode($0).encoded() }, "consensus")
        }
    }

    /// Catch-up and ledger sync: the sync messages and what they carry.
    static let sync: @Sendable ([UInt8]) -> Void = { data in
        guard let kind = data.first else { return }
        let body = Array(data.dropFirst())
        switch kind % 6 {
        case 0:
            if let m = try? SyncMessage.decode(body) {
                roundTrip(m.encoded(), { try SyncMessage.decode($0).encoded() }, "sync")
            }
        case 1:
            if let b = try? Block.decode(body) { roundTrip(b.encoded(), { try Block.decode($0).encoded() }, "block") }
        case 2:
            if let q = try? QuorumCert.decode(body) {
                roundTrip(q.encoded(), { try QuorumCert.decode($0).encoded() }, "qc")
            }
        case 3:
            if let p = try? EpochChangeProof.decode(body) {
                roundTrip(p.encoded(), { try EpochChangeProof.decode($0).encoded() }, "epoch proof")
            }
        case 4:
            if let s = try? LedgerState.decode(body) {
                roundTrip(s.encoded(), { try LedgerState.decode($0).encoded() }, "ledger state")
            }
        default:
            if let s = try? SystemState.decode(body) {
                roundTrip(s.encoded, { try SystemState.decode($0).encoded }, "system state")
            }
        }
    }

    /// A chain configuration for the state-sync harness (a fixed validator set).
    static let syncGenesis: ConsensusConfig = {
        let validators = (1...4).map { try! Ed25519.PrivateKey(seed: [UInt8](repeating: $0, count: 32)).publicKey }
        return ConsensusConfig(
            chainID: chainID, epoch: 1, validators: ValidatorSet(validators.map { Validator(id: $0) }),
            genesisBlockID: .zero, genesisStateID: .zero)
    }()
    static let syncEpochConfig: @Sendable (SystemState, Hash32, Hash32) -> ConsensusConfig = { system, block, state in
        ConsensusConfig(
            chainID: chainID, epoch: system.epoch,
            validators: ValidatorSet(system.validators.map { Validator(id: $0.id, power: $0.power) }),
            genesisBlockID: block, genesisStateID: state)
    }

    /// Snapshot sync from a peer's side: its messages, certified proofs, range proofs and
    /// stored tree nodes (a node reads its own store back through the same decoder).
    static let stateSync: @Sendable ([UInt8]) -> Void = { data in
        guard let kind = data.first else { return }
        let body = Array(data.dropFirst())
        switch kind % 4 {
        case 0:
            guard let m = try? SnapshotMessage.decode(body) else { return }
            roundTrip(m.encoded(), { try SnapshotMessage.decode($0).encoded() }, "snapshot message")
            // The download machine takes any answer, asked for or not, without trapping.
            var machine = SnapshotSync<Int>(genesis: syncGenesis, epochConfig: syncEpochConfig)
            _ = machine.connected(1, now: 0)
            _ = machine.received(m, from: 1, now: 1)
            _ = machine.tick(now: 10)
        case 1:
            guard let p = try? CertifiedProof.decode(body) else { return }
            roundTrip(p.encoded, { try CertifiedProof.decode($0).encoded }, "certified proof")
            _ = p.verify(genesis: syncGenesis, epochConfig: syncEpochConfig)
        case 2:
            guard let p = try? RangeProof.decode(body) else { return }
            roundTrip(p.encoded, { try RangeProof.decode($0).encoded }, "range proof")
            _ = try? p.verify(range: p.prefix, depth: p.depth, leaves: [], root: .placeholder)
        default:
            guard let n = try? StoredNode.decode(body) else { return }
            roundTrip(n.encoded, { try StoredNode.decode($0).encoded }, "stored node")
        }
    }

    static let transaction: @Sendable ([UInt8]) -> Void = { data in
        guard let tx = try? Transaction.decode(data) else { return }
        roundTrip(tx.encoded, { try Transaction.decode($0).encoded }, "transaction")
        _ = tx.validateStandalone(chainID: chainID)
    }

    static let checkpoint: @Sendable ([UInt8]) -> Void = { data in
        if let message = try? CheckpointMessage.decode(data) {
            roundTrip(message.encoded(), { try CheckpointMessage.decode($0).encoded() }, "checkpoint")
        }
    }

    // MARK: Bitcoin

    static let psbt: @Sendable ([UInt8]) -> Void = { data in
        if let parsed = try? PSBT(bytes: data) {
            roundTrip(parsed.serialized, { try PSBT(bytes: $0).serialized }, "psbt")
        }
        _ = try? PSBT(base64: String(decoding: data, as: UTF8.self))
    }

    static let bitcoinTransaction: @Sendable ([UInt8]) -> Void = { data in
        if let tx = try? BitcoinTransaction(bytes: data) {
            roundTrip(
                tx.serialized(withWitness: true), { try BitcoinTransaction(bytes: $0).serialized(withWitness: true) },
                "bitcoin tx")
            _ = tx.virtualSize
            _ = tx.txid
        }
    }

    /// What an esplora server answers, decoded as each type the client reads.
    static let esploraJSON: @Sendable ([UInt8]) -> Void = { data in
        let json = Data(data)
        let decoder = JSONDecoder()
        _ = try? decoder.decode(EsploraClient.Status.self, from: json)
        _ = try? decoder.decode([EsploraClient.UTXO].self, from: json)
        _ = try? decoder.decode(EsploraClient.Outspend.self, from: json)
        _ = try? decoder.decode([String: Double].self, from: json)
    }

    // MARK: Operator input

    static let adminRequest: @Sendable ([UInt8]) -> Void = { data in
        let line = String(decoding: data, as: UTF8.self)
        if case .success(let request) = AdminRequest.parse(line) {
            guard case .object = request.params else { preconditionFailure("params must be an object") }
        }
        if let value = try? JSONValue.parse(line) { _ = try? JSONValue.parse(value.jsonText) }
    }

    static let configTOML: @Sendable ([UInt8]) -> Void = { data in
        var configuration = NodeConfiguration(dataDirectory: URL(fileURLWithPath: "/nonexistent"))
        if (try? configuration.apply(toml: String(decoding: data, as: UTF8.self), source: "fuzz.toml")) != nil {
            // Whatever a file may say, the values the node runs with are in range.
            precondition(configuration.handshakeTimeout.isFinite && configuration.handshakeTimeout <= 1e9)
            precondition(configuration.maxMessageSize <= 64 << 20)
        }
    }

    static let genesis: @Sendable ([UInt8]) -> Void = { data in
        _ = try? Genesis.load(Data(data), source: "fuzz.json")
    }

    static let address: @Sendable ([UInt8]) -> Void = { data in
        let text = String(decoding: data, as: UTF8.self)
        if let ip = IPAddress(text) {
            precondition(IPAddress(ip.description) == ip, "canonical text parses to itself")
        }
        _ = try? NodeAddress(parsing: text)
        _ = try? parseBootstrapPeers(text)
        _ = try? HostPort(parsing: text)
    }
}
