import NodeCrypto

/// A reference to a transaction output: the txid in internal byte order (as hashed,
/// the reverse of how explorers print it) and the output index.
public struct OutPoint: Sendable, Hashable, CustomStringConvertible {
    public let txid: [UInt8]
    public let vout: UInt32

    public init(txid: [UInt8], vout: UInt32) {
        self.txid = txid
        self.vout = vout
    }

    /// From an explorer's txid (display order, hex) and index.
    public init(displayTxid: String, vout: UInt32) throws(BitcoinError) {
        guard let bytes = try? Hex.decode(displayTxid), bytes.count == 32 else {
            throw BitcoinError("txid must be 64 hex digits")
        }
        self.init(txid: bytes.reversed(), vout: vout)
    }

    public var displayTxid: String { txid.reversed().hex }
    public var description: String { "\(displayTxid):\(vout)" }

    func write(_ w: inout ByteWriter) {
        w.fixed(txid)
        w.u32(vout)
    }

    static func read(_ r: inout ByteReader) throws(BitcoinError) -> OutPoint {
        OutPoint(txid: try r.fixed(32, "outpoint txid"), vout: try r.u32("outpoint index"))
    }
}

public struct TxIn: Sendable, Equatable {
    public var previousOutput: OutPoint
    public var scriptSig: Script
    public var sequence: UInt32
    public var witness: [[UInt8]]

    /// Signals replaceability (BIP125) and enables nLockTime.
    public static let rbfSequence: UInt32 = 0xFFFF_FFFD

    public init(
        previousOutput: OutPoint, scriptSig: Script = Script(bytes: []), sequence: UInt32 = rbfSequence,
        witness: [[UInt8]] = []
    ) {
        self.previousOutput = previousOutput
        self.scriptSig = scriptSig
        self.sequence = sequence
        self.witness = witness
    }
}

public struct TxOut: Sendable, Equatable {
    public var value: UInt64
    public var scriptPubKey: Script

    public init(value: UInt64, scriptPubKey: Script) {
        self.value = value
        self.scriptPubKey = scriptPubKey
    }

    func write(_ w: inout ByteWriter) {
        w.u64(value)
        w.varBytes(scriptPubKey.bytes)
    }

    static func read(_ r: inout ByteReader) throws(BitcoinError) -> TxOut {
        let value = try r.u64("output value")
        guard value <= 21_000_000 * 100_000_000 else { throw BitcoinError("output value \(value) exceeds 21M BTC") }
        return TxOut(value: value, scriptPubKey: Script(bytes: try r.varBytes("output script")))
    }

    public var serialized: [UInt8] {
        var w = ByteWriter()
        write(&w)
        return w.bytes
    }
}

/// A Bitcoin transaction, serialized as Bitcoin Core does: the legacy form, or the
/// BIP144 segwit form (marker 0x00, flag 0x01, witnesses after the outputs) when any
/// input has a witness.
public struct BitcoinTransaction: Sendable, Equatable {
    public var version: Int32
    public var inputs: [TxIn]
    public var outputs: [TxOut]
    public var lockTime: UInt32

    public init(version: Int32 = 2, inputs: [TxIn], outputs: [TxOut], lockTime: UInt32 = 0) {
        self.version = version
        self.inputs = inputs
        self.outputs = outputs
        self.lockTime = lockTime
    }

    public var hasWitness: Bool { inputs.contains { !$0.witness.isEmpty } }

    public func serialized(withWitness: Bool = true) -> [UInt8] {
        let witness = withWitness && hasWitness
        var w = ByteWriter()
        w.i32(version)
        if witness {
            w.u8(0)
            w.u8(1)
        }
        w.compactSize(inputs.count)
        for input in inputs {
            input.previousOutput.write(&w)
            w.varBytes(input.scriptSig.bytes)
            w.u32(input.sequence)
        }
        w.compactSize(outputs.count)
        for output in outputs { output.write(&w) }
        if witness {
            for input in inputs {
                w.compactSize(input.witness.count)
                for item in input.witness { w.varBytes(item) }
            }
        }
        w.u32(lockTime)
        return w.bytes
    }

    public var hex: String { serialized().hex }

    /// Strict parse: the whole input, no superfluous witness marker.
    public init(bytes: [UInt8]) throws(BitcoinError) {
        var r = ByteReader(bytes)
        self = try Self.read(&r)
        guard r.isAtEnd else { throw BitcoinError("transaction: \(r.remaining) trailing bytes") }
    }

    public init(hex: String) throws(BitcoinError) {
        guard let bytes = try? Hex.decode(hex) else { throw BitcoinError("transaction: not hex") }
        try self.init(bytes: bytes)
    }

    /// With `allowWitness` false (a PSBT's unsigned transaction), a zero input count is
    /// read as zero inputs rather than as the BIP144 marker.
    static func read(
        _ r: inout ByteReader, allowWitness: Bool = true, requireWitnessData: Bool = true
    ) throws(BitcoinError) -> BitcoinTransaction {
        let version = Int32(bitPattern: try r.u32("version"))
        var inputCount = try r.compactSize("input count")
        var segwit = false
        if inputCount == 0 && allowWitness {
            // BIP144 marker; a flag must follow (a transaction without inputs is invalid anyway).
            let flag = try r.u8("segwit flag")
            guard flag == 1 else { throw BitcoinError("transaction: unknown segwit flag \(flag)") }
            segwit = true
            inputCount = try r.compactSize("input count")
        }
        var inputs: [TxIn] = []
        for _ in 0..<inputCount {
            let outpoint = try OutPoint.read(&r)
            let scriptSig = Script(bytes: try r.varBytes("scriptSig"))
            inputs.append(TxIn(previousOutput: outpoint, scriptSig: scriptSig, sequence: try r.u32("sequence")))
        }
        let outputCount = try r.compactSize("output count")
        var outputs: [TxOut] = []
        for _ in 0..<outputCount { outputs.append(try TxOut.read(&r)) }
        if segwit {
            for i in inputs.indices {
                let n = try r.compactSize("witness item count")
                for _ in 0..<n { inputs[i].witness.append(try r.varBytes("witness item")) }
            }
            guard !requireWitnessData || inputs.contains(where: { !$0.witness.isEmpty }) else {
                throw BitcoinError("transaction: segwit marker without any witness")
            }
        }
        return BitcoinTransaction(version: version, inputs: inputs, outputs: outputs, lockTime: try r.u32("locktime"))
    }

    /// txid in internal byte order: double SHA-256 of the serialization without witnesses.
    public var txid: [UInt8] { SHA256.doubleHash(serialized(withWitness: false)) }
    public var wtxid: [UInt8] { SHA256.doubleHash(serialized()) }
    /// As explorers print it.
    public var displayTxid: String { txid.reversed().hex }

    /// BIP141 weight: base size × 3 + total size.
    public var weight: Int { serialized(withWitness: false).count * 3 + serialized().count }
    public var virtualSize: Int { (weight + 3) / 4 }
}
