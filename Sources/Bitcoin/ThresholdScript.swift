/// A threshold tapscript leaf over x-only keys (BIP342), optionally behind a relative
/// timelock (BIP112 `OP_CHECKSEQUENCEVERIFY`, as miniscript's `and_v(v:older(T), …)`):
///
///     counted:  [<T> CSV VERIFY] <K1> CHECKSIG <K2> CHECKSIGADD … <Kn> CHECKSIGADD <k> NUMEQUAL
///               (the `multi_a` descriptor: each key counts 1, exactly k signatures)
///     weighted: [<T> CSV VERIFY] <K1> CHECKSIG IF <w1> ELSE 0 ENDIF
///               ( SWAP <Ki> CHECKSIG IF <wi> ADD ENDIF )*  <k> GREATERTHANOREQUAL
///               (Nomic's weighted multisig in tapscript: each signing key adds its weight)
///
/// The witness is one element per key in reverse script order (a 64-byte signature, or
/// empty where the key does not sign). Weights and the threshold are script numbers: the
/// sum of all weights stays below 2^31, so every `ADD` takes 4-byte operands.
public struct ThresholdScript: Sendable, Equatable {
    public let keys: [[UInt8]]
    /// nil: every key counts 1 (`multi_a`).
    public let weights: [UInt64]?
    public let threshold: UInt64
    /// Blocks of relative timelock (BIP68 height-based), if any.
    public let olderBlocks: UInt32?

    public static let maxTotalWeight: UInt64 = (1 << 31) - 1

    public init(
        keys: [[UInt8]], weights: [UInt64]? = nil, threshold: UInt64, olderBlocks: UInt32? = nil
    )
        throws(BitcoinError)
    {
        guard !keys.isEmpty, keys.count <= 999 else { throw BitcoinError("threshold script: 1…999 keys") }
        guard keys.allSatisfy({ $0.count == 32 }) else {
            throw BitcoinError("threshold script: keys must be x-only (32 bytes)")
        }
        if let weights {
            guard weights.count == keys.count, weights.allSatisfy({ $0 >= 1 }),
                weights.reduce(0, +) <= Self.maxTotalWeight
            else { throw BitcoinError("threshold script: one weight ≥ 1 per key, in total below 2^31") }
        }
        let total = weights?.reduce(0, +) ?? UInt64(keys.count)
        guard threshold >= 1, threshold <= total else {
            throw BitcoinError("threshold script: threshold \(threshold) of \(total)")
        }
        if let olderBlocks {
            // BIP68 height-based lock: the low 16 bits, no type or disable flag.
            guard olderBlocks >= 1, olderBlocks <= 0xFFFF else {
                throw BitcoinError("threshold script: a relative timelock of 1…65535 blocks")
            }
        }
        self.keys = keys
        self.weights = weights
        self.threshold = threshold
        self.olderBlocks = olderBlocks
    }

    public var totalWeight: UInt64 { weights?.reduce(0, +) ?? UInt64(keys.count) }

    public func weight(ofKeyAt index: Int) -> UInt64 { weights?[index] ?? 1 }

    /// The weight of the signatures of these keys.
    public func weight(of signers: Set<[UInt8]>) -> UInt64 {
        keys.indices.filter { signers.contains(keys[$0]) }.reduce(0) { $0 + weight(ofKeyAt: $1) }
    }

    /// The most signatures the leaf may need: the fewest keys whose weight reaches the
    /// threshold, taking the lightest first (the witness size a fee must cover).
    public var signaturesNeeded: Int {
        var reached: UInt64 = 0
        var count = 0
        for w in keys.indices.map({ weight(ofKeyAt: $0) }).sorted() where reached < threshold {
            reached += w
            count += 1
        }
        return count
    }

    public var script: Script {
        typealias Op = Script.Op
        var bytes: [UInt8] = []
        if let olderBlocks {
            bytes += Script.pushNumber(Int(olderBlocks)) + [Op.checkSequenceVerify, Op.verify]
        }
        if let weights {
            for (i, key) in keys.enumerated() {
                if i == 0 {
                    bytes +=
                        [0x20] + key + [Op.checkSig, Op.if] + Script.pushNumber(Int(weights[0]))
                        + [Op.else, Op.zero, Op.endIf]
                } else {
                    bytes +=
                        [Op.swap, 0x20] + key + [Op.checkSig, Op.if] + Script.pushNumber(Int(weights[i]))
                        + [Op.add, Op.endIf]
                }
            }
            bytes += Script.pushNumber(Int(threshold)) + [Op.greaterThanOrEqual]
        } else {
            for (i, key) in keys.enumerated() {
                bytes += [0x20] + key + [i == 0 ? Op.checkSig : Op.checkSigAdd]
            }
            bytes += Script.pushNumber(Int(threshold)) + [Op.numEqual]
        }
        return Script(bytes: bytes)
    }

    /// Parses a leaf script of either form (the canonical encoding only: it must rebuild
    /// to the very same bytes).
    public init?(script: Script) {
        typealias Op = Script.Op
        guard let ops = script.operations else { return nil }
        func number(_ op: Script.Operation) -> UInt64? { op.number.flatMap { $0 >= 0 ? UInt64($0) : nil } }
        func key(_ op: Script.Operation) -> [UInt8]? { op.data.flatMap { $0.count == 32 ? $0 : nil } }
        var start = 0
        var older: UInt32?
        if ops.count > 3, ops[1].opcode == Op.checkSequenceVerify, ops[2].opcode == Op.verify {
            guard let n = number(ops[0]), n <= 0xFFFF else { return nil }
            older = UInt32(n)
            start = 3
        }
        guard ops.count >= start + 4 else { return nil }
        let body = Array(ops[start..<ops.count - 2])
        let weighted = body.count >= 3 && body[2].opcode == Op.if
        var keys: [[UInt8]] = []
        var weights: [UInt64] = []
        if weighted {
            guard body.count % 7 == 0 else { return nil }
            for s in stride(from: 0, to: body.count, by: 7) {
                let c = Array(body[s..<s + 7])
                let first = s == 0
                let k = first ? c[0] : c[1]
                let rest = first ? Array(c[1...]) : Array(c[2...])
                guard first || c[0].opcode == Op.swap, let k = key(k), rest[0].opcode == Op.checkSig,
                    rest[1].opcode == Op.if, let w = number(rest[2])
                else { return nil }
                if first {
                    guard rest[3].opcode == Op.else, rest[4].opcode == Op.zero, rest[5].opcode == Op.endIf else {
                        return nil
                    }
                } else {
                    guard rest[3].opcode == Op.add, rest[4].opcode == Op.endIf else { return nil }
                }
                keys.append(k)
                weights.append(w)
            }
        } else {
            guard body.count % 2 == 0 else { return nil }
            for s in stride(from: 0, to: body.count, by: 2) {
                guard let k = key(body[s]), body[s + 1].opcode == (s == 0 ? Op.checkSig : Op.checkSigAdd) else {
                    return nil
                }
                keys.append(k)
            }
        }
        guard let threshold = number(ops[ops.count - 2]),
            ops[ops.count - 1].opcode == (weighted ? Op.greaterThanOrEqual : Op.numEqual),
            let parsed = try? ThresholdScript(
                keys: keys, weights: weighted ? weights : nil, threshold: threshold, olderBlocks: older),
            parsed.script == script
        else { return nil }
        self = parsed
    }
}

extension Script {
    /// One parsed script operation: an opcode, with its data for a push.
    public struct Operation: Sendable, Equatable {
        public let opcode: UInt8
        public let data: [UInt8]?

        /// The value of a minimal number push (`OP_0`, `OP_1`…`OP_16`, or up to 4 bytes).
        public var number: Int64? {
            if opcode == Op.zero { return 0 }
            if opcode >= Op.one, opcode <= Op.sixteen { return Int64(opcode - Op.one + 1) }
            guard let data, !data.isEmpty, data.count <= 4 else { return nil }
            var v: Int64 = 0
            for (i, b) in data.enumerated() { v |= Int64(i == data.count - 1 ? b & 0x7F : b) << (8 * Int64(i)) }
            return data.last! & 0x80 != 0 ? -v : v
        }
    }

    /// The script as operations, or nil if a push runs past its end.
    public var operations: [Operation]? {
        var out: [Operation] = []
        var i = 0
        while i < bytes.count {
            let op = bytes[i]
            i += 1
            var length: Int?
            switch op {
            case 0x01...0x4B: length = Int(op)
            case Op.pushData1:
                guard i + 1 <= bytes.count else { return nil }
                length = Int(bytes[i])
                i += 1
            case Op.pushData2:
                guard i + 2 <= bytes.count else { return nil }
                length = Int(bytes[i]) | Int(bytes[i + 1]) << 8
                i += 2
            case Op.pushData4:
                guard i + 4 <= bytes.count else { return nil }
                length = (0..<4).reduce(0) { $0 | Int(bytes[i + $1]) << (8 * $1) }
                i += 4
            default: length = nil
            }
            if let length {
                guard length <= bytes.count - i else { return nil }
                out.append(Operation(opcode: op, data: Array(bytes[i..<i + length])))
                i += length
            } else {
                out.append(Operation(opcode: op, data: nil))
            }
        }
        return out
    }
}
