import NodeCrypto

extension PSBT {
    // MARK: Combiner

    /// Merges another PSBT for the same transaction: the union of every map (BIP174
    /// combiner). Entries present in both keep this PSBT's value.
    public mutating func combine(with other: PSBT) throws(PSBTError) {
        guard other.unsignedTx == unsignedTx else { throw .combine("the PSBTs are for different transactions") }
        xpubs.merge(other.xpubs) { mine, _ in mine }
        unknown.merge(other.unknown) { mine, _ in mine }
        version = version ?? other.version
        for i in inputs.indices {
            let o = other.inputs[i]
            var m = inputs[i]
            m.nonWitnessUtxo = m.nonWitnessUtxo ?? o.nonWitnessUtxo
            m.witnessUtxo = m.witnessUtxo ?? o.witnessUtxo
            m.partialSigs.merge(o.partialSigs) { a, _ in a }
            m.sighashType = m.sighashType ?? o.sighashType
            m.redeemScript = m.redeemScript ?? o.redeemScript
            m.witnessScript = m.witnessScript ?? o.witnessScript
            m.bip32Derivation.merge(o.bip32Derivation) { a, _ in a }
            m.finalScriptSig = m.finalScriptSig ?? o.finalScriptSig
            m.finalScriptWitness = m.finalScriptWitness ?? o.finalScriptWitness
            m.ripemd160.merge(o.ripemd160) { a, _ in a }
            m.sha256.merge(o.sha256) { a, _ in a }
            m.hash160.merge(o.hash160) { a, _ in a }
            m.hash256.merge(o.hash256) { a, _ in a }
            m.tapKeySig = m.tapKeySig ?? o.tapKeySig
            m.tapScriptSigs.merge(o.tapScriptSigs) { a, _ in a }
            m.tapLeafScripts.merge(o.tapLeafScripts) { a, _ in a }
            m.tapBip32Derivation.merge(o.tapBip32Derivation) { a, _ in a }
            m.tapInternalKey = m.tapInternalKey ?? o.tapInternalKey
            m.tapMerkleRoot = m.tapMerkleRoot ?? o.tapMerkleRoot
            m.unknown.merge(o.unknown) { a, _ in a }
            inputs[i] = m
        }
        for i in outputs.indices {
            let o = other.outputs[i]
            var m = outputs[i]
            m.redeemScript = m.redeemScript ?? o.redeemScript
            m.witnessScript = m.witnessScript ?? o.witnessScript
            m.bip32Derivation.merge(o.bip32Derivation) { a, _ in a }
            m.tapInternalKey = m.tapInternalKey ?? o.tapInternalKey
            m.tapTree = m.tapTree ?? o.tapTree
            m.tapBip32Derivation.merge(o.tapBip32Derivation) { a, _ in a }
            m.unknown.merge(o.unknown) { a, _ in a }
            outputs[i] = m
        }
    }
}

extension BitcoinTransaction {
    /// The legacy (pre-segwit) signature hash, for P2PKH and bare/P2SH scripts.
    public func legacySighash(index: Int, scriptCode: Script, type: SighashType) throws(BitcoinError) -> [UInt8] {
        guard inputs.indices.contains(index) else { throw BitcoinError("sighash: no input \(index)") }
        let base = type.rawValue & 0x1F
        if base == SighashType.single.rawValue && index >= outputs.count {
            return [1] + [UInt8](repeating: 0, count: 31)  // Bitcoin Core's historical "one"
        }
        var tx = self
        for i in tx.inputs.indices {
            tx.inputs[i].scriptSig = Script(bytes: [])
            tx.inputs[i].witness = []
        }
        tx.inputs[index].scriptSig = scriptCode
        if base == SighashType.none.rawValue || base == SighashType.single.rawValue {
            for i in tx.inputs.indices where i != index { tx.inputs[i].sequence = 0 }
            if base == SighashType.none.rawValue {
                tx.outputs = []
            } else {
                tx.outputs = Array(tx.outputs.prefix(index + 1))
                for i in 0..<index { tx.outputs[i] = TxOut(value: UInt64.max, scriptPubKey: Script(bytes: [])) }
            }
        }
        if type.isAnyoneCanPay { tx.inputs = [tx.inputs[index]] }
        var w = ByteWriter()
        w.fixed(tx.serialized(withWitness: false))
        w.u32(type.rawValue)
        return SHA256.doubleHash(w.bytes)
    }
}

extension Script {
    /// `OP_m <pubkey>… OP_n OP_CHECKMULTISIG`: threshold and keys, if it is one.
    public var checkMultisig: (threshold: Int, keys: [[UInt8]])? {
        guard bytes.count >= 3, bytes.last == 0xAE, let m = Self.smallInt(bytes[0]),
            let n = Self.smallInt(bytes[bytes.count - 2])
        else { return nil }
        var keys: [[UInt8]] = []
        var i = 1
        while i < bytes.count - 2 {
            let len = Int(bytes[i])
            guard len == 33 || len == 65, i + 1 + len <= bytes.count - 2 else { return nil }
            keys.append(Array(bytes[i + 1..<i + 1 + len]))
            i += 1 + len
        }
        guard keys.count == n, m >= 1, m <= n else { return nil }
        return (m, keys)
    }

    static func smallInt(_ op: UInt8) -> Int? { op >= Op.one && op <= Op.sixteen ? Int(op - Op.one + 1) : nil }

    /// P2SH: `OP_HASH160 <20> OP_EQUAL`.
    public var p2shHash: [UInt8]? {
        bytes.count == 23 && bytes[0] == Op.hash160 && bytes[1] == 0x14 && bytes[22] == Op.equal
            ? Array(bytes[2..<22]) : nil
    }

    public static func p2sh(_ redeemScript: Script) -> Script {
        Script(bytes: [Op.hash160, 0x14] + SHA256.hash160(redeemScript.bytes) + [Op.equal])
    }
}

/// A PSBT whose inputs passed the signer checks (BIP174): each has the output it
/// spends, UTXOs agree with the transaction, and redeem and witness scripts hash to
/// what they claim. Signing, finalizing and extracting happen on this type.
public struct ValidatedPSBT: Sendable, Equatable {
    public private(set) var psbt: PSBT
    /// The output each input spends, in input order.
    public let spent: [TxOut]

    public init(_ psbt: PSBT) throws(PSBTError) {
        var spent: [TxOut] = []
        for (i, input) in psbt.inputs.enumerated() {
            let prevout = psbt.unsignedTx.inputs[i].previousOutput
            let utxo: TxOut
            if let tx = input.nonWitnessUtxo {
                guard tx.txid == prevout.txid, Int(prevout.vout) < tx.outputs.count else {
                    throw .utxoMismatch(input: i, "the non-witness UTXO is not the output this input spends")
                }
                utxo = tx.outputs[Int(prevout.vout)]
                if let w = input.witnessUtxo, w != utxo {
                    throw .utxoMismatch(input: i, "the witness UTXO differs from the non-witness UTXO")
                }
            } else if let w = input.witnessUtxo {
                utxo = w
            } else {
                throw .utxoMismatch(input: i, "no UTXO (witness or non-witness) for this input")
            }
            var script = utxo.scriptPubKey
            if let hash = script.p2shHash {
                guard let redeem = input.redeemScript, SHA256.hash160(redeem.bytes) == hash else {
                    throw .utxoMismatch(input: i, "the redeem script does not match the P2SH output")
                }
                script = redeem
            } else if input.redeemScript != nil {
                throw .utxoMismatch(input: i, "a redeem script for an output that is not P2SH")
            }
            if let (version, program) = script.witnessProgram {
                if version == 0 && program.count == 32 {
                    guard let ws = input.witnessScript, SHA256.hash(ws.bytes) == program else {
                        throw .utxoMismatch(input: i, "the witness script does not match the P2WSH program")
                    }
                }
            } else if input.nonWitnessUtxo == nil {
                throw .utxoMismatch(input: i, "a witness UTXO for a non-witness input (the full transaction is needed)")
            }
            spent.append(utxo)
        }
        self.psbt = psbt
        self.spent = spent
    }

    // MARK: Signer

    /// Adds every signature `key` can make: ECDSA for P2PKH/P2SH/P2WPKH/P2WSH inputs whose
    /// script names its key, BIP340 for a taproot key path when it is the internal key
    /// and for every taproot leaf that names its x-only key. Returns how many it added.
    /// Signatures use the input's sighash type (default: ALL, or DEFAULT for taproot).
    @discardableResult
    public mutating func sign(with key: Secp256k1.PrivateKey) throws(PSBTError) -> Int {
        var added = 0
        for i in psbt.inputs.indices where !psbt.inputs[i].isFinalized {
            let input = psbt.inputs[i]
            let utxo = spent[i]
            do {
                if utxo.scriptPubKey.isP2TR {
                    added += try signTaproot(i, key: key)
                    continue
                }
                let type = SighashType(rawValue: input.sighashType ?? SighashType.all.rawValue)
                let pub = key.publicKey.compressed
                let script = input.redeemScript ?? utxo.scriptPubKey
                let digest: [UInt8]
                if script.isP2WPKH {
                    guard Array(script.bytes[2...]) == SHA256.hash160(pub) else { continue }
                    digest = try psbt.unsignedTx.segwitV0Sighash(
                        index: i, scriptCode: .p2pkh(publicKeyHash: Array(script.bytes[2...])), amount: utxo.value,
                        type: type)
                } else if script.isP2WSH, let ws = input.witnessScript {
                    guard Self.names(ws, pub) else { continue }
                    digest = try psbt.unsignedTx.segwitV0Sighash(
                        index: i, scriptCode: ws, amount: utxo.value, type: type)
                } else {
                    guard Self.names(script, pub) || script == .p2pkh(publicKeyHash: SHA256.hash160(pub)) else {
                        continue
                    }
                    digest = try psbt.unsignedTx.legacySighash(index: i, scriptCode: script, type: type)
                }
                let signature = try key.ecdsaSignature(forDigest: digest).derRepresentation
                psbt.inputs[i].partialSigs[pub] = signature + [UInt8(type.rawValue & 0xFF)]
                added += 1
            } catch let error as PSBTError {
                throw error
            } catch {
                throw .signer(input: i, "\(error)")
            }
        }
        return added
    }

    static func names(_ script: Script, _ key: [UInt8]) -> Bool {
        let push = [UInt8(key.count)] + key
        return script.bytes.count >= push.count
            && (0...(script.bytes.count - push.count)).contains { Array(script.bytes[$0..<$0 + push.count]) == push }
    }

    private mutating func signTaproot(_ i: Int, key: Secp256k1.PrivateKey) throws -> Int {
        let input = psbt.inputs[i]
        let type = SighashType(rawValue: input.sighashType ?? SighashType.default.rawValue)
        let suffix: [UInt8] = type == .default ? [] : [UInt8(type.rawValue)]
        let xonly = key.xOnlyPublicKey.rawRepresentation
        var added = 0
        if input.tapInternalKey == xonly {
            let tweaked = try key.taprootTweaked(merkleRoot: input.tapMerkleRoot)
            guard Array(spent[i].scriptPubKey.bytes[2...]) == tweaked.xOnlyPublicKey.rawRepresentation else {
                throw PSBTError.signer(input: i, "the internal key and Merkle root do not give the output key")
            }
            let digest = try psbt.unsignedTx.taprootSighash(index: i, spent: spent, type: type)
            psbt.inputs[i].tapKeySig = try tweaked.schnorrSignature(for: digest).rawRepresentation + suffix
            added += 1
        }
        for (control, value) in input.tapLeafScripts {
            let leaf = TapLeaf(script: Script(bytes: Array(value.dropLast())), version: value.last!)
            guard Self.names(leaf.script, xonly) else { continue }
            guard
                TaprootOutput.verify(
                    controlBlock: control, leaf: leaf.script, outputKey: Array(spent[i].scriptPubKey.bytes[2...]))
            else { throw PSBTError.signer(input: i, "a leaf script's control block does not match the output") }
            let digest = try psbt.unsignedTx.taprootSighash(
                index: i, spent: spent, type: type,
                scriptSpend: BitcoinTransaction.TapScriptSpend(leafHash: leaf.hash))
            psbt.inputs[i].tapScriptSigs[xonly + leaf.hash] =
                try key.schnorrSignature(for: digest).rawRepresentation + suffix
            added += 1
        }
        return added
    }

    // MARK: Finalizer and extractor

    /// Builds the final scriptSig/witness of every input it can (BIP174 input
    /// finalizer) and clears the fields finalization made unneeded. Errors name the
    /// first input that cannot be finalized.
    public mutating func finalize() throws(PSBTError) {
        for i in psbt.inputs.indices where !psbt.inputs[i].isFinalized {
            var input = psbt.inputs[i]
            let utxo = spent[i]
            if utxo.scriptPubKey.isP2TR {
                input.finalScriptWitness = try taprootWitness(i)
            } else {
                let script = input.redeemScript ?? utxo.scriptPubKey
                if script.isP2WPKH {
                    guard let (pub, sig) = input.partialSigs.first else {
                        throw .finalize(input: i, "no signature for the P2WPKH key")
                    }
                    input.finalScriptWitness = [sig, pub]
                } else if script.isP2WSH, let ws = input.witnessScript {
                    input.finalScriptWitness = [[]] + (try multisigSignatures(i, ws)) + [ws.bytes]
                } else {
                    var sig = [Script.Op.zero]
                    for s in try multisigSignatures(i, script) { sig += Script.push(s) }
                    if input.redeemScript != nil { sig += Script.push(script.bytes) }
                    input.finalScriptSig = Script(bytes: sig)
                }
                if let redeem = input.redeemScript, script.witnessProgram != nil {
                    input.finalScriptSig = Script(bytes: Script.push(redeem.bytes))
                }
            }
            // Everything but the UTXOs, the final fields and unknown entries goes.
            var cleared = PSBTInput()
            cleared.nonWitnessUtxo = input.nonWitnessUtxo
            cleared.witnessUtxo = input.witnessUtxo
            cleared.finalScriptSig = input.finalScriptSig
            cleared.finalScriptWitness = input.finalScriptWitness
            cleared.unknown = input.unknown
            psbt.inputs[i] = cleared
        }
    }

    /// Signatures for a CHECKMULTISIG script, in key order, exactly the threshold.
    private func multisigSignatures(_ i: Int, _ script: Script) throws(PSBTError) -> [[UInt8]] {
        guard let (threshold, keys) = script.checkMultisig else {
            throw .finalize(input: i, "unsupported script (not P2WPKH, multisig or taproot)")
        }
        let sigs = keys.compactMap { psbt.inputs[i].partialSigs[$0] }
        guard sigs.count >= threshold else {
            throw .finalize(input: i, "\(sigs.count) of \(threshold) signatures")
        }
        return Array(sigs.prefix(threshold))
    }

    /// Key path if signed; else the first threshold leaf (`multi_a`, or weighted: see
    /// `ThresholdScript`) with enough signatures: one witness element per key in reverse
    /// script order (empty where a key did not sign), then the leaf script and its control
    /// block.
    private func taprootWitness(_ i: Int) throws(PSBTError) -> [[UInt8]] {
        let input = psbt.inputs[i]
        if let sig = input.tapKeySig { return [sig] }
        for (control, value) in input.tapLeafScripts.sorted(by: { $0.key.count < $1.key.count }) {
            let leaf = TapLeaf(script: Script(bytes: Array(value.dropLast())), version: value.last!)
            guard let threshold = ThresholdScript(script: leaf.script) else { continue }
            let sigs = threshold.keys.map { input.tapScriptSigs[$0 + leaf.hash] }
            // `multi_a` needs exactly the threshold (extra signatures fail OP_NUMEQUAL); a
            // weighted leaf takes signatures in key order until their weight reaches it.
            var weight: UInt64 = 0
            let chosen = sigs.enumerated().map { index, sig -> [UInt8] in
                guard let sig, weight < threshold.threshold else { return [] }
                weight += threshold.weight(ofKeyAt: index)
                return sig
            }
            guard weight >= threshold.threshold else { continue }
            return chosen.reversed() + [leaf.script.bytes, control]
        }
        throw .finalize(input: i, "no taproot key-path signature and no leaf with enough signatures")
    }

    /// The network transaction, once every input is final.
    public func extract() throws(PSBTError) -> BitcoinTransaction {
        var tx = psbt.unsignedTx
        for (i, input) in psbt.inputs.enumerated() {
            guard input.isFinalized else { throw .finalize(input: i, "not finalized") }
            tx.inputs[i].scriptSig = input.finalScriptSig ?? Script(bytes: [])
            tx.inputs[i].witness = input.finalScriptWitness ?? []
        }
        return tx
    }

    /// Input amounts minus output amounts.
    public var fee: UInt64? {
        let inputs = spent.reduce(UInt64(0)) { $0 &+ $1.value }
        let outputs = psbt.unsignedTx.outputs.reduce(UInt64(0)) { $0 &+ $1.value }
        return inputs >= outputs ? inputs - outputs : nil
    }
}

extension PSBT {
    /// Runs the signer checks; see `ValidatedPSBT`.
    public func validated() throws(PSBTError) -> ValidatedPSBT { try ValidatedPSBT(self) }
}

extension PSBT {
    // MARK: Updater

    /// Adds what an updater knows: for each input, the output it spends (the whole
    /// previous transaction for a legacy input, the output alone for a segwit one), the
    /// redeem and witness scripts that hash to its script, and the key origins of keys
    /// those scripts name; for each output, the origins of keys it pays to.
    public mutating func update(
        previousTransactions: [BitcoinTransaction], redeemScripts: [Script] = [], witnessScripts: [Script] = [],
        keyOrigins: [[UInt8]: KeyOrigin] = [:]
    ) {
        let byTxid = Dictionary(previousTransactions.map { ($0.txid, $0) }, uniquingKeysWith: { a, _ in a })
        for i in inputs.indices {
            let prevout = unsignedTx.inputs[i].previousOutput
            guard let prev = byTxid[prevout.txid], Int(prevout.vout) < prev.outputs.count else { continue }
            let utxo = prev.outputs[Int(prevout.vout)]
            var script = utxo.scriptPubKey
            if let hash = script.p2shHash, let redeem = redeemScripts.first(where: { SHA256.hash160($0.bytes) == hash })
            {
                inputs[i].redeemScript = redeem
                script = redeem
            }
            var scripts = [script]
            if script.isP2WSH,
                let ws = witnessScripts.first(where: { SHA256.hash($0.bytes) == Array(script.bytes[2...]) })
            {
                inputs[i].witnessScript = ws
                scripts.append(ws)
            }
            if script.witnessProgram != nil {
                inputs[i].witnessUtxo = utxo
            } else {
                inputs[i].nonWitnessUtxo = prev
            }
            for (key, origin) in keyOrigins where scripts.contains(where: { ValidatedPSBT.names($0, key) }) {
                inputs[i].bip32Derivation[key] = origin
            }
        }
        for (i, output) in unsignedTx.outputs.enumerated() {
            for (key, origin) in keyOrigins
            where output.scriptPubKey == .p2wpkh(publicKeyHash: SHA256.hash160(key))
                || ValidatedPSBT.names(output.scriptPubKey, key)
            {
                outputs[i].bip32Derivation[key] = origin
            }
        }
    }
}
