internal import CSodium

/// A hash function as the Noise framework (§4.3) uses it: one-shot hashing with
/// a fixed digest and block length, so HMAC and HKDF can be built generically.
public protocol HashFunction: Sendable {
    /// HASHLEN in the Noise specification.
    static var digestLength: Int { get }
    /// BLOCKLEN in the Noise specification (the HMAC block size).
    static var blockLength: Int { get }
    /// The name used in Noise protocol names ("SHA256", "BLAKE2b").
    static var noiseName: String { get }
    static func hash(_ data: [UInt8]) -> [UInt8]
}

public enum SHA256: HashFunction {
    public static let digestLength = 32
    public static let blockLength = 64
    public static let noiseName = "SHA256"

    public static func hash(_ data: [UInt8]) -> [UInt8] {
        ensureSodium()
        var out = [UInt8](repeating: 0, count: 32)
        out.withUnsafeMutableBufferPointer { o in
            data.withUnsafeBufferPointer { d in
                _ = crypto_hash_sha256(o.baseAddress!, d.baseAddress, UInt64(d.count))
            }
        }
        return out
    }

    /// SHA256(SHA256(x)), Bitcoin's txid and checksum hash.
    public static func doubleHash(_ data: [UInt8]) -> [UInt8] { hash(hash(data)) }
}

public enum SHA512: HashFunction {
    public static let digestLength = 64
    public static let blockLength = 128
    public static let noiseName = "SHA512"

    public static func hash(_ data: [UInt8]) -> [UInt8] {
        ensureSodium()
        var out = [UInt8](repeating: 0, count: 64)
        out.withUnsafeMutableBufferPointer { o in
            data.withUnsafeBufferPointer { d in
                _ = crypto_hash_sha512(o.baseAddress!, d.baseAddress, UInt64(d.count))
            }
        }
        return out
    }
}

/// BLAKE2b with a 64-byte digest, as Noise's "BLAKE2b" names it.
public enum BLAKE2b: HashFunction {
    public static let digestLength = 64
    public static let blockLength = 128
    public static let noiseName = "BLAKE2b"

    public static func hash(_ data: [UInt8]) -> [UInt8] { hash(data, outputLength: 64) }

    /// BLAKE2b-256: the node's content hash (message ids, transaction ids).
    public static func hash256(_ data: [UInt8]) -> [UInt8] { hash(data, outputLength: 32) }

    /// BLAKE2b-256 of raw bytes into a 32-byte buffer: the state tree hashes millions of
    /// small nodes, and this avoids two array allocations per hash.
    public static func hash256(_ data: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) {
        precondition(out.count == 32, "BLAKE2b-256 writes 32 bytes")
        ensureSodium()
        _ = crypto_generichash(
            out.baseAddress!.assumingMemoryBound(to: UInt8.self), 32,
            data.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(data.count), nil, 0)
    }

    static func hash(_ data: [UInt8], outputLength: Int) -> [UInt8] {
        ensureSodium()
        var out = [UInt8](repeating: 0, count: outputLength)
        out.withUnsafeMutableBufferPointer { o in
            data.withUnsafeBufferPointer { d in
                _ = crypto_generichash(o.baseAddress!, outputLength, d.baseAddress, UInt64(d.count), nil, 0)
            }
        }
        return out
    }
}

/// HMAC (RFC 2104) over any `HashFunction`; Noise §4.3 defines HMAC-BLAKE2b this way
/// rather than with BLAKE2b's keyed mode.
public enum HMAC<H: HashFunction> {
    public static func authenticationCode(key: [UInt8], message: [UInt8]) -> [UInt8] {
        var block = key.count > H.blockLength ? H.hash(key) : key
        block += [UInt8](repeating: 0, count: H.blockLength - block.count)
        let inner = H.hash(block.map { $0 ^ 0x36 } + message)
        return H.hash(block.map { $0 ^ 0x5c } + inner)
    }
}

/// HKDF (RFC 5869) over any `HashFunction`.
public enum HKDF<H: HashFunction> {
    public static func extract(salt: [UInt8], inputKeyMaterial: [UInt8]) -> [UInt8] {
        HMAC<H>.authenticationCode(key: salt, message: inputKeyMaterial)
    }

    public static func expand(pseudoRandomKey: [UInt8], info: [UInt8], length: Int) -> [UInt8] {
        precondition(length <= 255 * H.digestLength, "HKDF output too long")
        var output: [UInt8] = []
        var previous: [UInt8] = []
        var counter: UInt8 = 1
        while output.count < length {
            previous = HMAC<H>.authenticationCode(key: pseudoRandomKey, message: previous + info + [counter])
            output += previous
            counter &+= 1
        }
        return Array(output.prefix(length))
    }

    /// Noise §4.3 HKDF(chaining_key, input_key_material, num_outputs): two or three
    /// HASHLEN outputs, with the chaining key as salt and no info.
    public static func noise(chainingKey: [UInt8], inputKeyMaterial: [UInt8], outputs: Int) -> [[UInt8]] {
        precondition(outputs == 2 || outputs == 3, "Noise HKDF yields 2 or 3 outputs")
        let tempKey = extract(salt: chainingKey, inputKeyMaterial: inputKeyMaterial)
        var results: [[UInt8]] = []
        var previous: [UInt8] = []
        for i in 1...outputs {
            previous = HMAC<H>.authenticationCode(key: tempKey, message: previous + [UInt8(i)])
            results.append(previous)
        }
        return results
    }
}
