import NodeCrypto
import Testing

@Suite("Memoized Ed25519 verification (the simulator's)")
struct SignatureMemoTests {
    @Test("a memoized answer is libsodium's for exactly those bytes: valid stays valid, any change is refused")
    func memoAgreesWithLibsodium() throws {
        let key = Ed25519.PrivateKey()
        let other = Ed25519.PrivateKey()
        let message: [UInt8] = [1, 2, 3]
        let signature = key.signature(for: message)
        var bytes = signature.rawRepresentation
        bytes[0] ^= 1
        let forged = try Ed25519.Signature(rawRepresentation: bytes)
        SignatureMemo.enable()
        for _ in 0..<2 {  // the second pass answers from the memo
            #expect(key.publicKey.isValidSignature(signature, for: message))
            #expect(!key.publicKey.isValidSignature(forged, for: message))
            #expect(!key.publicKey.isValidSignature(signature, for: message + [4]))
            #expect(!other.publicKey.isValidSignature(signature, for: message))
        }
    }
}
