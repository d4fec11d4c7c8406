import NodeCrypto

/// Noise §5.1 CipherState over ChaCha20-Poly1305.
public struct CipherState: Sendable {
    /// Nonce 2^64-1 is reserved (§5.1); reaching it ends the session.
    static let maxNonce = UInt64.max

    private(set) var key: ChaChaPoly.Key?
    /// The next nonce. Exposed for tests that drive it near exhaustion.
    public internal(set) var nonce: UInt64 = 0

    init(key: [UInt8]? = nil) {
        self.key = key.map { try! ChaChaPoly.Key(rawRepresentation: $0) }  // callers pass 32 bytes
    }

    public var hasKey: Bool { key != nil }

    public mutating func encrypt(associatedData ad: [UInt8], plaintext: [UInt8]) throws(NoiseError) -> [UInt8] {
        guard let key else { return plaintext }
        guard nonce < Self.maxNonce else { throw NoiseError(.nonceExhausted, "send nonce exhausted") }
        let out = ChaChaPoly.seal(plaintext, key: key, nonce: .init(noiseCounter: nonce), authenticating: ad)
        nonce += 1
        return out
    }

    /// On failure the nonce is not advanced (§5.1).
    public mutating func decrypt(associatedData ad: [UInt8], ciphertext: [UInt8]) throws(NoiseError) -> [UInt8] {
        guard let key else { return ciphertext }
        guard nonce < Self.maxNonce else { throw NoiseError(.nonceExhausted, "receive nonce exhausted") }
        do {
            let plain = try ChaChaPoly.open(ciphertext, key: key, nonce: .init(noiseCounter: nonce), authenticating: ad)
            nonce += 1
            return plain
        } catch {
            throw NoiseError(.decryptFailed, "authentication tag mismatch")
        }
    }

    /// Transport fast path: encrypts into `out` (plaintext + 16 bytes) with empty associated data.
    mutating func encrypt(
        _ plaintext: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer
    ) throws(NoiseError) {
        guard let key else { throw NoiseError(.handshakeIncomplete, "no transport key") }
        guard nonce < Self.maxNonce else { throw NoiseError(.nonceExhausted, "send nonce exhausted") }
        ChaChaPoly.seal(plaintext, key: key, nonce: .init(noiseCounter: nonce), into: out)
        nonce += 1
    }

    /// Transport fast path: decrypts into `out`; returns the plaintext length.
    mutating func decrypt(
        _ ciphertext: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer
    ) throws(NoiseError)
        -> Int
    {
        guard let key else { throw NoiseError(.handshakeIncomplete, "no transport key") }
        guard nonce < Self.maxNonce else { throw NoiseError(.nonceExhausted, "receive nonce exhausted") }
        do {
            let count = try ChaChaPoly.open(ciphertext, key: key, nonce: .init(noiseCounter: nonce), into: out)
            nonce += 1
            return count
        } catch {
            throw NoiseError(.decryptFailed, "authentication tag mismatch")
        }
    }

    /// §4.2 REKEY: the first 32 bytes of ENCRYPT(k, 2^64-1, "", zeros). The nonce is kept.
    public mutating func rekey() {
        guard let key else { return }
        let next = ChaChaPoly.seal(
            [UInt8](repeating: 0, count: 32), key: key, nonce: .init(noiseCounter: .max), authenticating: [])
        self.key = try! ChaChaPoly.Key(rawRepresentation: Array(next.prefix(32)))
    }

    /// Test hook: place the nonce near exhaustion without sending 2^64 messages.
    @_spi(Testing) public mutating func setNonceForTesting(_ value: UInt64) { nonce = value }
}

/// Noise §5.2 SymmetricState.
struct SymmetricState: Sendable {
    let hash: NoiseHash
    var cipher = CipherState()
    var chainingKey: [UInt8]
    var handshakeHash: [UInt8]

    init(protocolName: String, hash: NoiseHash) {
        self.hash = hash
        let name = Array(protocolName.utf8)
        let length = hash.digestLength
        let h = name.count <= length ? name + [UInt8](repeating: 0, count: length - name.count) : hash.hash(name)
        handshakeHash = h
        chainingKey = h
    }

    mutating func mixKey(_ inputKeyMaterial: [UInt8]) {
        let outputs = hash.hkdf(chainingKey: chainingKey, inputKeyMaterial: inputKeyMaterial, outputs: 2)
        chainingKey = outputs[0]
        cipher = CipherState(key: Array(outputs[1].prefix(32)))  // truncated when HASHLEN is 64
    }

    mutating func mixHash(_ data: [UInt8]) {
        handshakeHash = hash.hash(handshakeHash + data)
    }

    mutating func encryptAndHash(_ plaintext: [UInt8]) throws(NoiseError) -> [UInt8] {
        let ciphertext = try cipher.encrypt(associatedData: handshakeHash, plaintext: plaintext)
        mixHash(ciphertext)
        return ciphertext
    }

    mutating func decryptAndHash(_ ciphertext: [UInt8]) throws(NoiseError) -> [UInt8] {
        let plaintext = try cipher.decrypt(associatedData: handshakeHash, ciphertext: ciphertext)
        mixHash(ciphertext)
        return plaintext
    }

    func split() -> (CipherState, CipherState) {
        let outputs = hash.hkdf(chainingKey: chainingKey, inputKeyMaterial: [], outputs: 2)
        return (CipherState(key: Array(outputs[0].prefix(32))), CipherState(key: Array(outputs[1].prefix(32))))
    }
}

extension NoiseHash {
    var digestLength: Int {
        switch self {
        case .sha256: SHA256.digestLength
        case .blake2b: BLAKE2b.digestLength
        }
    }

    func hash(_ data: [UInt8]) -> [UInt8] {
        switch self {
        case .sha256: SHA256.hash(data)
        case .blake2b: BLAKE2b.hash(data)
        }
    }

    func hkdf(chainingKey: [UInt8], inputKeyMaterial: [UInt8], outputs: Int) -> [[UInt8]] {
        switch self {
        case .sha256: HKDF<SHA256>.noise(chainingKey: chainingKey, inputKeyMaterial: inputKeyMaterial, outputs: outputs)
        case .blake2b:
            HKDF<BLAKE2b>.noise(chainingKey: chainingKey, inputKeyMaterial: inputKeyMaterial, outputs: outputs)
        }
    }
}
