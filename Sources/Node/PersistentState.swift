import Checkpoint
import Foundation
import Gossip

/// Small state files in the data directory, written atomically (temporary file,
/// fsync, rename) so a crash leaves either the old or the new version.
public struct StateFiles: Sendable {
    public let directory: URL

    public init(directory: URL) { self.directory = directory }

    public var addressBookURL: URL { directory.appendingPathComponent("peers.json") }
    public var banListURL: URL { directory.appendingPathComponent("banlist.json") }

    public func loadAddressBook(config: GossipConfiguration) throws -> AddressBook {
        guard FileManager.default.fileExists(atPath: addressBookURL.path) else { return AddressBook() }
        do {
            let data = try Data(contentsOf: addressBookURL)
            // Version 1 was a bare array of entries; they go through the tables afresh.
            if let entries = try? JSONDecoder().decode([AddressBook.Entry].self, from: data) {
                return AddressBook(entries: entries, config: config)
            }
            return AddressBook(
                snapshot: try JSONDecoder().decode(AddressBook.Snapshot.self, from: data), config: config)
        } catch {
            throw ConfigError(
                "\(addressBookURL.path) is corrupt (\(error)); move it aside to start with an empty address book")
        }
    }

    public func save(_ book: AddressBook, anchors: [NodeAddress]) throws {
        try writeAtomically(try encoder.encode(book.snapshot(anchors: anchors)), to: addressBookURL)
    }

    public func loadBans() throws -> [Ban] {
        guard FileManager.default.fileExists(atPath: banListURL.path) else { return [] }
        do {
            return try JSONDecoder().decode([Ban].self, from: Data(contentsOf: banListURL))
        } catch {
            throw ConfigError("\(banListURL.path) is corrupt (\(error)); move it aside to start with no bans")
        }
    }

    public func save(_ bans: [Ban]) throws {
        try writeAtomically(try encoder.encode(bans), to: banListURL)
    }

    public var checkpointsURL: URL { directory.appendingPathComponent("checkpoints.json") }

    /// What this node followed of the checkpoint coin, if it was started from the same
    /// genesis coin (a new genesis starts from its own coin).
    func loadCheckpoints(genesisCoin: String) throws -> CheckpointFollower? {
        guard FileManager.default.fileExists(atPath: checkpointsURL.path) else { return nil }
        do {
            let saved = try JSONDecoder().decode(SavedCheckpoints.self, from: Data(contentsOf: checkpointsURL))
            return saved.genesis_coin == genesisCoin ? saved.follower : nil
        } catch {
            throw ConfigError(
                "\(checkpointsURL.path) is corrupt (\(error)); move it aside to follow the coin from genesis")
        }
    }

    func save(_ follower: CheckpointFollower, genesisCoin: String) throws {
        try writeAtomically(
            try encoder.encode(SavedCheckpoints(genesis_coin: genesisCoin, follower: follower)), to: checkpointsURL)
    }

    public var feeRateURL: URL { directory.appendingPathComponent("checkpoint-fee-rate.json") }

    /// The checkpoint fee rate the operator set over the admin socket (`setcheckpointfeerate`):
    /// `.some(nil)` when they went back to the estimate, nil when they never set one (the
    /// config file's `bitcoin.fee_rate` then applies).
    public func loadFeeRateOverride() throws -> Double?? {
        guard FileManager.default.fileExists(atPath: feeRateURL.path) else { return nil }
        do {
            let saved = try JSONDecoder().decode(SavedFeeRate.self, from: Data(contentsOf: feeRateURL))
            if let rate = saved.override, !(rate > 0 && rate.isFinite) {
                throw ConfigError("override \(rate) is not a positive number")
            }
            return .some(saved.override)
        } catch {
            throw ConfigError(
                "\(feeRateURL.path) is corrupt (\(error)); remove it to use bitcoin.fee_rate or the estimate")
        }
    }

    public func saveFeeRateOverride(_ rate: Double?) throws {
        try writeAtomically(try encoder.encode(SavedFeeRate(override: rate)), to: feeRateURL)
    }

    private struct SavedFeeRate: Codable {
        var override: Double?

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(override, forKey: .override)  // null stays explicit: "back to the estimate"
        }
    }

    private struct SavedCheckpoints: Codable {
        var genesis_coin: String
        var follower: CheckpointFollower
    }

    private var encoder: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return e
    }
}

/// Writes `data` to a temporary file beside `url`, syncs it and renames it over `url`.
public func writeAtomically(_ data: Data, to url: URL) throws {
    let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp")
    try? FileManager.default.removeItem(at: temporary)
    try writeExclusive(data, to: temporary)
    guard rename(temporary.path, url.path) == 0 else {
        throw KeyStoreError("cannot replace \(url.path): \(String(cString: strerror(errno)))")
    }
}

/// An exclusive lock on a data directory (`LOCK`, flock), held for the process's life:
/// a second node on the same directory would take over its admin socket and sign with
/// the same validator key (a double vote).
public final class DataDirectoryLock: Sendable {
    private let descriptor: Int32
    public let path: String

    public init(directory: URL) throws {
        path = directory.appendingPathComponent("LOCK").path
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw ConfigError("cannot open \(path): \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw ConfigError(
                "another p2pnode is running on \(directory.path) (\(path) is locked); stop it, or use another --data-dir"
            )
        }
        descriptor = fd
    }

    deinit { close(descriptor) }  // closing releases the lock
}
