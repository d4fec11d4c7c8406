import NodeCrypto

/// A coin the wallet can spend.
public struct WalletCoin: Sendable, Equatable {
    public let outpoint: OutPoint
    public let value: UInt64
    public let confirmed: Bool

    public init(outpoint: OutPoint, value: UInt64, confirmed: Bool) {
        self.outpoint = outpoint
        self.value = value
        self.confirmed = confirmed
    }
}

/// Building a single-key taproot (key path, BIP86-style) payment: coin selection, change,
/// fee, RBF, sanity checks. Pure: the caller fetches coins and broadcasts.
public enum WalletSpend {
    /// Virtual sizes (BIP141 vbytes) used for fees: a P2TR key-path input is 41 bytes
    /// plus a 66-byte witness (64-byte signature, its length, the item count) / 4.
    public static let overheadVBytes = 10.5
    public static let taprootInputVBytes = 57.5
    public static func outputVBytes(_ script: Script) -> Double { Double(8 + 1 + script.bytes.count) }

    public struct Plan: Sendable, Equatable {
        public let inputs: [WalletCoin]
        public let fee: UInt64
        public let change: UInt64
    }

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case noCoins
        case insufficient(needed: UInt64, available: UInt64)
        case dust(amount: UInt64, limit: UInt64)
        case feeTooHigh(fee: UInt64, amount: UInt64)

        public var description: String {
            switch self {
            case .noCoins: "no spendable coins"
            case .insufficient(let needed, let available):
                "insufficient funds: \(needed) sats needed (amount and fee), \(available) available"
            case .dust(let amount, let limit): "\(amount) sats is below the dust limit of \(limit) for that output"
            case .feeTooHigh(let fee, let amount):
                "refusing a fee of \(fee) sats for a payment of \(amount) (more than the payment; set a lower --fee-rate)"
            }
        }
    }

    /// Bitcoin Core's dust limit for an output script (3 sat/vB dust relay fee).
    public static func dustLimit(_ script: Script) -> UInt64 {
        if script.isOpReturn { return 0 }
        if script.isP2WPKH { return 294 }
        if script.witnessProgram != nil { return 330 }
        return 546
    }

    /// Largest confirmed coins first (then unconfirmed), until the amount and the fee
    /// (with a change output) are covered; change below dust goes to the fee.
    public static func plan(
        coins: [WalletCoin], amount: UInt64, to destination: Script, change changeScript: Script, feeRate: Double
    ) throws(Failure) -> Plan {
        guard !coins.isEmpty else { throw .noCoins }
        guard amount >= dustLimit(destination) else { throw .dust(amount: amount, limit: dustLimit(destination)) }
        let ordered = coins.sorted { ($0.confirmed ? 1 : 0, $0.value) > ($1.confirmed ? 1 : 0, $1.value) }
        var selected: [WalletCoin] = []
        var total: UInt64 = 0
        let available = coins.reduce(UInt64(0)) { $0 + $1.value }
        for coin in ordered {
            selected.append(coin)
            total += coin.value
            let base = overheadVBytes + Double(selected.count) * taprootInputVBytes + outputVBytes(destination)
            // Virtual size rounds up (weight / 4), so round the size before the rate.
            let feeWithChange = UInt64((feeRate * (base + outputVBytes(changeScript)).rounded(.up)).rounded(.up))
            let feeWithout = UInt64((feeRate * base.rounded(.up)).rounded(.up))
            if total >= amount + feeWithChange, total - amount - feeWithChange >= dustLimit(changeScript) {
                let fee = feeWithChange
                guard fee <= amount else { throw .feeTooHigh(fee: fee, amount: amount) }
                return Plan(inputs: selected, fee: fee, change: total - amount - fee)
            }
            if total >= amount + feeWithout {
                // No change output: what is left over (less than dust) is fee.
                let fee = total - amount
                guard fee <= amount else { throw .feeTooHigh(fee: fee, amount: amount) }
                return Plan(inputs: selected, fee: fee, change: 0)
            }
        }
        let fee = UInt64(
            (feeRate * (overheadVBytes + Double(coins.count) * taprootInputVBytes + outputVBytes(destination))).rounded(
                .up))
        throw .insufficient(needed: amount + fee, available: available)
    }

    /// Builds and signs the payment with the key that owns the coins (its taproot key
    /// path), RBF enabled, `lockTime` the current tip (as Bitcoin Core does against fee
    /// sniping). Returns the signed transaction.
    public static func sign(
        plan: Plan, key: Secp256k1.PrivateKey, amount: UInt64, to destination: Script, lockTime: UInt32
    ) throws -> BitcoinTransaction {
        let own = try TaprootOutput(internalKey: key.xOnlyPublicKey)
        var outputs = [TxOut(value: amount, scriptPubKey: destination)]
        if plan.change > 0 { outputs.append(TxOut(value: plan.change, scriptPubKey: own.scriptPubKey)) }
        let tx = BitcoinTransaction(
            version: 2, inputs: plan.inputs.map { TxIn(previousOutput: $0.outpoint, sequence: TxIn.rbfSequence) },
            outputs: outputs, lockTime: lockTime)
        var psbt = PSBT(unsignedTx: tx)
        for (i, coin) in plan.inputs.enumerated() {
            psbt.inputs[i].witnessUtxo = TxOut(value: coin.value, scriptPubKey: own.scriptPubKey)
            psbt.inputs[i].tapInternalKey = key.xOnlyPublicKey.rawRepresentation
        }
        var validated = try psbt.validated()
        try validated.sign(with: key)
        try validated.finalize()
        return try validated.extract()
    }
}
