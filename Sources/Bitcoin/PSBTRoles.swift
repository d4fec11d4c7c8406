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
