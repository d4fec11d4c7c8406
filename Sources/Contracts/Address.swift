import Bitcoin
import NodeCrypto

/// Human addresses as contracts see them: bech32 (BIP 173, the Cosmos form) with the
/// chain's prefix `side` over the canonical bytes — an account's Ed25519 key or a
/// contract's 32-byte address. `addr_validate` accepts only the normalized (lowercase)
/// form, as CosmWasm requires, so one account has one human address.
public enum ContractAddressFormat {
    public static let prefix = "side"
    /// Cosmos addresses are at most 255 bytes; CosmWasm hands the host at most 64.
    static let maxCanonical = 64
    static let maxHuman = 256

    public static func humanize(_ canonical: [UInt8]) -> String? {
        guard !canonical.isEmpty, canonical.count <= maxCanonical,
            let words = try? Bech32.convertBits(canonical, from: 8, to: 5, pad: true)
        else { return nil }
        return Bech32.encode(hrp: prefix, data: words, variant: .bech32)
    }

    /// The canonical bytes of a normalized human address, or why it is not one.
    public static func canonicalize(_ human: String) -> Result<[UInt8], AddressError> {
        guard !human.isEmpty else { return .failure(AddressError("empty address")) }
        guard human.utf8.count <= maxHuman else { return .failure(AddressError("address too long")) }
        guard human == human.lowercased() else { return .failure(AddressError("address not normalized")) }
        guard let (hrp, words, variant) = try? Bech32.decode(human) else {
            return .failure(AddressError("invalid bech32 address"))
        }
        guard variant == .bech32 else { return .failure(AddressError("bech32m is not an account address")) }
        guard hrp == prefix else {
            return .failure(AddressError("wrong address prefix '\(hrp)', expected '\(prefix)'"))
        }
        guard let bytes = try? Bech32.convertBits(words, from: 5, to: 8, pad: false), !bytes.isEmpty,
            bytes.count <= maxCanonical
        else { return .failure(AddressError("invalid address length")) }
        return .success(bytes)
    }

    /// A 32-byte address (account or contract) from its human form, hex, or nil.
    public static func parse32(_ text: String) -> [UInt8]? {
        if case .success(let bytes) = canonicalize(text), bytes.count == 32 { return bytes }
        if text.utf8.count == 64, let bytes = try? Hex.decode(text) { return bytes }
        return nil
    }
}

public struct AddressError: Error, CustomStringConvertible, Equatable {
    public let description: String
    init(_ d: String) { description = d }
}
