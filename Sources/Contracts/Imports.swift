import Foundation
import Ledger
import NodeCrypto
@_spi(Fuzzing) import WasmKit

/// The `env` functions, bound to one call. Each charges CosmWasm's host costs to the
/// call's fuel before it works, reads guest memory only through checked Regions, and
/// fails the call (never the node) on bad input.
extension VM {
    static func imports(store: Store, box: EnvironmentBox) -> Imports {
        var imports = Imports()
        func define(
            _ name: String, _ body: @escaping (borrowing Caller, [Value], CallEnvironment) throws -> [Value]
        ) {
            let type = HostImports.signatures[name]!
            imports.define(
                module: "env", name: name,
                Function(store: store, type: type) { caller, args in
                    guard let env = box.current else { throw HostFailure(error: .trap("host call outside a call")) }
                    do {
                        guard !env.inAllocate else {
                            throw HostFailure(error: .trap("a host function called from allocate"))
                        }
                        try charge(caller, ContractGas.hostCall)
                        return try body(caller, args, env)
                    } catch let failure as HostFailure {
                        if env.failure == nil { env.failure = failure.error }
                        throw failure
                    }
                })
        }
        func memory(_ env: CallEnvironment) throws(HostFailure) -> GuestMemory {
            guard let m = env.memory else { throw HostFailure(error: .trap("host call before instantiation")) }
            return m
        }
        func read(_ caller: borrowing Caller, _ env: CallEnvironment, _ ptr: UInt32, max: Int) throws -> [UInt8] {
            let bytes = try memory(env).read(ptr, max: max)
            try charge(
                caller, ContractGas.readRegionBase &+ ContractGas.readRegionPerByte &* UInt64(bytes.count))
            return bytes
        }
        /// Returns data to the guest in a Region it allocates.
        func give(_ caller: borrowing Caller, _ env: CallEnvironment, _ data: [UInt8]) throws -> UInt32 {
            try charge(
                caller, ContractGas.writeRegionBase &+ ContractGas.writeRegionPerByte &* UInt64(data.count))
            return try write(data, env: env)
        }
        /// Storage work is charged in SDK gas by the ledger's store: the same amount is
        /// taken from the call's fuel, so a gas limit stops a call mid-way.
        func storage<T>(
            _ caller: borrowing Caller, _ env: CallEnvironment, _ work: (inout ContractStore) -> T
        ) throws
            -> T
        {
            let before = env.session.store.pendingGas
            let result = work(&env.session.store)
            let spent = env.session.store.pendingGas &- before
            env.session.storageSDK &+= spent
            try charge(caller, spent &* ContractGas.perSDKGas)
            return result
        }
        func writable(_ env: CallEnvironment) throws(HostFailure) {
            guard !env.readOnly else { throw HostFailure(error: .trap("a query cannot write to storage")) }
        }

        define("db_read") { caller, args, env in
            let key = try read(caller, env, args[0].i32, max: HostImports.maxKey)
            guard let value = try storage(caller, env, { $0.contractGet(env.contract, key) }) else { return [.i32(0)] }
            return [.i32(try give(caller, env, value))]
        }
        define("db_write") { caller, args, env in
            try writable(env)
            let key = try read(caller, env, args[0].i32, max: HostImports.maxKey)
            let value = try read(caller, env, args[1].i32, max: HostImports.maxValue)
            guard !key.isEmpty else { throw HostFailure(error: .trap("empty storage key")) }
            try storage(caller, env) { $0.contractSet(env.contract, key, value) }
            return []
        }
        define("db_remove") { caller, args, env in
            try writable(env)
            let key = try read(caller, env, args[0].i32, max: HostImports.maxKey)
            try storage(caller, env) { $0.contractRemove(env.contract, key) }
            return []
        }
        define("db_scan") { caller, args, env in
            let start = args[0].i32 == 0 ? nil : try read(caller, env, args[0].i32, max: HostImports.maxKey)
            let end = args[1].i32 == 0 ? nil : try read(caller, env, args[1].i32, max: HostImports.maxKey)
            let ascending: Bool
            switch args[2].i32 {
            case 1: ascending = true
            case 2: ascending = false
            case let o: throw HostFailure(error: .trap("invalid scan order \(o)"))
            }
            guard env.iterators.count < CallEnvironment.maxIterators else {
                throw HostFailure(error: .trap("too many iterators"))
            }
            let (iterator, work) = env.session.store.scan(env.contract, start: start, end: end, ascending: ascending)
            // The block's own writes to this contract are merged in: paid per key, like steps.
            try charge(caller, StateGas.iterNext &* UInt64(work) &* ContractGas.perSDKGas)
            env.iterators.append(iterator)
            return [.i32(UInt32(env.iterators.count - 1))]
        }
        func next(_ caller: borrowing Caller, _ env: CallEnvironment, _ id: UInt32) throws -> ([UInt8], [UInt8])? {
            guard Int(id) < env.iterators.count else { throw HostFailure(error: .trap("no iterator \(id)")) }
            try charge(caller, StateGas.iterNext &* ContractGas.perSDKGas)
            // Skips keys removed since the scan began.
            while let key = env.iterators[Int(id)].next() {
                if let value = try storage(caller, env, { $0.contractGet(env.contract, key) }) { return (key, value) }
            }
            return nil
        }
        func be32(_ n: Int) -> [UInt8] { withUnsafeBytes(of: UInt32(n).bigEndian, Array.init) }
        define("db_next") { caller, args, env in
            // key ‖ be32(len key) ‖ value ‖ be32(len value); an empty key ends the iteration.
            let (key, value) = try next(caller, env, args[0].i32) ?? ([], [])
            return [.i32(try give(caller, env, key + be32(key.count) + value + be32(value.count)))]
        }
        define("db_next_key") { caller, args, env in
            guard let (key, _) = try next(caller, env, args[0].i32) else { return [.i32(0)] }
            return [.i32(try give(caller, env, key))]
        }
        define("db_next_value") { caller, args, env in
            guard let (_, value) = try next(caller, env, args[0].i32) else { return [.i32(0)] }
            return [.i32(try give(caller, env, value))]
        }
        func text(_ bytes: [UInt8]) -> String? { String(validating: bytes, as: UTF8.self) }
        define("addr_validate") { caller, args, env in
            let bytes = try read(caller, env, args[0].i32, max: HostImports.maxAddress)
            guard let human = text(bytes) else {
                return [.i32(try give(caller, env, Array("input is not UTF-8".utf8)))]
            }
            switch ContractAddressFormat.canonicalize(human) {
            case .success: return [.i32(0)]
            case .failure(let e): return [.i32(try give(caller, env, Array(e.description.utf8)))]
            }
        }
        define("addr_canonicalize") { caller, args, env in
            let bytes = try read(caller, env, args[0].i32, max: HostImports.maxAddress)
            guard let human = text(bytes) else {
                return [.i32(try give(caller, env, Array("input is not UTF-8".utf8)))]
            }
            switch ContractAddressFormat.canonicalize(human) {
            case .success(let canonical):
                try memory(env).write(args[1].i32, canonical)
                return [.i32(0)]
            case .failure(let e): return [.i32(try give(caller, env, Array(e.description.utf8)))]
            }
        }
        define("addr_humanize") { caller, args, env in
            let canonical = try read(caller, env, args[0].i32, max: HostImports.maxCanonical)
            guard let human = ContractAddressFormat.humanize(canonical) else {
                return [.i32(try give(caller, env, Array("invalid canonical address length".utf8)))]
            }
            try memory(env).write(args[1].i32, Array(human.utf8))
            return [.i32(0)]
        }
        // Verification results: 0 valid, 1 invalid; 3/4/5 bad hash/signature/key format
        // (cosmwasm-crypto's error codes).
        define("secp256k1_verify") { caller, args, env in
            let hash = try read(caller, env, args[0].i32, max: 32)
            let sig = try read(caller, env, args[1].i32, max: 64)
            let pk = try read(caller, env, args[2].i32, max: 65)
            try charge(caller, ContractGas.secp256k1Verify)
            guard hash.count == 32 else { return [.i32(3)] }
            guard sig.count == 64, let signature = try? Secp256k1.ECDSASignature(compact: sig) else { return [.i32(4)] }
            guard let key = try? Secp256k1.PublicKey(serialized: pk) else { return [.i32(5)] }
            return [.i32(key.isValidECDSASignature(signature, forDigest: hash) ? 0 : 1)]
        }
        define("secp256k1_recover_pubkey") { caller, args, env in
            let hash = try read(caller, env, args[0].i32, max: 32)
            let sig = try read(caller, env, args[1].i32, max: 64)
            try charge(caller, ContractGas.secp256k1Recover)
            let param = args[2].i32
            func fail(_ code: UInt64) -> [Value] { [.i64(code << 32)] }
            guard hash.count == 32 else { return fail(3) }
            guard sig.count == 64 else { return fail(4) }
            guard param <= 3 else { return fail(6) }  // invalid recovery param
            guard let key = Secp256k1.PublicKey.recover(digest: hash, compact: sig, recoveryID: Int32(param)) else {
                return fail(10)
            }
            return [.i64(UInt64(try give(caller, env, key.uncompressed)))]
        }
        define("ed25519_verify") { caller, args, env in
            let message = try read(caller, env, args[0].i32, max: HostImports.maxMessage)
            let sig = try read(caller, env, args[1].i32, max: 64)
            let pk = try read(caller, env, args[2].i32, max: 32)
            try charge(caller, ContractGas.ed25519Verify &+ ContractGas.hashPerByte &* UInt64(message.count))
            guard sig.count == 64, let signature = try? Ed25519.Signature(rawRepresentation: sig) else {
                return [.i32(4)]
            }
            guard pk.count == 32, let key = try? Ed25519.PublicKey(rawRepresentation: pk) else { return [.i32(5)] }
            return [.i32(key.isValidSignature(signature, for: message) ? 0 : 1)]
        }
        define("ed25519_batch_verify") { caller, args, env in
            let limit = HostImports.maxBatchItems * (HostImports.maxMessage + 4)
            let messages = try sections(try read(caller, env, args[0].i32, max: limit))
            let sigs = try sections(try read(caller, env, args[1].i32, max: HostImports.maxBatchItems * 68))
            let keys = try sections(try read(caller, env, args[2].i32, max: HostImports.maxBatchItems * 36))
            // cosmwasm-crypto's shapes: n × (msg, sig, key), one message for n signatures,
            // or one key for n messages.
            let n = sigs.count
            guard n <= HostImports.maxBatchItems else { return [.i32(10)] }
            let msgs = messages.count == 1 && n > 1 ? Array(repeating: messages[0], count: n) : messages
            let pks = keys.count == 1 && n > 1 ? Array(repeating: keys[0], count: n) : keys
            guard msgs.count == n, pks.count == n else { return [.i32(10)] }
            // Each message is hashed once per signature: its bytes are paid that often.
            guard msgs.allSatisfy({ $0.count <= HostImports.maxMessage }) else { return [.i32(10)] }
            let hashed = msgs.reduce(UInt64(0)) { $0 &+ UInt64($1.count) }
            try charge(
                caller,
                ContractGas.ed25519BatchBase &+ ContractGas.ed25519BatchPerItem &* UInt64(n) &+ ContractGas.hashPerByte
                    &* hashed)
            for i in 0..<n {
                guard let s = try? Ed25519.Signature(rawRepresentation: sigs[i]) else { return [.i32(4)] }
                guard let k = try? Ed25519.PublicKey(rawRepresentation: pks[i]) else { return [.i32(5)] }
                guard k.isValidSignature(s, for: msgs[i]) else { return [.i32(1)] }
            }
            return [.i32(0)]
        }
        for name in [
            "secp256r1_verify", "secp256r1_recover_pubkey", "bls12_381_aggregate_g1", "bls12_381_aggregate_g2",
            "bls12_381_pairing_equality", "bls12_381_hash_to_g1", "bls12_381_hash_to_g2",
        ] {
            define(name) { _, _, _ in
                throw HostFailure(error: .trap("\(name) is not supported on this chain"))
            }
        }
        define("debug") { caller, args, env in
            // Read (and charged) so a contract cannot pass a bad pointer unnoticed; not logged.
            _ = try read(caller, env, args[0].i32, max: HostImports.maxDebug)
            return []
        }
        define("abort") { caller, args, env in
            let message = try read(caller, env, args[0].i32, max: HostImports.maxDebug)
            throw HostFailure(error: .trap("aborted: \(String(decoding: message.prefix(1024), as: UTF8.self))"))
        }
        define("query_chain") { caller, args, env in
            let request = try read(caller, env, args[0].i32, max: HostImports.maxQuery)
            // The reads the query makes outside a nested instance (contract info, raw
            // values, balances) are charged here; a nested instance pays its own storage.
            let (gasBefore, storageBefore) = (env.session.store.pendingGas, env.session.storageSDK)
            let answer = env.session.queryChain(request, caller: caller)
            let spent = (env.session.store.pendingGas &- gasBefore) &- (env.session.storageSDK &- storageBefore)
            env.session.storageSDK &+= spent
            try charge(caller, spent &* ContractGas.perSDKGas)
            return [.i32(try give(caller, env, Array(answer.utf8)))]
        }
        return imports
    }

    /// Takes `cw` CosmWasm gas from the call's fuel (rounded up to whole fuel units).
    static func charge(_ caller: borrowing Caller, _ cw: UInt64) throws(HostFailure) {
        let units = cw / ContractGas.perFuel + (cw % ContractGas.perFuel == 0 ? 0 : 1)
        let remaining = caller.store.fuel?.remaining ?? 0
        guard remaining >= units else {
            caller.store.fuel = Fuel(remaining: 0)
            throw HostFailure(error: .outOfGas)
        }
        caller.store.fuel = Fuel(remaining: remaining - units)
    }

    /// cosmwasm-std's `encode_sections`: each section followed by its big-endian u32 length.
    static func sections(_ bytes: [UInt8]) throws(HostFailure) -> [[UInt8]] {
        var out: [[UInt8]] = []
        var end = bytes.count
        while end > 0 {
            guard end >= 4 else { throw HostFailure(error: .trap("malformed sections")) }
            let length =
                Int(bytes[end - 4]) << 24 | Int(bytes[end - 3]) << 16 | Int(bytes[end - 2]) << 8 | Int(bytes[end - 1])
            guard length <= end - 4 else { throw HostFailure(error: .trap("malformed sections")) }
            out.append(Array(bytes[(end - 4 - length)..<(end - 4)]))
            end -= 4 + length
            guard out.count <= HostImports.maxBatchItems else { throw HostFailure(error: .trap("too many sections")) }
        }
        return out.reversed()
    }
}
