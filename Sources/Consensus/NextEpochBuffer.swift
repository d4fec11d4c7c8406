/// Messages of the next epoch that arrive before this node has entered it. They cannot
/// be checked yet (that epoch's validators are not known here), so they are neither
/// relayed nor punished, only kept — bounded in count and in bytes, since anyone can
/// send them — and handed back once the node enters that epoch. Pure: the node's
/// `ConsensusHost` and the simulator both use it.
public struct NextEpochBuffer: Sendable {
    public static let messageLimit = 256
    public static let byteLimit = 8 << 20

    private var messages: [(message: ConsensusMessage, sender: ValidatorID, size: Int)] = []
    public private(set) var bytes = 0

    public init() {}

    public var count: Int { messages.count }

    /// Keeps `message` if it belongs to the epoch right after `current` and fits.
    public mutating func offer(_ message: ConsensusMessage, from sender: ValidatorID, current: Epoch) {
        guard message.epoch == current + 1, messages.count < Self.messageLimit else { return }
        let size = message.encoded().count
        guard bytes + size <= Self.byteLimit else { return }
        messages.append((message, sender, size))
        bytes += size
    }

    /// The messages of `epoch` (just entered), in arrival order; older ones are dropped.
    public mutating func take(entering epoch: Epoch) -> [(ConsensusMessage, ValidatorID)] {
        let ready = messages.filter { $0.message.epoch == epoch }.map { ($0.message, $0.sender) }
        messages.removeAll { ($0.message.epoch ?? 0) <= epoch }
        bytes = messages.reduce(0) { $0 + $1.size }
        return ready
    }

    /// Puts back what `take` returned when it cannot be used yet (the node is syncing).
    public mutating func putBack(_ ready: [(ConsensusMessage, ValidatorID)], current: Epoch) {
        for (message, sender) in ready { offer(message, from: sender, current: current - 1) }
    }
}
