import NodeCrypto

/// Why a PSBT was refused (BIP174/BIP371 rules), specific enough to test against.
public enum PSBTError: Error, Equatable, CustomStringConvertible, Sendable {
    case notPSBT
    case truncated(String)
    case missingUnsignedTransaction
    case unsignedTransactionHasScripts
    case unsignedTransactionHasWitnessFormat
    case unsupportedVersion(UInt32)
    case duplicateKey(map: String, type: UInt64)
    case invalidKey(map: String, type: UInt64, String)
    case invalidValue(map: String, type: UInt64, String)
    case inputCountMismatch(expected: Int, got: Int)
    case outputCountMismatch(expected: Int, got: Int)
    case utxoMismatch(input: Int, String)
    case signer(input: Int, String)
    case finalize(input: Int, String)
    case combine(String)

    public var description: String {
        switch self {
        case .notPSBT: "not a PSBT (missing the magic bytes 70736274ff)"
        case .truncated(let what): "truncated PSBT: \(what)"
        case .missingUnsignedTransaction: "PSBT has no unsigned transaction (PSBT_GLOBAL_UNSIGNED_TX)"
        case .unsignedTransactionHasScripts: "the unsigned transaction has a scriptSig or witness"
        case .unsignedTransactionHasWitnessFormat: "the unsigned transaction uses the witness serialization"
        case .unsupportedVersion(let v): "PSBT version \(v) is not supported (only 0)"
        case .duplicateKey(let map, let type): "duplicate key of type 0x\(String(type, radix: 16)) in \(map)"
        case .invalidKey(let map, let type, let why):
            "invalid key of type 0x\(String(type, radix: 16)) in \(map): \(why)"
        case .invalidValue(let map, let type, let why):
            "invalid value of type 0x\(String(type, radix: 16)) in \(map): \(why)"
        case .inputCountMismatch(let e, let g): "\(g) input maps for \(e) transaction inputs"
        case .outputCountMismatch(let e, let g): "\(g) output maps for \(e) transaction outputs"
        case .utxoMismatch(let i, let why): "input \(i): \(why)"
        case .signer(let i, let why): "input \(i): cannot sign: \(why)"
        case .finalize(let i, let why): "input \(i): cannot finalize: \(why)"
        case .combine(let why): "cannot combine: \(why)"
        }
    }
}

func littleEndian32(_ bytes: [UInt8], at i: Int) -> UInt32 {
    UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24
}

/// A BIP32 key origin: master key fingerprint and derivation path.
public struct KeyOrigin: Sendable, Hashable {
    public let fingerprint: [UInt8]
    public let path: [UInt32]

    public init(fingerprint: [UInt8], path: [UInt32]) {
        self.fingerprint = fingerprint
        self.path = path
    }

    var encoded: [UInt8] {
        var w = ByteWriter()
        w.fixed(fingerprint)
        for step in path { w.u32(step) }
        return w.bytes
    }

    init(_ bytes: [UInt8], map: String, type: UInt64) throws(PSBTError) {
        guard bytes.count >= 4, bytes.count % 4 == 0 else {
            throw .invalidValue(map: map, type: type, "key origin of \(bytes.count) bytes")
        }
        fingerprint = Array(bytes.prefix(4))
        path = stride(from: 4, to: bytes.count, by: 4).map {
            littleEndian32(bytes, at: $0)
        }
    }

    /// "m/0'/1" notation (hardened steps with ').
    public init(fingerprint: [UInt8], pathString: String) throws(BitcoinError) {
        var steps: [UInt32] = []
        for part in pathString.split(separator: "/") where part != "m" {
            let hardened = part.hasSuffix("'") || part.hasSuffix("h")
            guard let n = UInt32(hardened ? part.dropLast() : part), n < 0x8000_0000 else {
                throw BitcoinError("derivation path \(pathString): bad step \(part)")
            }
            steps.append(hardened ? n | 0x8000_0000 : n)
        }
        self.init(fingerprint: fingerprint, path: steps)
    }
}

/// Input fields (BIP174 and BIP371). Maps are keyed by their key data.
public struct PSBTInput: Sendable, Equatable {
    public var nonWitnessUtxo: BitcoinTransaction?
    public var witnessUtxo: TxOut?
    public var partialSigs: [[UInt8]: [UInt8]] = [:]
    public var sighashType: UInt32?
    public var redeemScript: Script?
    public var witnessScript: Script?
    public var bip32Derivation: [[UInt8]: KeyOrigin] = [:]
    public var finalScriptSig: Script?
    public var finalScriptWitness: [[UInt8]]?
    public var ripemd160: [[UInt8]: [UInt8]] = [:]
    public var sha256: [[UInt8]: [UInt8]] = [:]
    public var hash160: [[UInt8]: [UInt8]] = [:]
    public var hash256: [[UInt8]: [UInt8]] = [:]
    public var tapKeySig: [UInt8]?
    /// Keyed by x-only key (32) || leaf hash (32).
    public var tapScriptSigs: [[UInt8]: [UInt8]] = [:]
    /// Keyed by control block; the value is script || leaf version.
    public var tapLeafScripts: [[UInt8]: [UInt8]] = [:]
    /// Keyed by x-only key; leaf hashes and origin.
    public var tapBip32Derivation: [[UInt8]: TapKeyOrigin] = [:]
    public var tapInternalKey: [UInt8]?
    public var tapMerkleRoot: [UInt8]?
    /// Proprietary and unknown entries, kept as they came (full key bytes → value).
    public var unknown: [[UInt8]: [UInt8]] = [:]

    public init() {}

    public var isFinalized: Bool { finalScriptSig != nil || finalScriptWitness != nil }
}

public struct TapKeyOrigin: Sendable, Hashable {
    public let leafHashes: [[UInt8]]
    public let origin: KeyOrigin

    public init(leafHashes: [[UInt8]], origin: KeyOrigin) {
        self.leafHashes = leafHashes
        self.origin = origin
    }
}

public struct PSBTOutput: Sendable, Equatable {
    public var redeemScript: Script?
    public var witnessScript: Script?
    public var bip32Derivation: [[UInt8]: KeyOrigin] = [:]
    public var tapInternalKey: [UInt8]?
    /// (depth, leaf version, script) in depth-first order (BIP371 PSBT_OUT_TAP_TREE).
    public var tapTree: [TapTreeEntry]?
    public var tapBip32Derivation: [[UInt8]: TapKeyOrigin] = [:]
    public var unknown: [[UInt8]: [UInt8]] = [:]

    public init() {}
}

public struct TapTreeEntry: Sendable, Hashable {
    public let depth: UInt8
    public let leafVersion: UInt8
    public let script: Script

    public init(depth: UInt8, leafVersion: UInt8, script: Script) {
        self.depth = depth
        self.leafVersion = leafVersion
        self.script = script
    }
}

/// A partially signed Bitcoin transaction, version 0 (BIP174) with the taproot fields
/// (BIP371). Parsing enforces BIP174's structure: the magic, a global unsigned
/// transaction without scripts in legacy form, no duplicate keys, key and value lengths,
/// one map per input and output. What a signer must also check (UTXOs against the
/// transaction and the scripts) is `validated()`, which gives a `ValidatedPSBT`.
public struct PSBT: Sendable, Equatable {
    public var unsignedTx: BitcoinTransaction
    public var xpubs: [[UInt8]: KeyOrigin] = [:]
    public var version: UInt32?
    public var unknown: [[UInt8]: [UInt8]] = [:]
    public var inputs: [PSBTInput]
    public var outputs: [PSBTOutput]

    static let magic: [UInt8] = [0x70, 0x73, 0x62, 0x74, 0xFF]

    /// Creator: an empty PSBT for a transaction (scripts and witnesses are cleared).
    public init(unsignedTx: BitcoinTransaction) {
        var tx = unsignedTx
        for i in tx.inputs.indices {
            tx.inputs[i].scriptSig = Script(bytes: [])
            tx.inputs[i].witness = []
        }
        self.unsignedTx = tx
        inputs = Array(repeating: PSBTInput(), count: tx.inputs.count)
        outputs = Array(repeating: PSBTOutput(), count: tx.outputs.count)
    }

    // MARK: Parsing

    public init(base64: String) throws(PSBTError) {
        guard let bytes = Base64.decode(base64) else { throw .notPSBT }
        try self.init(bytes: bytes)
    }

    public init(bytes: [UInt8]) throws(PSBTError) {
        guard bytes.starts(with: Self.magic) else { throw .notPSBT }
        var r = ByteReader(Array(bytes.dropFirst(5)))
        var tx: BitcoinTransaction?
        var xpubs: [[UInt8]: KeyOrigin] = [:]
        var version: UInt32?
        var unknown: [[UInt8]: [UInt8]] = [:]
        for (key, type, keyData, value) in try Self.readMap(&r, name: "global map") {
            switch type {
            case 0x00:
                guard keyData.isEmpty else {
                    throw .invalidKey(map: "global map", type: type, "key data must be empty")
                }
                tx = try Self.parseUnsignedTx(value)
            case 0x01:
                guard keyData.count == 78 else {
                    throw .invalidKey(map: "global map", type: type, "an extended key is 78 bytes")
                }
                xpubs[keyData] = try KeyOrigin(value, map: "global map", type: type)
            case 0xFB:
                guard keyData.isEmpty, value.count == 4 else {
                    throw .invalidValue(map: "global map", type: type, "version is a 4-byte integer")
                }
                let v = littleEndian32(value, at: 0)
                guard v == 0 else { throw .unsupportedVersion(v) }
                version = v
            default:
                unknown[key] = value
            }
        }
        guard let tx else { throw .missingUnsignedTransaction }
        unsignedTx = tx
        self.xpubs = xpubs
        self.version = version
        self.unknown = unknown
        inputs = []
        for i in 0..<tx.inputs.count {
            guard !r.isAtEnd else { throw .inputCountMismatch(expected: tx.inputs.count, got: i) }
            inputs.append(try Self.parseInput(try Self.readMap(&r, name: "input \(i)"), name: "input \(i)"))
        }
        outputs = []
        for i in 0..<tx.outputs.count {
            guard !r.isAtEnd else { throw .outputCountMismatch(expected: tx.outputs.count, got: i) }
            outputs.append(try Self.parseOutput(try Self.readMap(&r, name: "output \(i)"), name: "output \(i)"))
        }
        guard r.isAtEnd else { throw .truncated("\(r.remaining) bytes after the last output map") }
        for (i, input) in inputs.enumerated() {
            if let utxoTx = input.nonWitnessUtxo, utxoTx.txid != tx.inputs[i].previousOutput.txid {
                throw .utxoMismatch(input: i, "the non-witness UTXO is not the transaction this input spends")
            }
        }
    }

    static func parseUnsignedTx(_ bytes: [UInt8]) throws(PSBTError) -> BitcoinTransaction {
        // The witness form is refused outright (BIP174); a zero-input transaction in
        // legacy form is otherwise ambiguous with it.
        if bytes.count > 6, bytes[4] == 0, bytes[5] == 1 {
            var w = ByteReader(bytes)
            if (try? BitcoinTransaction.read(&w, requireWitnessData: false)) != nil, w.isAtEnd {
                throw .unsignedTransactionHasWitnessFormat
            }
        }
        var r = ByteReader(bytes)
        let tx: BitcoinTransaction
        do {
            tx = try BitcoinTransaction.read(&r, allowWitness: false)
        } catch {
            throw .invalidValue(map: "global map", type: 0, "unsigned transaction: \(error)")
        }
        guard r.isAtEnd else { throw .invalidValue(map: "global map", type: 0, "bytes after the unsigned transaction") }
        guard tx.inputs.allSatisfy({ $0.scriptSig.bytes.isEmpty && $0.witness.isEmpty }) else {
            throw .unsignedTransactionHasScripts
        }
        return tx
    }

    typealias Entry = (key: [UInt8], type: UInt64, keyData: [UInt8], value: [UInt8])

    /// One map: key-value pairs up to the 0x00 separator; duplicate keys are refused.
    static func readMap(_ r: inout ByteReader, name: String) throws(PSBTError) -> [Entry] {
        var entries: [Entry] = []
        var seen: Set<[UInt8]> = []
        while true {
            let keyLength: Int
            do { keyLength = try r.compactSize("key length") } catch { throw .truncated("\(name): \(error)") }
            if keyLength == 0 { return entries }
            do {
                let key = try r.fixed(keyLength, "key")
                var kr = ByteReader(key)
                let type = UInt64(try kr.compactSize("key type"))
                let keyData = try kr.fixed(kr.remaining, "key data")
                let value = try r.varBytes("value")
                guard seen.insert(key).inserted else { throw PSBTError.duplicateKey(map: name, type: type) }
                entries.append((key, type, keyData, value))
            } catch let error as PSBTError {
                throw error
            } catch {
                throw .truncated("\(name): \(error)")
            }
        }
    }

    static func expectEmptyKey(_ e: Entry, _ map: String) throws(PSBTError) {
        guard e.keyData.isEmpty else { throw .invalidKey(map: map, type: e.type, "key data must be empty") }
    }

    static func pubkey(_ e: Entry, _ map: String) throws(PSBTError) -> [UInt8] {
        guard
            (e.keyData.count == 33 && (e.keyData[0] == 2 || e.keyData[0] == 3))
                || (e.keyData.count == 65 && e.keyData[0] == 4)
        else { throw .invalidKey(map: map, type: e.type, "not a public key (\(e.keyData.count) bytes)") }
        return e.keyData
    }

    static func xonly(_ bytes: [UInt8], _ map: String, _ type: UInt64, key: Bool) throws(PSBTError) -> [UInt8] {
        guard bytes.count == 32 else {
            let why = "an x-only key is 32 bytes, not \(bytes.count)"
            throw key ? .invalidKey(map: map, type: type, why) : .invalidValue(map: map, type: type, why)
        }
        return bytes
    }

    static func tapOrigin(_ value: [UInt8], _ map: String, _ type: UInt64) throws(PSBTError) -> TapKeyOrigin {
        var r = ByteReader(value)
        do {
            let n = try r.compactSize("leaf hash count")
            var hashes: [[UInt8]] = []
            for _ in 0..<n { hashes.append(try r.fixed(32, "leaf hash")) }
            return TapKeyOrigin(
                leafHashes: hashes, origin: try KeyOrigin(try r.fixed(r.remaining, "origin"), map: map, type: type))
        } catch let error as PSBTError {
            throw error
        } catch {
            throw .invalidValue(map: map, type: type, "\(error)")
        }
    }

    static func parseInput(_ entries: [Entry], name map: String) throws(PSBTError) -> PSBTInput {
        var input = PSBTInput()
        for e in entries {
            switch e.type {
            case 0x00:
                try expectEmptyKey(e, map)
                do { input.nonWitnessUtxo = try BitcoinTransaction(bytes: e.value) } catch {
                    throw .invalidValue(map: map, type: e.type, "\(error)")
                }
            case 0x01:
                try expectEmptyKey(e, map)
                var r = ByteReader(e.value)
                do {
                    input.witnessUtxo = try TxOut.read(&r)
                } catch { throw .invalidValue(map: map, type: e.type, "\(error)") }
                guard r.isAtEnd else { throw .invalidValue(map: map, type: e.type, "bytes after the output") }
            case 0x02:
                input.partialSigs[try pubkey(e, map)] = e.value
            case 0x03:
                try expectEmptyKey(e, map)
                guard e.value.count == 4 else { throw .invalidValue(map: map, type: e.type, "sighash type is 4 bytes") }
                input.sighashType =
                    littleEndian32(e.value, at: 0)
            case 0x04:
                try expectEmptyKey(e, map)
                input.redeemScript = Script(bytes: e.value)
            case 0x05:
                try expectEmptyKey(e, map)
                input.witnessScript = Script(bytes: e.value)
            case 0x06:
                input.bip32Derivation[try pubkey(e, map)] = try KeyOrigin(e.value, map: map, type: e.type)
            case 0x07:
                try expectEmptyKey(e, map)
                input.finalScriptSig = Script(bytes: e.value)
            case 0x08:
                try expectEmptyKey(e, map)
                var r = ByteReader(e.value)
                do {
                    let n = try r.compactSize("witness items")
                    var items: [[UInt8]] = []
                    for _ in 0..<n { items.append(try r.varBytes("witness item")) }
                    guard r.isAtEnd else { throw BitcoinError("bytes after the witness") }
                    input.finalScriptWitness = items
                } catch { throw .invalidValue(map: map, type: e.type, "\(error)") }
            case 0x0A, 0x0B, 0x0C, 0x0D:
                let size = e.type == 0x0A || e.type == 0x0C ? 20 : 32
                guard e.keyData.count == size else {
                    throw .invalidKey(map: map, type: e.type, "a hash of \(size) bytes")
                }
                switch e.type {
                case 0x0A: input.ripemd160[e.keyData] = e.value
                case 0x0B: input.sha256[e.keyData] = e.value
                case 0x0C: input.hash160[e.keyData] = e.value
                default: input.hash256[e.keyData] = e.value
                }
            case 0x13:
                try expectEmptyKey(e, map)
                guard e.value.count == 64 || e.value.count == 65 else {
                    throw .invalidValue(map: map, type: e.type, "a taproot signature is 64 or 65 bytes")
                }
                input.tapKeySig = e.value
            case 0x14:
                guard e.keyData.count == 64 else {
                    throw .invalidKey(map: map, type: e.type, "x-only key and leaf hash are 64 bytes")
                }
                guard e.value.count == 64 || e.value.count == 65 else {
                    throw .invalidValue(map: map, type: e.type, "a taproot signature is 64 or 65 bytes")
                }
                input.tapScriptSigs[e.keyData] = e.value
            case 0x15:
                guard e.keyData.count >= 33, (e.keyData.count - 33) % 32 == 0, (e.keyData.count - 33) / 32 <= 128 else {
                    throw .invalidKey(map: map, type: e.type, "a control block is 33 + 32·m bytes (m ≤ 128)")
                }
                guard !e.value.isEmpty else { throw .invalidValue(map: map, type: e.type, "no leaf version") }
                input.tapLeafScripts[e.keyData] = e.value
            case 0x16:
                input.tapBip32Derivation[try xonly(e.keyData, map, e.type, key: true)] = try tapOrigin(
                    e.value, map, e.type)
            case 0x17:
                try expectEmptyKey(e, map)
                input.tapInternalKey = try xonly(e.value, map, e.type, key: false)
            case 0x18:
                try expectEmptyKey(e, map)
                guard e.value.count == 32 else {
                    throw .invalidValue(map: map, type: e.type, "a Merkle root is 32 bytes")
                }
                input.tapMerkleRoot = e.value
            default:
                input.unknown[e.key] = e.value
            }
        }
        return input
    }

    static func parseOutput(_ entries: [Entry], name map: String) throws(PSBTError) -> PSBTOutput {
        var output = PSBTOutput()
        for e in entries {
            switch e.type {
            case 0x00:
                try expectEmptyKey(e, map)
                output.redeemScript = Script(bytes: e.value)
            case 0x01:
                try expectEmptyKey(e, map)
                output.witnessScript = Script(bytes: e.value)
            case 0x02:
                output.bip32Derivation[try pubkey(e, map)] = try KeyOrigin(e.value, map: map, type: e.type)
            case 0x05:
                try expectEmptyKey(e, map)
                output.tapInternalKey = try xonly(e.value, map, e.type, key: false)
            case 0x06:
                try expectEmptyKey(e, map)
                var r = ByteReader(e.value)
                var entries: [TapTreeEntry] = []
                do {
                    while !r.isAtEnd {
                        let depth = try r.u8("depth")
                        guard depth <= 128 else { throw BitcoinError("depth \(depth) above 128") }
                        let version = try r.u8("leaf version")
                        guard version & 1 == 0 else { throw BitcoinError("leaf version \(version) is odd") }
                        entries.append(
                            TapTreeEntry(
                                depth: depth, leafVersion: version, script: Script(bytes: try r.varBytes("script"))))
                    }
                } catch { throw .invalidValue(map: map, type: e.type, "\(error)") }
                guard !entries.isEmpty else { throw .invalidValue(map: map, type: e.type, "an empty tree") }
                output.tapTree = entries
            case 0x07:
                output.tapBip32Derivation[try xonly(e.keyData, map, e.type, key: true)] = try tapOrigin(
                    e.value, map, e.type)
            default:
                output.unknown[e.key] = e.value
            }
        }
        return output
    }

    // MARK: Serialization

    /// Fields in key-type order, map entries sorted by key (as Bitcoin Core writes them).
    public var serialized: [UInt8] {
        var w = ByteWriter()
        w.fixed(Self.magic)
        var global: [([UInt8], [UInt8])] = [([0x00], unsignedTx.serialized(withWitness: false))]
        for (key, origin) in xpubs { global.append(([0x01] + key, origin.encoded)) }
        if let version {
            var v = ByteWriter()
            v.u32(version)
            global.append(([0xFB], v.bytes))
        }
        Self.write(&w, global, unknown: unknown)
        for input in inputs { Self.write(&w, Self.entries(input), unknown: input.unknown, isInput: true) }
        for output in outputs { Self.write(&w, Self.entries(output), unknown: output.unknown) }
        return w.bytes
    }

    public var base64: String { Base64.encode(serialized) }

    static func write(
        _ w: inout ByteWriter, _ known: [([UInt8], [UInt8])], unknown: [[UInt8]: [UInt8]], isInput: Bool = false
    ) {
        // Partial signatures (input type 0x02) sort by the HASH160 of their public key, as
        // Bitcoin Core keeps them (BIP174 leaves the order open; its vectors come from Core).
        func order(_ key: [UInt8]) -> [UInt8] {
            isInput && key.first == 0x02 ? [0x02] + SHA256.hash160(Array(key.dropFirst())) : key
        }
        let all =
            known.sorted { order($0.0).lexicographicallyPrecedes(order($1.0)) }
            + unknown.sorted { $0.key.lexicographicallyPrecedes($1.key) }.map { ($0.key, $0.value) }
        for (key, value) in all {
            w.varBytes(key)
            w.varBytes(value)
        }
        w.u8(0)
    }

    static func u32(_ v: UInt32) -> [UInt8] {
        var w = ByteWriter()
        w.u32(v)
        return w.bytes
    }

    static func tapOriginBytes(_ o: TapKeyOrigin) -> [UInt8] {
        var w = ByteWriter()
        w.compactSize(o.leafHashes.count)
        for h in o.leafHashes { w.fixed(h) }
        w.fixed(o.origin.encoded)
        return w.bytes
    }

    static func entries(_ i: PSBTInput) -> [([UInt8], [UInt8])] {
        var out: [([UInt8], [UInt8])] = []
        if let tx = i.nonWitnessUtxo { out.append(([0x00], tx.serialized())) }
        if let utxo = i.witnessUtxo { out.append(([0x01], utxo.serialized)) }
        for (k, v) in i.partialSigs { out.append(([0x02] + k, v)) }
        if let t = i.sighashType { out.append(([0x03], u32(t))) }
        if let s = i.redeemScript { out.append(([0x04], s.bytes)) }
        if let s = i.witnessScript { out.append(([0x05], s.bytes)) }
        for (k, v) in i.bip32Derivation { out.append(([0x06] + k, v.encoded)) }
        if let s = i.finalScriptSig { out.append(([0x07], s.bytes)) }
        if let items = i.finalScriptWitness {
            var w = ByteWriter()
            w.compactSize(items.count)
            for item in items { w.varBytes(item) }
            out.append(([0x08], w.bytes))
        }
        for (k, v) in i.ripemd160 { out.append(([0x0A] + k, v)) }
        for (k, v) in i.sha256 { out.append(([0x0B] + k, v)) }
        for (k, v) in i.hash160 { out.append(([0x0C] + k, v)) }
        for (k, v) in i.hash256 { out.append(([0x0D] + k, v)) }
        if let s = i.tapKeySig { out.append(([0x13], s)) }
        for (k, v) in i.tapScriptSigs { out.append(([0x14] + k, v)) }
        for (k, v) in i.tapLeafScripts { out.append(([0x15] + k, v)) }
        for (k, v) in i.tapBip32Derivation { out.append(([0x16] + k, tapOriginBytes(v))) }
        if let k = i.tapInternalKey { out.append(([0x17], k)) }
        if let r = i.tapMerkleRoot { out.append(([0x18], r)) }
        return out
    }

    static func entries(_ o: PSBTOutput) -> [([UInt8], [UInt8])] {
        var out: [([UInt8], [UInt8])] = []
        if let s = o.redeemScript { out.append(([0x00], s.bytes)) }
        if let s = o.witnessScript { out.append(([0x01], s.bytes)) }
        for (k, v) in o.bip32Derivation { out.append(([0x02] + k, v.encoded)) }
        if let k = o.tapInternalKey { out.append(([0x05], k)) }
        if let tree = o.tapTree {
            var w = ByteWriter()
            for e in tree {
                w.u8(e.depth)
                w.u8(e.leafVersion)
                w.varBytes(e.script.bytes)
            }
            out.append(([0x06], w.bytes))
        }
        for (k, v) in o.tapBip32Derivation { out.append(([0x07] + k, tapOriginBytes(v))) }
        return out
    }
}
