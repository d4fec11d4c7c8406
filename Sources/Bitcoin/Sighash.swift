import NodeCrypto

/// Signature hash types. Taproot adds `default` (0x00, same as ALL, no byte appended).
public struct SighashType: Sendable, Hashable, RawRepresentable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let `default` = SighashType(rawValue: 0)
    public static let all = SighashType(rawValue: 1)
    public static let none = SighashType(rawValue: 2)
    public static let single = SighashType(rawValue: 3)
    public static let anyoneCanPay: UInt32 = 0x80

    var base: UInt32 { rawValue & 0x1F }
    var isAnyoneCanPay: Bool { rawValue & Self.anyoneCanPay != 0 }
    /// Outputs committed to: all (ALL/DEFAULT), none, or the one at the input's index.
    var outputs: UInt32 { rawValue == 0 ? 1 : rawValue & 3 }
}

extension BitcoinTransaction {
    // MARK: BIP143 (segwit v0)

    /// The BIP143 preimage for input `index` spending `amount` with `scriptCode`
    /// (without its length prefix; for P2WPKH the P2PKH script of the key hash).
    public func segwitV0Preimage(
        index: Int, scriptCode: Script, amount: UInt64, type: SighashType
    ) throws(BitcoinError) -> [UInt8] {
        guard inputs.indices.contains(index) else { throw BitcoinError("sighash: no input \(index)") }
        let zero = [UInt8](repeating: 0, count: 32)
        var prevouts = ByteWriter()
        var sequences = ByteWriter()
        for input in inputs {
            input.previousOutput.write(&prevouts)
            sequences.u32(input.sequence)
        }
        let base = type.rawValue & 0x1F
        let hashPrevouts = type.isAnyoneCanPay ? zero : SHA256.doubleHash(prevouts.bytes)
        let hashSequence =
            type.isAnyoneCanPay || base == SighashType.single.rawValue || base == SighashType.none.rawValue
            ? zero : SHA256.doubleHash(sequences.bytes)
        let hashOutputs: [UInt8]
        if base != SighashType.single.rawValue && base != SighashType.none.rawValue {
            hashOutputs = SHA256.doubleHash(outputs.flatMap(\.serialized))
        } else if base == SighashType.single.rawValue && index < outputs.count {
            hashOutputs = SHA256.doubleHash(outputs[index].serialized)
        } else {
            hashOutputs = zero
        }
        var w = ByteWriter()
        w.i32(version)
        w.fixed(hashPrevouts)
        w.fixed(hashSequence)
        inputs[index].previousOutput.write(&w)
        w.varBytes(scriptCode.bytes)
        w.u64(amount)
        w.u32(inputs[index].sequence)
        w.fixed(hashOutputs)
        w.u32(lockTime)
        w.u32(type.rawValue)
        return w.bytes
    }

    public func segwitV0Sighash(
        index: Int, scriptCode: Script, amount: UInt64, type: SighashType
    ) throws(BitcoinError) -> [UInt8] {
        SHA256.doubleHash(try segwitV0Preimage(index: index, scriptCode: scriptCode, amount: amount, type: type))
    }

    // MARK: BIP341 (taproot)

    /// What a taproot signature commits to for a script-path spend.
    public struct TapScriptSpend: Sendable, Equatable {
        public let leafHash: [UInt8]
        /// Position of the last executed OP_CODESEPARATOR, or 0xFFFFFFFF.
        public let codeSeparatorPosition: UInt32

        public init(leafHash: [UInt8], codeSeparatorPosition: UInt32 = 0xFFFF_FFFF) {
            self.leafHash = leafHash
            self.codeSeparatorPosition = codeSeparatorPosition
        }
    }

    /// BIP341 SigMsg, with the leading epoch byte 0x00 (the vectors' `sigMsg`).
    /// `spent` are the outputs every input spends, in input order.
    public func taprootSigMsg(
        index: Int, spent: [TxOut], type: SighashType, annex: [UInt8]? = nil, scriptSpend: TapScriptSpend? = nil
    ) throws(BitcoinError) -> [UInt8] {
        guard inputs.indices.contains(index) else { throw BitcoinError("sighash: no input \(index)") }
        guard spent.count == inputs.count else {
            throw BitcoinError("sighash: \(spent.count) spent outputs for \(inputs.count) inputs")
        }
        guard [0x00, 0x01, 0x02, 0x03, 0x81, 0x82, 0x83].contains(type.rawValue) else {
            throw BitcoinError("sighash: invalid taproot hash type \(type.rawValue)")
        }
        var w = ByteWriter()
        w.u8(0)  // epoch
        w.u8(UInt8(type.rawValue))
        w.i32(version)
        w.u32(lockTime)
        if !type.isAnyoneCanPay {
            var prevouts = ByteWriter()
            var amounts = ByteWriter()
            var scripts = ByteWriter()
            var sequences = ByteWriter()
            for (input, output) in zip(inputs, spent) {
                input.previousOutput.write(&prevouts)
                amounts.u64(output.value)
                scripts.varBytes(output.scriptPubKey.bytes)
                sequences.u32(input.sequence)
            }
            w.fixed(SHA256.hash(prevouts.bytes))
            w.fixed(SHA256.hash(amounts.bytes))
            w.fixed(SHA256.hash(scripts.bytes))
            w.fixed(SHA256.hash(sequences.bytes))
        }
        if type.outputs == SighashType.all.rawValue {
            w.fixed(SHA256.hash(outputs.flatMap(\.serialized)))
        }
        w.u8((scriptSpend == nil ? 0 : 2) + (annex == nil ? 0 : 1))
        if type.isAnyoneCanPay {
            inputs[index].previousOutput.write(&w)
            w.u64(spent[index].value)
            w.varBytes(spent[index].scriptPubKey.bytes)
            w.u32(inputs[index].sequence)
        } else {
            w.u32(UInt32(index))
        }
        if let annex {
            var a = ByteWriter()
            a.varBytes(annex)
            w.fixed(SHA256.hash(a.bytes))
        }
        if type.outputs == SighashType.single.rawValue {
            guard index < outputs.count else { throw BitcoinError("sighash: SINGLE without an output \(index)") }
            w.fixed(SHA256.hash(outputs[index].serialized))
        }
        if let scriptSpend {
            w.fixed(scriptSpend.leafHash)
            w.u8(0)  // key version
            w.u32(scriptSpend.codeSeparatorPosition)
        }
        return w.bytes
    }

    public func taprootSighash(
        index: Int, spent: [TxOut], type: SighashType, annex: [UInt8]? = nil, scriptSpend: TapScriptSpend? = nil
    ) throws(BitcoinError) -> [UInt8] {
        Secp256k1.taggedHash(
            "TapSighash",
            try taprootSigMsg(index: index, spent: spent, type: type, annex: annex, scriptSpend: scriptSpend))
    }
}
