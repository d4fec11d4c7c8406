import Bitcoin
import Checkpoint
import Consensus
import Contracts
import Esplora
import Foundation
import Gossip
import Ledger
import Logging
import NIOCore
import NIOPosix
import NodeCrypto
import Noise
import ServiceLifecycle
import StateSync
import StateTree
import Storage
import Synchronization
import Wire

#if canImport(Glibc)
    import Glibc
#endif

/// One live TCP connection: its secure channel, its outbound queue and counters.
final class PeerConnection: Sendable {
    struct Counters {
        var bytesSent = 0
        var bytesReceived = 0
        var dropped = 0
        /// Bytes handed to the outbox and not yet written to the socket.
        var queuedBytes = 0
    }

    let id: ConnectionID
    let channel: any Channel
    let inbound: Bool
    let remoteHost: String
    let remotePort: UInt16
    let outbox: AsyncStream<[UInt8]>.Continuation
    let secure: Mutex<SecureChannel>
    let counters = Mutex(Counters())

    init(
        id: ConnectionID, channel: any Channel, inbound: Bool, remoteHost: String, remotePort: UInt16,
        outbox: AsyncStream<[UInt8]>.Continuation, secure: SecureChannel
    ) {
        self.id = id
        self.channel = channel
        self.inbound = inbound
        self.remoteHost = remoteHost
        self.remotePort = remotePort
        self.outbox = outbox
        self.secure = Mutex(secure)
    }

    func close() { channel.close(promise: nil) }
}

/// The process's open-file limit (RLIMIT_NOFILE). A node out of descriptors cannot
/// even open its own files (libdispatch aborts), so the soft limit is raised to what the
/// connection caps need and the caps shrink to what the hard limit allows.
enum FileDescriptorLimit {
    /// Descriptors kept for everything but peer connections: stores, logs, the admin and
    /// metrics sockets and their clients, esplora requests.
    static let reserve = 128

    /// Raises the soft limit to the hard limit (at most 2^20) when it is below `wanted`;
    /// returns the limit now in force.
    static func raise(to wanted: Int) -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return wanted }
        if limit.rlim_cur < rlim_t(clamping: wanted) {
            var raised = limit
            raised.rlim_cur = min(limit.rlim_max, 1 << 20)
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return Int(clamping: limit.rlim_cur)
    }
}

/// The running node: drives the pure gossip engine and secure channels from
/// NIO sockets, a one-second clock tick and the data directory, and serves the
/// admin socket. Stops on SIGINT/SIGTERM (via ServiceLifecycle) or admin `stop`,
/// saving the address book and ban list.
public actor NodeRuntime: Service {
    public static let agent = "p2pnode/\(NodeVersion.string)"

    enum Work: Sendable {
        case inbound(NIOAsyncChannel<ByteBuffer, ByteBuffer>)
        case dial(NodeAddress)
    }

    public let configuration: NodeConfiguration
    let keys: NodeKeys
    let logger: Logger
    let files: StateFiles
    /// Held while the node runs (`DataDirectoryLock`).
    private let directoryLock: DataDirectoryLock
    private var warnedLowFees = false
    /// The ban list changed since it was last written.
    private var bansDirty = false
    private var engine: GossipEngine
    private var connections: [ConnectionID: PeerConnection] = [:]
    /// Inbound connections admitted to their handshake and not yet through it.
    private var handshaking: [ConnectionID: PeerConnection] = [:]
    private var nextConnectionID = 1
    private let startedAt = Date()
    private var savedBook: AddressBook
    /// Outbound peers to dial first at the next start.
    private var anchors: [NodeAddress] = []
    private var lastBookSave = Date()
    private var closedTotals = (sent: 0, received: 0)
    private var recentDeliveries: [String] = []
    private var deliveredTotal = 0
    private var consensusEvidence: [EvidenceRecord] = []
    private var evidenceTotal = 0
    private let deliveryLogLimit = 10_000
    private var handshakeFailures = 0
    private var sync: LedgerSync
    // Confined to this actor.
    /// Accepted transactions go to `ledger.sqlite` from the writer's own thread.
    private let transactionWriter: TransactionWriter
    private var lastSyncRound = Date.distantPast
    /// Committed height and transactions once a second for the last five minutes: the
    /// status page's recent rates (bounded ring).
    private var statusSamples: [(time: Double, height: UInt64, transactions: Int)] = []
    /// Settled transactions found at a committed height, pruned from the DAG and its
    /// store once a confirmed checkpoint covers that height (at once without
    /// checkpointing). One set at a time, so the DAG holds at most the recent-id window,
    /// what is not yet committed, and what arrived before one checkpoint.
    private var prunePlan: (height: UInt64, ids: Set<TxID>)?
    private var lastPruneCheck = Date.distantPast
    private var statusCache: (at: Date, text: String)?
    private var consensus: ConsensusHost?
    /// Runs contract transactions; its code store keeps uploaded code under DATA_DIR/wasm/.
    let contracts: WasmEngine
    /// Joining by state snapshot: set until the snapshot is installed and consensus starts.
    private var snapshotJoin: SnapshotJoin?
    /// Consensus waiting for contract code the node lacks (see `startConsensus`).
    private var codeWait: (fetch: CodeFetch<PeerID>, host: ConsensusHost)?
    /// What a requesting host may still cost this node now (a token bucket in units of
    /// about 512 leaves read; chunk reads cost disk). By host: node ids are free to make.
    private var snapshotServeBudget: [String: (tokens: Double, at: Double)] = [:]
    /// The snapshot offered to peers, kept until a newer one is stored.
    private var snapshotOffer: SnapshotDescriptor?
    /// Armed when the node starts to stop (see `ShutdownWatchdog`).
    private var watchdog: ShutdownWatchdog?
    /// Checkpointing into Bitcoin: with a genesis that names a coin and an esplora URL.
    private var checkpoint: CheckpointHost?
    private let esplora: EsploraClient?
    private var genesisCoin = ""
    private var unsavedTransactions: [(id: [UInt8], encoded: [UInt8])] = []
    public let metrics = NodeMetrics()
    nonisolated let work = AsyncStream<Work>.makeStream()
    nonisolated let serverChannel = Mutex<(any Channel)?>(nil)
    nonisolated let boundPort = Mutex<Int?>(nil)
    /// Inbound sockets open (accepted, not yet closed) and the most allowed: inbound peers,
    /// pending handshakes, and as many again in flight to the admission check.
    nonisolated let inboundSockets = Atomic<Int>(0)
    nonisolated let inboundSocketLimit: Int

    /// First byte of a gossip payload that is an opaque test message (admin `publish`).
    static let testTopic: UInt8 = 0

    public init(configuration: NodeConfiguration, keys: NodeKeys, bootstrap: [NodeAddress], logger: Logger) throws {
        var configuration = configuration
        let descriptors = FileDescriptorLimit.raise(
            to: configuration.gossip.descriptorsNeeded + FileDescriptorLimit.reserve)
        if let warning = configuration.gossip.fit(descriptors: descriptors - FileDescriptorLimit.reserve) {
            logger.warning("\(warning)", metadata: ["open_files_limit": "\(descriptors)"])
        }
        self.configuration = configuration
        inboundSocketLimit = configuration.gossip.maxInbound + 2 * configuration.gossip.maxPendingHandshakes
        self.keys = keys
        self.logger = logger
        // First: one node per data directory (its socket, its stores, its validator key).
        directoryLock = try DataDirectoryLock(directory: configuration.dataDirectory)
        files = StateFiles(directory: configuration.dataDirectory)
        let book = try files.loadAddressBook(config: configuration.gossip)
        let bans = try files.loadBans()
        let storePath = configuration.dataDirectory.appendingPathComponent("ledger.sqlite").path
        let store: TransactionStore
        do {
            store = try TransactionStore(path: storePath)
        } catch {
            throw ConfigError("\(error)")
        }
        sync = LedgerSync(dag: try Self.replay(store, chainID: configuration.chainID, path: storePath))
        transactionWriter = TransactionWriter(store: store)
        contracts = WasmEngine(codes: try Self.codeStore(directory: configuration.dataDirectory, logger: logger))
        if let file = configuration.genesisFile {
            let genesis = try Genesis.load(try Data(contentsOf: URL(fileURLWithPath: file)), source: file)
            guard genesis.chain_id == configuration.chainID else {
                throw ConfigError(
                    "\(file): chain_id \(genesis.chain_id) differs from the node's chain_id \(configuration.chainID)")
            }
            let path = configuration.dataDirectory.appendingPathComponent("consensus.sqlite").path
            do {
                let consensusStore = try ConsensusStore(path: path)
                if configuration.state.sync == "snapshot", try consensusStore.lastCommitted() == nil {
                    snapshotJoin = try SnapshotJoin(genesis: genesis, store: consensusStore, logger: logger)
                    logger.notice(
                        "\("joining by state snapshot: consensus starts once a verified snapshot is installed")\(genesis.checkpoint.coin != nil ? "; checkpointing starts at the next start" : "")"
                    )
                } else {
                    consensus = try ConsensusHost(
                        genesis: genesis, key: keys.identity, store: consensusStore, logger: logger,
                        state: configuration.state, contracts: contracts)
                    consensus?.metrics = metrics
                    metrics.epoch.set(Double(consensus?.core.config.epoch ?? 0))
                }
            } catch let error as StorageError {
                throw ConfigError("\(error)")
            }
        }
        (checkpoint, esplora) = try Self.checkpointing(
            configuration: configuration, consensus: consensus, keys: keys, files: files, logger: logger)
        genesisCoin = consensus?.genesis.checkpoint.coin ?? ""
        var engine = GossipEngine(
            localID: keys.identity.publicKey, configuration: configuration.gossip,
            listenPort: configuration.listen.port, agent: Self.agent, addressBook: book, bans: bans,
            seed: UInt64.random(in: .min ... .max))
        engine.addBootstrap(bootstrap, now: Date().timeIntervalSince1970)
        self.engine = engine
        savedBook = book
    }

    private var now: Double { Date().timeIntervalSince1970 }

    /// The checkpoint host, when the genesis names a coin and the config an esplora server.
    private static func checkpointing(
        configuration: NodeConfiguration, consensus: ConsensusHost?, keys: NodeKeys, files: StateFiles, logger: Logger
    ) throws -> (CheckpointHost?, EsploraClient?) {
        guard let chain = consensus, let coin = chain.genesis.checkpoint.coin else { return (nil, nil) }
        guard let url = configuration.bitcoin.esplora else {
            logger.notice("checkpointing is off: no [bitcoin] esplora URL in the config")
            return (nil, nil)
        }
        let client: EsploraClient
        do { client = try EsploraClient(url) } catch { throw ConfigError("bitcoin.esplora: \(error)") }
        let genesis = chain.genesis
        let first = genesis.consensusConfig().epoch
        guard let (txid, vout) = genesis.checkpoint.coinOutpoint, let value = genesis.checkpoint.coin_value,
            let outpoint = try? OutPoint(displayTxid: txid, vout: vout),
            let script = CheckpointHost.coin(epoch: first, chain: chain)?.scriptPubKey
        else { throw ConfigError("genesis checkpoint.coin \(coin) or coin_value is not usable") }
        let follower =
            try files.loadCheckpoints(genesisCoin: coin)
            ?? CheckpointFollower(coin: outpoint, value: value, script: script, epoch: first)
        var host = CheckpointHost(
            genesis: genesis, follower: follower, identity: keys.identity, bitcoinKey: keys.bitcoin, logger: logger)
        host.depth = configuration.bitcoin.confirmationDepth
        host.bystanderDelay = max(5, 2 * configuration.bitcoin.pollInterval)
        // An override set over the admin socket outlives a restart, and wins over the config file.
        host.feeRateOverride = try files.loadFeeRateOverride() ?? configuration.bitcoin.feeRate
        if let fault = TestFaults.checkpoint {
            host.fault = fault
            logger.warning("checkpoint fault injected for testing", metadata: ["fault": "\(fault.rawValue)"])
        }
        return (host, client)
    }

    /// Rebuilds the DAG from the store, in the order transactions were accepted.
    /// Contract code by checksum, one file each under DATA_DIR/wasm/ (re-hashed when read).
    static func codeStore(directory: URL, logger: Logger) throws -> CodeStore {
        let dir = directory.appendingPathComponent("wasm", isDirectory: true)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.path
        return CodeStore(
            persist: { checksum, wasm in
                let file = URL(fileURLWithPath: path).appendingPathComponent(checksum.hex + ".wasm")
                do {
                    try Data(wasm).write(to: file, options: .atomic)
                    return true
                } catch {
                    // Kept in memory; a restart re-fetches it from peers.
                    Logger(label: "sidenode.contracts").error("cannot write contract code: \(error)")
                    return false
                }
            },
            load: { checksum in
                let file = URL(fileURLWithPath: path).appendingPathComponent(checksum.hex + ".wasm")
                return (try? Data(contentsOf: file)).map(Array.init)
            })
    }

    static func replay(_ store: TransactionStore, chainID: String, path: String) throws -> TransactionDAG {
        var dag = TransactionDAG(chainID: chainID)
        let rows: [(id: [UInt8], encoded: [UInt8])]
        do { rows = try store.loadAll() } catch { throw ConfigError("\(error)") }
        for (index, row) in rows.enumerated() {
            // Our own store: the format is checked, signatures were checked on the way in.
            // Predecessors pruned since it was stored do not hold it back.
            guard let tx = try? Transaction.decode(row.encoded), tx.id.bytes == row.id,
                case .accepted = dag.insertStored(tx)
            else {
                throw ConfigError("\(path): stored transaction \(index + 1) does not decode or does not fit the DAG")
            }
        }
        return dag
    }

    /// `gossip.outbound_address` must be an address of this host: otherwise every dial
    /// would fail (logged only at debug level) and the node would sit without peers.
    static func checkLocalAddress(_ ip: String) throws {
        let address: SocketAddress
        do { address = try SocketAddress(ipAddress: ip, port: 0) } catch {
            throw ConfigError("gossip.outbound_address \(ip): \(error)")
        }
        let fd = socket(address.protocol.rawValue, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else {
            throw ConfigError("gossip.outbound_address: no socket: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        let result = address.withSockAddr { bind(fd, $0, socklen_t($1)) }
        guard result == 0 else {
            throw ConfigError(
                "gossip.outbound_address \(ip) is not an address of this host: \(String(cString: strerror(errno)))")
        }
    }

    /// The TCP port actually bound (useful with port 0).
    public nonisolated var listeningPort: Int? { boundPort.withLock { $0 } }

    // MARK: Lifecycle

    public func run() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        if let source = configuration.outboundAddress { try Self.checkLocalAddress(source) }
        let server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>
        do {
            server = try await ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelOption(.backlog, value: 256)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelOption(.recvAllocator, value: SecureChannelReads.allocator)
                .bind(host: configuration.listen.host, port: Int(configuration.listen.port)) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw ConfigError("cannot listen on \(configuration.listen): \(error)")
        }
        let port = server.channel.localAddress?.port ?? Int(configuration.listen.port)
        boundPort.withLock { $0 = port }
        serverChannel.withLock { $0 = server.channel }
        engine.listenPort = UInt16(port)
        let admin = try await AdminServer.bind(path: configuration.adminSocketPath, runtime: self, logger: logger)
        let metricsServer: MetricsServer?
        if let endpoint = configuration.metricsListen {
            do {
                metricsServer = try await MetricsServer.bind(
                    endpoint, metrics: metrics, logger: logger, status: { await self.statusJSON() })
            } catch {
                admin.close()
                throw ConfigError("cannot serve metrics on \(endpoint): \(error)")
            }
        } else {
            metricsServer = nil
        }
        logger.info(
            "node started",
            metadata: [
                "node_id": "\(keys.nodeID)", "listen": "\(configuration.listen.host):\(port)",
                "chain_id": "\(configuration.chainID)", "admin": "\(configuration.adminSocketPath)",
                "known_addresses": "\(engine.addressBook.count)",
            ])

        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.acceptLoop(server) }
                group.addTask { await admin.run() }
                group.addTask { await self.tickLoop() }
                group.addTask { await self.consensusLoop() }
                if self.checkpoint != nil {
                    group.addTask { await self.checkpointLoop() }
                    group.addTask { await self.bitcoinLoop() }
                }
                if let metricsServer { group.addTask { await metricsServer.run() } }
                for await item in self.work.stream {
                    switch item {
                    case .inbound(let connection):
                        group.addTask { _ = await self.serve(connection, inbound: true, expected: nil) }
                    case .dial(let address):
                        group.addTask { await self.dial(address) }
                    }
                }
                watchdog = ShutdownWatchdog(seconds: 20, logger: self.logger)
                group.cancelAll()
            }
        } onGracefulShutdown: {
            self.requestStop()
        }
        admin.close()
        metricsServer?.close()
        flushTransactions()
        do { try transactionWriter.flush() } catch {
            logger.critical("cannot store transactions", metadata: ["error": "\(error)"])
        }
        saveState(force: true)
        watchdog?.disarm()
        logger.info("node stopped", metadata: ["node_id": "\(keys.nodeID)"])
    }

    /// Begins an orderly stop: no new connections; running ones are cancelled.
    public nonisolated func requestStop() {
        work.continuation.finish()
        serverChannel.withLock { $0?.close(promise: nil) }
    }

    private func acceptLoop(_ server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>) async {
        do {
            try await server.executeThenClose { inbound in
                for try await connection in inbound {
                    // Counted before the actor sees them: while it is busy, a flood of accepts
                    // must not pile up descriptors behind the admission check.
                    let open = self.inboundSockets.add(1, ordering: .relaxed).newValue
                    if open > self.inboundSocketLimit {
                        self.inboundSockets.subtract(1, ordering: .relaxed)
                        try? await connection.channel.close()
                        continue
                    }
                    self.work.continuation.yield(.inbound(connection))
                }
            }
        } catch {
            logger.debug("accept loop ended", metadata: ["error": "\(error)"])
        }
    }

    private func tickLoop() async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: .seconds(1)) } catch { return }
            // The current validators are never evicted to make room for an inbound stranger.
            if let validators = consensus?.core.config.validators.validators {
                engine.protectedPeers = Set(validators.map(\.id))
            }
            execute(engine.tick(now: now))
            if snapshotJoin != nil { driveSnapshot { $0.tick(now: now) } }
            if codeWait != nil { driveCodeFetch { $0.tick(now: now) } }
            saveState(force: false)
            if bansDirty { saveBans() }
            metrics.peers.set(Double(engine.peers.count))
            metrics.dagTransactions.set(Double(sync.dag.count))
            if Date().timeIntervalSince(lastPruneCheck) >= 10 {
                lastPruneCheck = Date()
                pruneDAG()
            }
            if let host = consensus {
                statusSamples.append((Date().timeIntervalSince1970, host.committedHeight, host.committedTransactions))
                if statusSamples.count > 300 { statusSamples.removeFirst(statusSamples.count - 300) }
            }
            if Date().timeIntervalSince(lastSyncRound) >= configuration.syncInterval, let peer = engine.randomPeer() {
                lastSyncRound = Date()
                execute(engine.sendDirect(sync.headsAnnouncement(), to: peer))
            }
        }
    }

    /// Every 50 ms: writes accepted transactions, and (with a genesis) fires consensus
    /// round timers and due proposals. Starts consensus first.
    private func consensusLoop() async {
        if let host = consensus {
            consensus = nil
            startConsensus(host)
        }
        while !Task.isCancelled {
            do { try await Task.sleep(for: .milliseconds(50)) } catch { return }
            flushTransactions()
            if consensus != nil { runConsensus { host, dag in try host.tick(now: Date(), dag: dag) } }
        }
    }

    // MARK: Checkpoints

    /// Every 250 ms: commits go to the checkpoint host, which may lead a checkpoint or
    /// judge requests that waited for this node to commit their block.
    private func checkpointLoop() async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: .milliseconds(250)) } catch { return }
            let events = consensus?.takeCommitEvents() ?? []
            guard var host = checkpoint, let chain = consensus else { continue }
            let t = now
            host.committed(events, now: t)
            let actions = host.tick(now: t, chain: chain)
            checkpoint = host
            executeCheckpoint(actions)
        }
    }

    /// Follows Bitcoin through esplora: the tip, the fee estimate, and who spent the
    /// checkpoint coin (each confirmed, valid spend moves the coin on).
    private func bitcoinLoop() async {
        guard let esplora else { return }
        var lastEstimate = Date.distantPast
        var lastError = ""
        while !Task.isCancelled {
            do {
                let tip = try await esplora.tipHeight()
                checkpoint?.bitcoinTip(tip)
                metrics.bitcoinHeight.set(Double(tip))
                if Date().timeIntervalSince(lastEstimate) >= 30 {
                    lastEstimate = Date()
                    if let rate = try? await esplora.feeRate(target: configuration.bitcoin.feeTarget) {
                        checkpoint?.estimatedFeeRate = rate
                    }
                }
                try await followReorgs(esplora, tip: tip)
                // Several checkpoints may have confirmed since the last poll (or start).
                for _ in 0..<50 {
                    guard let coin = checkpoint?.follower.coin else { break }
                    let spend = try await esplora.outspend(txid: coin.displayTxid, vout: coin.vout)
                    guard spend.spent, let txid = spend.txid else {
                        updateCheckpoint { $0.coinUnspent() }
                        break
                    }
                    let hex = try await esplora.transactionHex(txid: txid)
                    guard let bytes = try? Hex.decode(hex), let tx = try? BitcoinTransaction(bytes: bytes) else {
                        logger.warning("esplora served an unparsable transaction", metadata: ["txid": "\(txid)"])
                        break
                    }
                    let confirmed = spend.status?.confirmed == true
                    let height = confirmed ? spend.status?.block_height : nil
                    // A checkpoint that swept top-ups: their outputs, to check its signatures.
                    var prevouts: [OutPoint: TxOut] = [:]
                    for input in tx.inputs.dropFirst().prefix(CheckpointTransaction.maxTopUps) {
                        let parent = try BitcoinTransaction(
                            hex: try await esplora.transactionHex(txid: input.previousOutput.displayTxid))
                        if Int(input.previousOutput.vout) < parent.outputs.count {
                            prevouts[input.previousOutput] = parent.outputs[Int(input.previousOutput.vout)]
                        }
                    }
                    guard
                        spendSeen(
                            tx, confirmedAt: height, blockHash: confirmed ? spend.status?.block_hash : nil,
                            prevouts: prevouts)
                    else { break }
                }
                // After the spend loop (a confirmed, not yet adopted checkpoint's output is
                // not a top-up), and not fatal: an esplora that will not list the address's
                // outputs (too many) must not stop the coin being followed.
                do { try await followTopUps(esplora, tip: tip) } catch {
                    checkpoint?.topUps = [:]
                    logger.debug("cannot list top-ups of the checkpoint coin", metadata: ["error": "\(error)"])
                }
                reportFeesLeft()
                lastError = ""
            } catch {
                // Logged once per kind of failure: esplora may be down for a while.
                if "\(error)" != lastError {
                    lastError = "\(error)"
                    logger.warning("cannot follow Bitcoin through esplora", metadata: ["error": "\(error)"])
                }
            }
            do { try await Task.sleep(for: .seconds(configuration.bitcoin.pollInterval)) } catch { return }
        }
    }

    /// Checkpoints adopted in the last `reorgWindow` Bitcoin blocks are checked to still be
    /// in the block that confirmed them: one that left the best chain is undone, newest
    /// first (a deeper reorg than the window is not followed; see docs/checkpoints.md).
    private func followReorgs(_ esplora: EsploraClient, tip: Int) async throws {
        for _ in 0..<10 {
            guard let last = checkpoint?.follower.last, let hash = last.blockHash, let height = last.bitcoinHeight,
                tip - height < Self.reorgWindow
            else { return }
            let status = try await esplora.status(txid: last.txid)
            if status.confirmed, let now = status.block_hash, let at = status.block_height {
                guard now != hash else { return }
                // Mined again in another block of the new best chain: still adopted.
                updateCheckpoint { $0.reconfirmed(height: at, hash: now) }
                return
            }
            metrics.checkpointReorgs.increment()
            updateCheckpoint { $0.lastOrphaned(now: self.now) }
        }
    }
    static let reorgWindow = 100

    /// Outputs someone paid to the current coin's script, confirmed `confirmations` deep:
    /// the next checkpoint sweeps them in (the coin never runs dry while someone tops it up).
    private func followTopUps(_ esplora: EsploraClient, tip: Int) async throws {
        guard let host = checkpoint, let network = Bitcoin.Network(rawValue: configuration.bitcoin.network),
            let address = SegwitAddress(scriptPubKey: host.follower.coinScript, network: network)
        else { return }
        let coin = host.follower.coin
        let depth = host.depth
        // Outputs of checkpoints themselves are coins, never top-ups.
        let checkpoints = Set(host.follower.records.map(\.txid) + [host.follower.unconfirmed?.txid].compactMap { $0 })
        var found: [OutPoint: UInt64] = [:]
        for utxo in try await esplora.utxos(address: address.description) {
            guard let height = utxo.status.block_height, height <= tip, tip - height + 1 >= depth,
                !checkpoints.contains(utxo.txid),
                let outpoint = try? OutPoint(displayTxid: utxo.txid, vout: utxo.vout), outpoint != coin
            else { continue }
            found[outpoint] = utxo.value
        }
        checkpoint?.topUps = found
    }

    /// The checkpoints the coin can still pay for: a metric, and a warning once below 20
    /// (top it up with `p2pnode checkpoint fund`).
    private func reportFeesLeft() {
        guard let host = checkpoint, let chain = consensus, let left = host.checkpointsLeft(chain: chain) else {
            return
        }
        metrics.checkpointsLeft.set(Double(left))
        if left < Self.lowFeesWarning, !warnedLowFees {
            logger.warning(
                "the checkpoint coin is running out: top it up with `p2pnode checkpoint fund`",
                metadata: ["checkpoints_left": "\(left)", "coin_value": "\(host.follower.coinValue)"])
        }
        warnedLowFees = left < Self.lowFeesWarning
    }
    static let lowFeesWarning = 20

    /// Changes the checkpoint host and saves what the follower keeps if it changed.
    private func updateCheckpoint(_ change: (inout CheckpointHost) -> Void) {
        guard var host = checkpoint else { return }
        let before = host.follower
        change(&host)
        checkpoint = host
        if host.follower != before {
            do { try files.save(host.follower, genesisCoin: genesisCoin) } catch {
                logger.error("cannot save the checkpoint record", metadata: ["error": "\(error)"])
            }
        }
        metrics.checkpointAlarm.set(Double(host.halted ? 1 : 0))
    }

    private func spendSeen(
        _ tx: BitcoinTransaction, confirmedAt: Int?, blockHash: String?, prevouts: [OutPoint: TxOut]
    ) -> Bool {
        guard var host = checkpoint, let chain = consensus else { return false }
        let before = host.follower
        let moved = host.spendSeen(
            tx, confirmedAt: confirmedAt, blockHash: blockHash, prevouts: prevouts, chain: chain, now: now)
        checkpoint = host
        metrics.checkpointAlarm.set(Double(host.halted ? 1 : 0))
        if moved { metrics.checkpoints.increment() }
        // Also a new spend in the mempool: how long it has waited survives a restart.
        if host.follower != before {
            do { try files.save(host.follower, genesisCoin: genesisCoin) } catch {
                logger.error("cannot save the checkpoint record", metadata: ["error": "\(error)"])
            }
        }
        return moved
    }

    private func executeCheckpoint(_ actions: [CheckpointHost.Action]) {
        for action in actions {
            switch action {
            case .gossip(let payload):
                execute(engine.broadcast(payload, now: now))
            case .penalize(let validator, let reason):
                // A tenth of an invalid message per rule-breaking request: one that keeps
                // asking for bad checkpoints is banned; a single one does not cut it off.
                penalize(
                    validator: validator, points: max(1, configuration.gossip.invalidMessagePenalty / 10),
                    reason: reason)
            case .broadcast(let tx, let payload, let sinceCommit):
                guard let esplora else { continue }
                let hex = tx.hex
                let seconds = sinceCommit ?? -1
                Task { [logger] in
                    do {
                        let txid = try await esplora.broadcast(hex: hex)
                        logger.notice(
                            "checkpoint broadcast",
                            metadata: [
                                "txid": "\(txid)", "epoch": "\(payload.epoch)", "round": "\(payload.round)",
                                "seconds_since_commit": "\(String(format: "%.2f", seconds))",
                            ])
                    } catch {
                        logger.warning(
                            "checkpoint broadcast refused",
                            metadata: ["txid": "\(tx.displayTxid)", "error": "\(error)"])
                    }
                }
            }
        }
    }

    /// Runs one step of the consensus host and sends what it returns. A storage
    /// failure stops the node: it must not go on signing what it could not record.
    private func runConsensus(_ step: (inout ConsensusHost, TransactionDAG) throws -> [ConsensusHost.NetworkAction]) {
        guard var host = consensus else { return }
        // Move the host out while it changes, so its block tree and states are not
        // copied (copy-on-write) on every consensus step.
        consensus = nil
        let actions: [ConsensusHost.NetworkAction]
        do {
            actions = try step(&host, sync.dag)
        } catch {
            consensus = host
            logger.critical("consensus failed; stopping the node", metadata: ["error": "\(error)"])
            requestStop()
            return
        }
        consensus = host
        for action in actions {
            switch action {
            case .broadcast(let message):
                // Not `publish`: a re-broadcast (a timeout sent again) must go out even
                // though its id is in the seen-cache; peers still drop what they saw.
                execute(engine.broadcast([ConsensusHost.gossipTopic] + message, now: now))
            case .send(let to, let message, let flood):
                if engine.peer(to) != nil {
                    execute(engine.sendDirect([ConsensusHost.directTag] + message, toPeer: to))
                } else if flood {
                    execute(engine.broadcast([ConsensusHost.gossipTopic] + message, now: now))
                } else if let peer = engine.randomPeer() {
                    execute(engine.sendDirect([ConsensusHost.directTag] + message, to: peer))
                }
            case .toNeighbours(let message):
                for connection in engine.peers.keys.sorted() {
                    execute(engine.sendDirect([ConsensusHost.directTag] + message, to: connection))
                }
            case .evidence(let text):
                recordEvidence(kind: "equivocation", peer: nil, detail: text)
            case .penalize(let peer, let reason):
                penalize(validator: peer, points: configuration.gossip.invalidMessagePenalty, reason: reason)
            case .discourage(let peer, let reason):
                penalize(
                    validator: peer, points: max(1, configuration.gossip.invalidMessagePenalty / 20), reason: reason)
            }
        }
    }

    // MARK: State snapshots

    /// A snapshot request (answered from the store, within the peer's budget) or an answer
    /// for this node's own download.
    private func snapshotMessage(_ payload: [UInt8], from: ConnectionID, peer: PeerID) {
        guard let message = try? SnapshotMessage.decode(payload) else {
            execute(
                engine.penalize(
                    peer: from, points: configuration.gossip.malformedPenalty, reason: "malformed snapshot message",
                    now: now))
            return
        }
        switch message {
        case .getCode(let checksum):
            // Served from the code store (joining or not); paid before the read, as the
            // largest code would cost (a joining node asks for few codes).
            guard takeServeTokens(from: from, peer: peer, cost: 1 + Double(ContractMsg.maxCodeBytes) / 65_536) else {
                return
            }
            let wasm = contracts.codes.wasm(checksum)
            execute(engine.sendDirect(SnapshotMessage.code(checksum: checksum, wasm: wasm).encoded(), to: from))
        case .code:
            if codeWait != nil { driveCodeFetch { $0.received(message, from: peer, now: now) } }
        case .getSnapshot, .getEpochEnds, .getChunk:
            guard let host = consensus else { return }  // nothing to serve while joining
            // 20 units a second per host, bursts of 40; a chunk costs 1 + its leaves / 512,
            // an epoch-ends answer 1 + its size / 64 KiB. Over budget: "busy", not silence,
            // so an honest downloader goes elsewhere at once instead of timing out.
            let t = now
            let client = (engine.peers[from]?.host).map { IPAddress($0)?.hostKey ?? $0 } ?? peer.hex
            var bucket = snapshotServeBudget[client] ?? (40, t)
            bucket.tokens = min(40, bucket.tokens + (t - bucket.at) * 20)
            bucket.at = t
            if snapshotServeBudget.count > 4_096 {
                snapshotServeBudget = snapshotServeBudget.filter { t - $0.value.at < 10 }
            }
            guard bucket.tokens > 0 else {
                // Over budget: a short answer that says so (the downloader asks again later).
                snapshotServeBudget[client] = bucket
                let busy: SnapshotMessage
                switch message {
                case .getChunk(let height, let prefix, let depth):
                    busy = .chunk(height: height, prefix: prefix, depth: depth, .busy)
                case .getEpochEnds: busy = .epochEnds([])
                default: busy = .snapshot(nil)
                }
                execute(engine.sendDirect(busy.encoded(), to: from))
                return
            }
            do {
                var offer: SnapshotDescriptor?
                if case .getSnapshot = message {
                    // Built once per stored snapshot, not on every request.
                    let height = try host.newestSnapshotHeight()
                    if snapshotOffer?.height != height { snapshotOffer = try host.newestSnapshot() }
                    offer = snapshotOffer
                }
                if let answer = try host.answer(message, newest: offer) {
                    let bytes = answer.encoded()
                    // About one unit per 512 leaves read or 64 KiB sent; "too large" read a full chunk.
                    var cost = 1.0 + Double(bytes.count) / 65_536
                    if case .chunk(_, _, _, .leaves(let leaves, _)) = answer { cost += Double(leaves.count) / 512 }
                    if case .chunk(_, _, _, .tooLarge) = answer {
                        cost += Double(SnapshotMessage.maxChunkLeaves) / 512
                    }
                    bucket.tokens -= cost
                    execute(engine.sendDirect(bytes, to: from))
                }
            } catch {
                logger.debug("cannot serve a snapshot request", metadata: ["error": "\(error)"])
            }
            snapshotServeBudget[client] = bucket
        case .snapshot, .epochEnds, .chunk:
            if snapshotJoin != nil { driveSnapshot { $0.received(message, from: peer, now: now) } }
        }
    }

    /// Takes `cost` from a requesting host's serving budget (the snapshot token bucket);
    /// false when it is spent.
    private func takeServeTokens(from: ConnectionID, peer: PeerID, cost: Double) -> Bool {
        let t = now
        let client = (engine.peers[from]?.host).map { IPAddress($0)?.hostKey ?? $0 } ?? peer.hex
        var bucket = snapshotServeBudget[client] ?? (40, t)
        bucket.tokens = min(40, bucket.tokens + (t - bucket.at) * 20)
        bucket.at = t
        defer { snapshotServeBudget[client] = bucket }
        guard bucket.tokens > 0 else { return false }
        bucket.tokens -= cost
        return true
    }

    /// Runs one step of the snapshot download and carries out its actions.
    private func driveSnapshot(_ step: (inout SnapshotSync<PeerID>) -> [SnapshotSync<PeerID>.Action]) {
        guard var join = snapshotJoin else { return }
        let actions = step(&join.machine)
        snapshotJoin = join
        for action in actions {
            switch action {
            case .send(let peer, let message):
                execute(engine.sendDirect(message.encoded(), toPeer: peer))
            case .discourage(let peer, let reason):
                logger.warning(
                    "snapshot peer served false data; dropped",
                    metadata: ["peer": "\(peer.hex.prefix(16))", "reason": "\(reason)"])
                recordEvidence(kind: "false_snapshot", peer: peer, detail: reason)
                penalize(validator: peer, points: configuration.gossip.invalidMessagePenalty, reason: reason)
            case .persistTarget, .persistChunk, .reset:
                do { try join.persist(action) } catch {
                    logger.critical("cannot keep the snapshot download; stopping", metadata: ["error": "\(error)"])
                    requestStop()
                    return
                }
            case .progress(let p): snapshotJoin?.report(p, logger: logger)
            case .note(let text): logger.info("\(text)")
            case .finished(let target, let leaves):
                finishSnapshot(target, leaves: leaves)
                return
            }
        }
    }

    /// Installs the downloaded snapshot and starts consensus on it: catch-up fetches the
    /// blocks after it.
    private func finishSnapshot(_ target: VerifiedSnapshot, leaves: [StateLeaf]) {
        guard var join = snapshotJoin else { return }
        let began = Date()
        do {
            let installed = try join.install(target, leaves: leaves)
            let height = installed.version
            if let last = join.lastProgress { join.report(last, logger: logger, final: true) }
            snapshotJoin = nil
            var host = try ConsensusHost(
                genesis: join.genesis, key: keys.identity, store: join.store, logger: logger,
                state: configuration.state,
                installed: installed, contracts: contracts)
            host.metrics = metrics
            metrics.epoch.set(Double(host.core.config.epoch))
            logger.notice(
                "snapshot installed; catching up the blocks after it",
                metadata: [
                    "height": "\(height)", "state_id": "\(target.descriptor.stateID.hex.prefix(16))",
                    "leaves": "\(leaves.count)", "epoch": "\(target.descriptor.epoch)",
                    "install_s": "\(String(format: "%.2f", Date().timeIntervalSince(began)))",
                ])
            startConsensus(host)
        } catch {
            logger.critical("cannot install the downloaded snapshot; stopping", metadata: ["error": "\(error)"])
            requestStop()
        }
    }

    // MARK: Contract code

    /// Starts consensus on `host` once this node holds the code of every contract its
    /// state names (a snapshot carries checksums, not code): missing code is fetched from
    /// peers first, checked against its checksum, and kept.
    private func startConsensus(_ host: ConsensusHost) {
        var missing = Set<[UInt8]>()
        host.committedState.tree.visitLeaves { leaf in
            guard leaf.key.starts(with: StateKey.codePrefix), let info = try? CodeInfo.decode(leaf.value),
                !contracts.codes.contains(info.checksum)
            else { return }
            missing.insert(info.checksum)
        }
        guard missing.isEmpty else {
            logger.notice(
                "fetching contract code from peers before consensus starts", metadata: ["codes": "\(missing.count)"])
            codeWait = (CodeFetch(missing: missing), host)
            driveCodeFetch { $0.start(peers: engine.peers.values.map(\.nodeID), now: now) }
            return
        }
        consensus = host
        runConsensus { host, dag in try host.start(dag: dag) }
        for peer in engine.peers.values.map(\.nodeID) { runConsensus { host, _ in try host.peerConnected(peer) } }
    }

    private func driveCodeFetch(_ step: (inout CodeFetch<PeerID>) -> [CodeFetch<PeerID>.Action]) {
        guard var wait = codeWait else { return }
        let actions = step(&wait.fetch)
        codeWait = wait
        for action in actions {
            switch action {
            case .send(let peer, let message):
                execute(engine.sendDirect(message.encoded(), toPeer: peer))
            case .store(let checksum, let wasm):
                _ = contracts.codes.put(wasm, expecting: checksum)
                logger.info(
                    "contract code fetched",
                    metadata: ["checksum": "\(checksum.hex.prefix(16))", "bytes": "\(wasm.count)"])
            case .discourage(let peer, let reason):
                recordEvidence(kind: "false_code", peer: peer, detail: reason)
                penalize(validator: peer, points: configuration.gossip.invalidMessagePenalty, reason: reason)
            case .done:
                codeWait = nil
                logger.notice("contract code complete; starting consensus")
                startConsensus(wait.host)
                return
            }
        }
    }

    /// Scores down the connection of a node id, if it is connected.
    private func penalize(validator: ValidatorID, points: Int, reason: String) {
        guard let state = engine.peer(validator) else { return }
        execute(engine.penalize(peer: state.connection, points: points, reason: reason, now: now))
    }

    private func saveBans() {
        bansDirty = false
        do { try files.save(engine.activeBans(now: now)) } catch {
            logger.error("cannot save the ban list", metadata: ["error": "\(error)"])
        }
    }

    private func saveState(force: Bool) {
        if force, bansDirty { saveBans() }
        // Remembered while connected: at shutdown the connections close before the last save.
        let current = engine.anchorCandidates
        if !current.isEmpty { anchors = current }
        guard force || Date().timeIntervalSince(lastBookSave) >= 30 else { return }
        lastBookSave = Date()
        guard engine.addressBook != savedBook || force else { return }
        do {
            try files.save(engine.addressBook, anchors: anchors)
            savedBook = engine.addressBook
        } catch {
            logger.error("cannot save the address book", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Connections

    private func dial(_ address: NodeAddress) async {
        logger.debug("dialling", metadata: ["peer": "\(address)"])
        do {
            var bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.milliseconds(Int64(configuration.dialTimeout * 1000)))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelOption(.recvAllocator, value: SecureChannelReads.allocator)
            if let source = configuration.outboundAddress {
                bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: source, port: 0))
            }
            let connection =
                try await bootstrap
                .connect(host: address.host, port: Int(address.port)) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
            if await serve(connection, inbound: false, expected: address.nodeID) { return }
        } catch {
            logger.debug("dial failed", metadata: ["peer": "\(address)", "error": "\(error)"])
        }
        execute(engine.dialFailed(address, now: now))
    }

    private func allocateConnectionID() -> ConnectionID {
        defer { nextConnectionID += 1 }
        return nextConnectionID
    }

    /// Admits an inbound connection to its handshake (closing an evicted pending one).
    private func inboundAttempt(_ handle: PeerConnection) -> GossipEngine.Admission {
        let admission = engine.inboundAttempt(handle.id, host: handle.remoteHost, now: now)
        if case .admit(_, let evict) = admission {
            handshaking[handle.id] = handle
            if let evict, let victim = handshaking.removeValue(forKey: evict) {
                logger.debug("dropping a pending handshake for a newer one", metadata: ["from": "\(victim.remoteHost)"])
                victim.close()
            }
        }
        return admission
    }

    private func handshakeEnded(_ id: ConnectionID) {
        handshaking[id] = nil
        engine.handshakeEnded(id)
    }

    /// Runs one connection to its end. Returns whether it was ever established.
    private nonisolated func serve(
        _ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>, inbound: Bool, expected: PeerID?
    ) async -> Bool {
        let remote = connection.channel.remoteAddress
        // One spelling per address (an IPv4-mapped IPv6 peer is its IPv4 address).
        let host = remote?.ipAddress.map { IPAddress($0)?.description ?? $0 } ?? "unknown"
        let port = UInt16(clamping: remote?.port ?? 0)
        let channelConfig = SecureChannelConfiguration(
            chainID: configuration.chainID, identity: keys.identity, maxMessageSize: configuration.maxMessageSize)
        let (outStream, outbox) = AsyncStream<[UInt8]>.makeStream(
            bufferingPolicy: .bufferingOldest(configuration.peerQueueLimit))
        let handle = PeerConnection(
            id: await allocateConnectionID(), channel: connection.channel, inbound: inbound, remoteHost: host,
            remotePort: port, outbox: outbox,
            secure: SecureChannel(
                role: inbound ? .responder : .initiator(expectedPeer: expected), configuration: channelConfig))
        var handshakeTimeout = configuration.handshakeTimeout
        if inbound {
            switch await inboundAttempt(handle) {
            case .refuse(let reason):
                logger.debug("refusing inbound connection", metadata: ["from": "\(host)", "reason": "\(reason)"])
                try? await connection.channel.close()
                inboundSockets.subtract(1, ordering: .relaxed)
                return false
            case .admit(let timeout, _):
                handshakeTimeout = timeout
            }
        }
        // Every admitted inbound handshake is released exactly once: when it completes or the
        // connection ends before that.
        let pending = Mutex(inbound)
        @Sendable func releaseHandshake() async {
            if pending.withLock({
                let was = $0
                $0 = false
                return was
            }) {
                await self.handshakeEnded(handle.id)
            }
        }
        let timeout = connection.channel.eventLoop.scheduleTask(
            in: .milliseconds(Int64(handshakeTimeout * 1000))
        ) {
            if !handle.secure.withLock({ $0.isEstablished }) { handle.close() }
        }
        var established = false
        do {
            try await connection.executeThenClose { inboundStream, outbound in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for await message in outStream {
                            handle.counters.withLock { $0.queuedBytes -= message.count }
                            let buffer = try handle.secure.sealed(message)
                            handle.counters.withLock { $0.bytesSent += buffer.readableBytes }
                            try await outbound.write(buffer)
                        }
                    }
                    for action in handle.secure.withLock({ $0.start() }) {
                        if case .write(let bytes) = action {
                            handle.counters.withLock { $0.bytesSent += bytes.count }
                            try await outbound.write(ByteBuffer(bytes: bytes))
                        }
                    }
                    reading: for try await buffer in inboundStream {
                        handle.counters.withLock { $0.bytesReceived += buffer.readableBytes }
                        let actions = handle.secure.withLock { $0.receive(buffer.readableBytesView) }
                        for action in actions {
                            switch action {
                            case .write(let bytes):
                                handle.counters.withLock { $0.bytesSent += bytes.count }
                                try await outbound.write(ByteBuffer(bytes: bytes))
                            case .established(let peer):
                                timeout.cancel()
                                established = true
                                await releaseHandshake()
                                guard await self.connectionEstablished(handle, peer: peer) else { break reading }
                            case .deliver(let message):
                                await self.messageReceived(handle.id, message)
                            case .close(let error):
                                await self.channelFailed(handle, error: error, established: established)
                                break reading
                            }
                        }
                    }
                    outbox.finish()
                    group.cancelAll()
                }
            }
        } catch {
            logger.debug("connection ended", metadata: ["connection": "\(handle.id)", "error": "\(error)"])
        }
        timeout.cancel()
        outbox.finish()
        await releaseHandshake()
        await connectionClosed(handle)
        if inbound { inboundSockets.subtract(1, ordering: .relaxed) }
        return established
    }

    private func connectionEstablished(_ handle: PeerConnection, peer: PeerID) -> Bool {
        connections[handle.id] = handle
        let actions = engine.connected(
            handle.id, peer: peer, host: handle.remoteHost, port: handle.remotePort, inbound: handle.inbound,
            now: now)
        execute(actions)
        let accepted = engine.peers[handle.id] != nil
        if accepted {
            logger.info(
                "peer connected",
                metadata: [
                    "peer": "\(peer.hex.prefix(16))", "address": "\(handle.remoteHost):\(handle.remotePort)",
                    "direction": "\(handle.inbound ? "inbound" : "outbound")",
                ])
            if consensus != nil { runConsensus { host, _ in try host.peerConnected(peer) } }
            if snapshotJoin != nil { driveSnapshot { $0.connected(peer, now: now) } }
            if codeWait != nil { driveCodeFetch { $0.connected(peer, now: now) } }
        }
        return accepted
    }

    private func messageReceived(_ id: ConnectionID, _ bytes: [UInt8]) {
        execute(engine.received(id, bytes: bytes, now: now))
    }

    private func channelFailed(_ handle: PeerConnection, error: SecureChannelError, established: Bool) {
        if established {
            logger.warning(
                "peer violated the transport", metadata: ["connection": "\(handle.id)", "error": "\(error)"])
            execute(engine.transportViolation(handle.id, reason: error.description, now: now))
        } else {
            handshakeFailures += 1
            logger.info(
                "handshake failed",
                metadata: ["address": "\(handle.remoteHost):\(handle.remotePort)", "error": "\(error)"])
        }
    }

    private func connectionClosed(_ handle: PeerConnection) {
        let counters = handle.counters.withLock { $0 }
        closedTotals.sent += counters.bytesSent
        closedTotals.received += counters.bytesReceived
        guard connections.removeValue(forKey: handle.id) != nil else { return }
        let gone = engine.peers[handle.id]?.nodeID
        if let gone {
            logger.info("peer disconnected", metadata: ["peer": "\(gone.hex.prefix(16))"])
        }
        execute(engine.disconnected(handle.id, now: now))
        if let gone, consensus != nil, engine.peer(gone) == nil {
            runConsensus { host, dag in try host.peerGone(gone, dag: dag) }
        }
        if let gone, snapshotJoin != nil, engine.peer(gone) == nil {
            driveSnapshot { $0.disconnected(gone, now: now) }
        }
        if let gone, codeWait != nil, engine.peer(gone) == nil { driveCodeFetch { $0.disconnected(gone, now: now) } }
    }

    private func execute(_ actions: [GossipEngine.Action]) {
        for action in actions {
            switch action {
            case .send(let id, let message):
                guard let connection = connections[id] else { continue }
                let bytes = message.encoded()
                // A peer that does not read is dropped once its queue holds the budget:
                // memory per peer stays bounded in bytes, not only in messages.
                let overBudget = connection.counters.withLock { counters in
                    // An empty queue takes any message, so the budget never refuses a lone large one.
                    guard
                        counters.queuedBytes == 0
                            || counters.queuedBytes + bytes.count <= configuration.gossip.maxSendQueueBytes
                    else { return true }
                    counters.queuedBytes += bytes.count
                    return false
                }
                if overBudget {
                    logger.info(
                        "disconnecting slow peer",
                        metadata: ["connection": "\(id)", "queued_bytes": "\(configuration.gossip.maxSendQueueBytes)"])
                    connection.close()
                    continue
                }
                if case .dropped = connection.outbox.yield(bytes) {
                    connection.counters.withLock {
                        $0.dropped += 1
                        $0.queuedBytes -= bytes.count
                    }
                }
            case .disconnect(let id, let reason):
                logger.info("disconnecting peer", metadata: ["connection": "\(id)", "reason": "\(reason)"])
                connections[id]?.close()
            case .dial(let address):
                work.continuation.yield(.dial(address))
            case .validate(let payload, let id, let from, let peer):
                let verdict = validate(payload, id: id, from: from, peer: peer)
                execute(engine.validated(payload, from: from, result: verdict, now: now))
            case .direct(let payload, let from, let peer):
                if let tag = payload.first, SyncMessage.tags.contains(tag) {
                    executeLedger(sync.directReceived(payload, from: from, source: peer.hex))
                } else if let tag = payload.first, SnapshotMessage.tags.contains(tag) {
                    snapshotMessage(payload, from: from, peer: peer)
                } else if payload.first == ConsensusHost.directTag {
                    // A node not running consensus (no genesis, or joining by snapshot) does
                    // not judge consensus messages: a validator's status is not misbehaviour.
                    guard consensus != nil else { continue }
                    guard let message = try? ConsensusMessage.decode(Array(payload.dropFirst())) else {
                        execute(
                            engine.penalize(
                                peer: from, points: configuration.gossip.malformedPenalty,
                                reason: "malformed consensus message", now: now))
                        continue
                    }
                    var verdict = ConsensusCore.Provenance.stale
                    runConsensus { host, dag in
                        let (judged, actions) = try host.received(message, directFrom: peer, dag: dag)
                        verdict = judged
                        return actions
                    }
                    if case .forged(let reason) = verdict {
                        recordEvidence(kind: "forged_message", peer: peer, detail: reason)
                        execute(
                            engine.penalize(
                                peer: from, points: configuration.gossip.malformedPenalty, reason: reason, now: now))
                    }
                } else {
                    execute(
                        engine.penalize(
                            peer: from, points: configuration.gossip.malformedPenalty, reason: "unknown direct message",
                            now: now))
                }
            case .bansChanged:
                // Written by the once-a-second tick, not here: a burst of bans (Sybil ids
                // misbehaving at once) must not rewrite and fsync the file each time.
                bansDirty = true
            }
        }
    }

    // MARK: Application

    /// Judges a new gossip payload by its topic byte.
    private func validate(_ payload: [UInt8], id: MessageID, from: ConnectionID, peer: PeerID) -> Validation {
        guard let topic = payload.first else { return .reject("empty payload") }
        switch topic {
        case Self.testTopic:
            // Opaque test messages only where the operator turned them on: elsewhere they
            // are neither kept nor relayed (the peer is not charged: a node configured for
            // tests may have relayed it in good faith).
            guard configuration.gossip.testMessages else { return .ignore }
            recordDelivery(id)
            return .accept
        case LedgerSync.transactionTopic, LedgerSync.batchTopic:
            let body = Array(payload.dropFirst())
            let (verdict, actions) =
                topic == LedgerSync.batchTopic
                ? sync.gossipBatchReceived(body, from: from, source: peer.hex)
                : sync.gossipReceived(body, from: from, source: peer.hex)
            executeLedger(actions)
            switch verdict {
            case .accept:
                recordDelivery(id)
                return .accept
            case .ignore: return .ignore
            case .reject(let reason):
                logger.info(
                    "rejected transaction", metadata: ["peer": "\(peer.hex.prefix(16))", "reason": "\(reason)"])
                return .reject(reason)
            }
        case ConsensusHost.gossipTopic:
            guard consensus != nil else { return .ignore }  // not running consensus: do not judge, do not relay
            guard let message = try? ConsensusMessage.decode(Array(payload.dropFirst())) else {
                return .reject("malformed consensus message")
            }
            var verdict = ConsensusCore.Provenance.stale
            runConsensus { host, dag in
                let (judged, actions) = try host.received(message, directFrom: nil, dag: dag)
                verdict = judged
                return actions
            }
            switch verdict {
            case .accept:
                return .accept
            case .later:
                // A later epoch's message cannot be judged before this node has seen
                // that epoch begin: kept for then (bounded), not relayed, not punished.
                return .ignore
            case .stale:
                return .ignore
            case .forged(let reason):
                // Whoever relayed it did not check it: the gossip layer charges that peer.
                recordEvidence(kind: "forged_message", peer: peer, detail: reason)
                return .reject(reason)
            }
        case CheckpointHost.gossipTopic:
            // Not checkpointing here: neither judged nor relayed.
            guard var host = checkpoint, let chain = consensus else { return .ignore }
            let sender: ValidatorID
            let message: CheckpointMessage
            do { (sender, message) = try CheckpointHost.open(payload, chainID: configuration.chainID) } catch {
                return .reject(error.description)
            }
            // Signers of the coin may be the previous epoch's validators (its last checkpoint).
            // Validly signed, so not garbage: perhaps a validator of an epoch this node has
            // not reached. Not relayed, and the peer that relayed it is not punished.
            guard
                chain.isValidatorOfCurrentOrPreviousEpoch(sender) || host.coinHolders(chain: chain).contains(sender)
            else { return .ignore }
            let actions = host.received(message, from: sender, now: now, chain: chain)
            checkpoint = host
            executeCheckpoint(actions)
            return .accept
        default:
            return .reject("unknown topic \(topic)")
        }
    }

    /// The committed state, for choosing predecessors and what is settled: none while
    /// catching up (its state is behind the chain's, and what it executed may have left
    /// the window already).
    private var latestExecutedState: LedgerState? {
        guard let host = consensus, !host.catchUp.syncing else { return nil }
        return host.committedState
    }

    /// Prunes what the committed state settled: transactions executed more than the
    /// recent-id window ago (no transaction that can still run may name them, and the
    /// committed blocks keep them for catch-up) and ones superseded by what executed.
    private func pruneDAG() {
        guard let host = consensus, let state = latestExecutedState else { return }
        sync.committed = state
        if prunePlan == nil {
            let ids = sync.settledIDs()
            if !ids.isEmpty { prunePlan = (host.committedHeight, Set(ids)) }
        }
        guard let plan = prunePlan else { return }
        if let checkpoint, (checkpoint.follower.last?.height ?? 0) < plan.height {
            // Checkpoints that stop landing must not grow memory without bound: past four
            // recent-id windows the plan goes ahead (the checkpoint alarm says why they stopped).
            guard sync.dag.count > 4 * Int(LedgerState.recentWindow) else { return }
            logger.warning(
                "pruning the DAG before a checkpoint covers it: checkpoints are not landing",
                metadata: ["dag": "\(sync.dag.count)", "height": "\(plan.height)"])
        }
        prunePlan = nil
        // Rows still buffered here go to the writer before their deletions.
        flushTransactions()
        let removed = sync.prune(plan.ids)
        do {
            try transactionWriter.delete(removed.map(\.bytes))
        } catch {
            logger.critical("cannot store transactions; stopping", metadata: ["error": "\(error)"])
            requestStop()
        }
        metrics.dagPruned.increment(by: Int64(removed.count))
        logger.info(
            "pruned settled transactions",
            metadata: [
                "pruned": "\(removed.count)", "kept": "\(sync.dag.count)", "height": "\(plan.height)",
            ])
    }

    private func flushTransactions() {
        // Transactions released from pending since the last tick go out in one batch.
        finishSubmissions()
        guard !unsavedTransactions.isEmpty else { return }
        do {
            try transactionWriter.append(unsavedTransactions)
            unsavedTransactions.removeAll(keepingCapacity: true)
        } catch {
            // Without durable storage the node must not go on as if it had them.
            logger.critical("cannot store transactions; stopping", metadata: ["error": "\(error)"])
            requestStop()
        }
    }

    /// Misbehaviour seen in consensus traffic, for `getevidence` and the metric: a
    /// forged or misdirected message (charged to the peer that delivered it) or two
    /// signed proposals or votes in one round.
    struct EvidenceRecord {
        let time: Date
        let kind: String
        let peer: PeerID?
        let detail: String

        var json: JSONValue {
            .object([
                "time": .int(Int(time.timeIntervalSince1970)), "kind": .string(kind),
                "peer": peer.map { .string($0.hex) } ?? .null, "detail": .string(detail),
            ])
        }
    }
    static let evidenceLimit = 256

    /// A `limit` parameter, clamped: any JSON number is accepted (Int(Double) would trap
    /// on a huge or non-finite one).
    /// A whole number in 0…Int64.max from the params, or nil: heights and epochs are
    /// stored as SQLite integers, and a huge or negative number would trap a conversion.
    static func count(_ params: JSONValue, _ key: String) -> UInt64? {
        guard let n = params[key]?.numberValue, n.isFinite, n >= 0, n <= 9.0e18, n == n.rounded() else { return nil }
        return UInt64(n)
    }

    static func limit(_ params: JSONValue, default value: Int) -> Int {
        guard let n = params["limit"]?.numberValue, n.isFinite else { return value }
        return Int(min(max(n, 0), 100_000))
    }

    private func recordEvidence(kind: String, peer: PeerID?, detail: String) {
        evidenceTotal += 1
        consensusEvidence.append(EvidenceRecord(time: Date(), kind: kind, peer: peer, detail: detail))
        if consensusEvidence.count > Self.evidenceLimit { consensusEvidence.removeFirst() }
        metrics.consensusEvidence(kind: kind).increment()
        logger.warning(
            "consensus evidence",
            metadata: [
                "kind": "\(kind)", "peer": "\(peer.map { String($0.hex.prefix(16)) } ?? "-")", "detail": "\(detail)",
            ])
    }

    private func recordDelivery(_ id: MessageID) {
        deliveredTotal += 1
        recentDeliveries.append(id.description)
        if recentDeliveries.count > deliveryLogLimit { recentDeliveries.removeFirst(1_000) }
    }

    private func executeLedger(_ actions: [LedgerSync.Action]) {
        var runnable = false
        defer {
            // A leader waiting for transactions proposes now rather than at its next tick.
            if runnable { runConsensus { host, dag in try host.poolGrew(dag: dag) } }
        }
        for action in actions {
            switch action {
            case .persist(let txs):
                // Only a transaction that can run next on the committed state wakes a
                // waiting leader: one with a sequence gap (free to make) would make it
                // scan its pool for nothing. (A waiting leader's parent holds no
                // uncommitted transactions, so the committed state is its parent's.)
                if !runnable, let host = consensus, host.machine.proposalWaiting != nil {
                    let state = host.committedState
                    runnable = txs.contains {
                        $0.seq == state.seq(of: $0.author) + 1 && state.balance(of: $0.author) >= $0.fee
                    }
                }
                // Written in batches (every 50 ms or 1,000 transactions): one fsync per
                // transaction would cap every node at the disk's sync rate. A crash loses at
                // most the last batch, which anti-entropy fetches again from peers.
                unsavedTransactions += txs.map { (id: $0.id.bytes, encoded: $0.encoded) }
                if unsavedTransactions.count >= 1_000 { flushTransactions() }
            case .broadcast(let payload):
                execute(engine.broadcast(payload, now: now))
            case .sendDirect(let connection, let payload):
                execute(engine.sendDirect(payload, to: connection))
            case .penalize(let connection, let reason):
                execute(
                    engine.penalize(
                        peer: connection, points: configuration.gossip.invalidMessagePenalty, reason: reason, now: now))
            }
        }
    }

    // MARK: Status page (docs/observability.md)

    /// `GET /status.json` on the metrics endpoint: what the status page shows, built from
    /// the read-only admin results (no method that changes anything is reachable here).
    func statusJSON() -> String {
        // Built at most once a second, however often it is asked for: the actor runs consensus.
        if let cached = statusCache, Date().timeIntervalSince(cached.at) < 1 { return cached.text }
        let text = buildStatusJSON()
        statusCache = (Date(), text)
        return text
    }

    private func buildStatusJSON() -> String {
        func result(_ method: String) -> JSONValue {
            (try? admin(method, .object([:]))) ?? .null
        }
        var checkpoints = result("getcheckpoints")
        if case .object(var o) = checkpoints, case .array(let rows)? = o["checkpoints"] {
            // The PSBTs are large and only for auditing; the page links nothing to them.
            o["checkpoints"] = .array(
                rows.suffix(10).map { row in
                    guard case .object(var r) = row else { return row }
                    r["psbt"] = nil
                    return .object(r)
                })
            checkpoints = .object(o)
        }
        let window = 60.0
        let now = Date().timeIntervalSince1970
        let recentSamples = statusSamples.filter { now - $0.time <= window + 1 }
        var recent: [String: JSONValue] = [
            "window_seconds": .number(window), "blocks_per_second": .number(0), "transactions_per_second": .number(0),
            "commit_latency_ms": .null,
            "samples": .array(
                statusSamples.suffix(120).map {
                    .object([
                        "time": .number($0.time), "height": .int($0.height),
                        "committed_transactions": .int($0.transactions),
                    ])
                }),
        ]
        if let first = recentSamples.first, let last = recentSamples.last, last.time > first.time {
            let span = last.time - first.time
            recent["blocks_per_second"] = .number(Double(last.height &- first.height) / span)
            recent["transactions_per_second"] = .number(Double(last.transactions - first.transactions) / span)
        }
        if let latencies = consensus?.recentLatencies.suffix(200), !latencies.isEmpty {
            let ms = latencies.map { Double($0.components.seconds) * 1000 + Double($0.components.attoseconds) / 1e15 }
                .sorted()
            func quantile(_ q: Double) -> Double { ms[min(ms.count - 1, Int(Double(ms.count - 1) * q + 0.5))] }
            recent["commit_latency_ms"] = .object(["p50": .number(quantile(0.5)), "p99": .number(quantile(0.99))])
        }
        let body: JSONValue = .object([
            "time": .number(now), "info": result("getinfo"), "status": result("getstatus"),
            "peers": result("getpeerinfo"), "checkpoints": checkpoints, "recent": .object(recent),
        ])
        return body.description
    }

    // MARK: Admin API (docs/admin-api.md)

    static let maxSubmitBatch = 1_000

    private enum Submission {
        case accepted(Transaction)
        case notHex
        case rejected(String)
    }

    /// One client transaction into the DAG (stored, and queued for gossip: the caller
    /// sends the queue once for all it submits).
    /// Ledger actions of this admin call's submissions, not yet carried out.
    private var submittedActions: [LedgerSync.Action] = []

    /// Stores and gossips what this admin call submitted, in one go.
    private func finishSubmissions() {
        let actions = submittedActions + sync.takeBroadcasts()
        submittedActions = []
        executeLedger(actions)
    }

    private func submit(hex: String?) -> Submission {
        guard let hex, let encoded = try? Hex.decode(hex) else { return .notHex }
        return submit(encoded: encoded)
    }

    private func submit(encoded: [UInt8]) -> Submission {
        // A transaction larger than a block could never be proposed (code uploads can be).
        if let host = consensus, encoded.count > host.core.config.maxBlockBytes {
            return .rejected(
                "transaction rejected: \(encoded.count) bytes exceed this chain's max_block_bytes (\(host.core.config.maxBlockBytes))"
            )
        }
        let (result, actions) = sync.submit(encoded)
        // Carried out once for the whole call (finishSubmissions): a waiting leader then
        // proposes the call's transactions together, not the first one alone.
        submittedActions += actions
        switch result {
        case .success(let tx): return .accepted(tx)
        case .failure(let error): return .rejected("transaction rejected: \(error)")
        }
    }

    func admin(_ method: String, _ params: JSONValue) throws(AdminError) -> JSONValue {
        switch method {
        case "getinfo":
            return .object([
                "node_id": .string(keys.nodeID),
                "account_address": .string(
                    ContractAddressFormat.humanize(keys.identity.publicKey.rawRepresentation) ?? ""),
                "listen": .string("\(configuration.listen.host):\(listeningPort ?? Int(configuration.listen.port))"),
                "chain_id": .string(configuration.chainID),
                "version": .string(NodeVersion.string),
                "protocol": .string(SecureChannelConfiguration.protocolName),
                "uptime": .int(Int(Date().timeIntervalSince(startedAt))),
                "connections": .int(engine.peers.count),
                "outbound": .int(engine.outboundCount),
                "inbound": .int(engine.inboundCount),
                "bitcoin_xonly_pubkey": .string(keys.bitcoin.xOnlyPublicKey.hex),
            ])
        case "getpeerinfo":
            return .array(
                engine.peers.values.sorted { $0.connection < $1.connection }.map { peer in
                    let c = connections[peer.connection]?.counters.withLock { $0 } ?? .init()
                    return .object([
                        "id": .int(peer.connection),
                        "node_id": .string(peer.nodeID.hex),
                        "address": .string(HostPort(host: peer.host, port: peer.port).description),
                        "listen_port": .int(peer.listenPort),
                        "inbound": .bool(peer.inbound),
                        "connected_since": .int(Int(peer.connectedSince)),
                        "bytes_sent": .int(c.bytesSent),
                        "bytes_recv": .int(c.bytesReceived),
                        "messages_in": .int(peer.messagesIn),
                        "messages_out": .int(peer.messagesOut),
                        "score": .int(peer.score),
                        "ping_time": peer.pingTime.map { .number($0) } ?? .null,
                        "agent": .string(peer.agent),
                        "duplicates": .int(peer.duplicates),
                        "invalid": .int(peer.invalid),
                        "queue_dropped": .int(c.dropped),
                    ])
                })
        case "connect":
            guard let text = params["address"]?.stringValue else {
                throw AdminError.invalidParams("connect needs {\"address\": \"NODEID@HOST:PORT\"}")
            }
            let address: NodeAddress
            do { address = try NodeAddress(parsing: text) } catch { throw AdminError.invalidParams(error.description) }
            guard address.nodeID != keys.identity.publicKey else { throw AdminError.invalidParams("that is this node") }
            execute(engine.connect(to: address, now: now))
            return .object([
                "address": .string(address.description), "dialing": .bool(engine.pendingDials.contains(address.nodeID)),
            ])
        case "disconnect":
            let id = try nodeIDParam(params)
            let actions = engine.disconnect(peer: id)
            guard !actions.isEmpty else { throw AdminError.serverError("not connected to \(id.hex)") }
            execute(actions)
            return .object(["disconnected": .string(id.hex)])
        case "setban":
            let seconds = params["seconds"]?.numberValue ?? configuration.gossip.banDuration
            guard seconds > 0, seconds.isFinite else {
                throw AdminError.invalidParams("seconds must be a positive number (at most ten years is applied)")
            }
            let target: String
            if params["node_id"] != nil {
                target = "id:\(try nodeIDParam(params).hex)"
            } else if let ip = params["ip"]?.stringValue, !ip.isEmpty {
                // Connections are matched by address: a name would never match one.
                guard IPAddress(ip) != nil else {
                    throw AdminError.invalidParams("ip must be an IPv4 or IPv6 address, got '\(ip)'")
                }
                target = Ban.key(host: ip)
            } else {
                throw AdminError.invalidParams("setban needs node_id or ip, and optionally seconds")
            }
            let reason = params["reason"]?.stringValue ?? "banned by operator"
            execute(engine.ban(target: target, duration: seconds, reason: reason, now: now))
            saveBans()
            let until = engine.activeBans(now: now).first { $0.target == target }?.until ?? now
            return .object(["banned": .string(target), "until": .int(Int(until))])
        case "listbanned":
            return .array(
                engine.activeBans(now: now).map {
                    .object(["target": .string($0.target), "until": .int(Int($0.until)), "reason": .string($0.reason)])
                })
        case "listdiscouraged":
            // Misbehaving ids and hosts (in memory, newest first, at most `count`).
            return .array(
                engine.discouraged.recent(limit: Self.limit(params, default: 1_000), now: now).map {
                    .object(["target": .string($0.key), "until": .int(Int($0.until)), "reason": .string($0.reason)])
                })
        case "clearbanned":
            engine.clearBans()
            saveBans()  // an operator's change is on disk when the call returns
            return .object(["cleared": .bool(true)])
        case "getnettotals":
            let live = connections.values.map { $0.counters.withLock { $0 } }
            return .object([
                "total_bytes_sent": .int(closedTotals.sent + live.map(\.bytesSent).reduce(0, +)),
                "total_bytes_recv": .int(closedTotals.received + live.map(\.bytesReceived).reduce(0, +)),
                "connections": .int(engine.peers.count),
                "handshake_failures": .int(handshakeFailures),
                "pending_handshakes": .int(engine.pendingHandshakes),
                "time": .int(Int(now)),
            ])
        case "publish":
            guard configuration.gossip.testMessages else {
                throw AdminError.serverError("test messages are off here ([gossip] test_messages = true turns them on)")
            }
            guard let hex = params["payload_hex"]?.stringValue, let raw = try? Hex.decode(hex) else {
                throw AdminError.invalidParams("publish needs {\"payload_hex\": HEX}")
            }
            let payload = [Self.testTopic] + raw
            switch engine.publish(payload, now: now) {
            case .success(let actions):
                let id = GossipMessage.id(of: payload)
                recordDelivery(id)
                execute(actions)
                return .object(["id": .string(id.description), "peers": .int(engine.peers.count)])
            case .failure(let error):
                throw AdminError.serverError(error.description)
            }
        case "submittx":
            let submission = submit(hex: params["hex"]?.stringValue)
            finishSubmissions()
            switch submission {
            case .accepted(let tx): return .object(["id": .string(tx.id.hex)])
            case .notHex: throw AdminError.invalidParams("submittx needs {\"hex\": HEX of the encoded transaction}")
            case .rejected(let reason): throw AdminError.serverError(reason)
            }
        case "submittxs":
            // Many transactions in one call (load tools, wallets flushing a queue); each
            // is judged on its own, in order, so a later one may build on an earlier one.
            guard case .array(let items)? = params["txs"], items.count <= Self.maxSubmitBatch else {
                throw AdminError.invalidParams(
                    "submittxs needs {\"txs\": [HEX, …]} with at most \(Self.maxSubmitBatch) transactions")
            }
            var results: [JSONValue] = []
            var accepted = 0
            for item in items {
                switch submit(hex: item.stringValue) {
                case .accepted(let tx):
                    accepted += 1
                    results.append(.object(["id": .string(tx.id.hex)]))
                case .notHex: results.append(.object(["error": .string("not a hex string")]))
                case .rejected(let reason): results.append(.object(["error": .string(reason)]))
                }
            }
            finishSubmissions()
            return .object(["accepted": .int(accepted), "results": .array(results)])
        case "submitbatch":
            // The same as submittxs in one base64 string of length-prefixed encodings
            // (u32 BE length ‖ transaction, each) and a reply that names only failures:
            // no hex and no JSON per transaction, which cost a loaded node more than the
            // transactions' own checks.
            let usage = "submitbatch needs {\"txs\": BASE64 of (u32 BE length ‖ transaction)…}"
            guard let text = params["txs"]?.stringValue, let data = Data(base64Encoded: text) else {
                throw AdminError.invalidParams(usage)
            }
            var reader = WireReader([UInt8](data))
            var encodings: [[UInt8]] = []
            do {
                while reader.remaining > 0 {
                    guard encodings.count < Self.maxSubmitBatch else {
                        throw WireError("more than \(Self.maxSubmitBatch) transactions")
                    }
                    encodings.append(try reader.bytes32(max: Transaction.maxEncodedSize, "transaction"))
                }
            } catch {
                throw AdminError.invalidParams("\(usage): \(error)")
            }
            var errors: [JSONValue] = []
            for (index, encoded) in encodings.enumerated() {
                switch submit(encoded: encoded) {
                case .accepted: break
                case .notHex: break  // not reachable: the bytes are already binary
                case .rejected(let reason):
                    errors.append(.object(["index": .int(index), "error": .string(reason)]))
                }
            }
            finishSubmissions()
            return .object(["accepted": .int(encodings.count - errors.count), "errors": .array(errors)])
        case "getmempool":
            return .object([
                "count": .int(sync.dag.count),
                "pending": .int(sync.dag.pendingCount),
                "heads": .array(sync.dag.heads.map { .string($0.hex) }),
                "digest": .string(sync.dag.digest().hex),
                "chain_id": .string(configuration.chainID),
            ])
        case "gettx":
            guard let hex = params["id"]?.stringValue, let id = try? TxID(hex: hex) else {
                throw AdminError.invalidParams("gettx needs {\"id\": HEX}")
            }
            guard let tx = sync.dag.transaction(id) else {
                if let reason = sync.dag.rejection(id) {
                    throw AdminError.serverError("transaction \(hex) was rejected: \(reason)")
                }
                throw AdminError.serverError("no transaction \(hex)")
            }
            guard case .object(var out) = Self.json(tx) else { return Self.json(tx) }
            // Its execution results in committed blocks (code 0 = executed; see docs/state.md).
            let receipts = (try? consensus?.receipts(txID: id.bytes)) ?? []
            out["receipts"] = .array(
                receipts.map {
                    .object([
                        "height": .int($0.height), "index": .int($0.index), "code": .int($0.code),
                        "log": $0.log.map { .string($0) } ?? .null, "gas": .int($0.gas),
                        "result": $0.output.flatMap { try? JSONValue.parse($0) } ?? .null,
                    ])
                })
            return .object(out)
        case "getevidence":
            let limit = Self.limit(params, default: 100)
            return .object([
                "total": .int(evidenceTotal),
                "recent": .array(consensusEvidence.suffix(limit).map { $0.json }),
            ])
        case "getequivocations":
            return .array(
                sync.dag.equivocations.map {
                    .object([
                        "author": .string($0.author.hex), "seq": .int($0.seq),
                        "transactions": .array($0.transactions.map { .string($0.hex) }),
                    ])
                })
        case "getnextseq":
            guard let hex = params["author"]?.stringValue, let bytes = try? Hex.decode(hex),
                let author = try? Ed25519.PublicKey(rawRepresentation: bytes)
            else { throw AdminError.invalidParams("getnextseq needs {\"author\": HEX of an account key}") }
            return .object([
                "author": .string(author.hex), "next_seq": .int(sync.dag.nextSeq(for: author)),
                "heads": .array(
                    sync.predecessorsForNewTransaction(executed: latestExecutedState).map { .string($0.hex) }),
                "chain_id": .string(configuration.chainID),
            ])
        case "getgossipinfo":
            let limit = Self.limit(params, default: 100)
            return .object([
                "published": .int(engine.stats.published),
                "delivered": .int(deliveredTotal),
                "accepted_from_peers": .int(engine.stats.delivered),
                "duplicates": .int(engine.stats.duplicates),
                "rejected": .int(engine.stats.rejected),
                "ignored": .int(engine.stats.ignored),
                "recent": .array(recentDeliveries.suffix(max(0, limit)).map { .string($0) }),
            ])
        case "getaddrbook":
            return .array(
                engine.addressBook.allEntries.map {
                    .object([
                        "address": .string($0.address), "tried": .bool($0.tried), "failures": .int($0.failures),
                        "persistent": .bool($0.persistent),
                    ])
                })
        case "getstatus":
            guard let host = consensus else {
                throw AdminError.serverError("this node runs without a genesis file: no consensus")
            }
            let core = host.core
            return .object([
                "epoch": .int(core.config.epoch),
                "round": .int(core.currentRound),
                "leader": .string(core.leader(of: core.currentRound).hex),
                "committed_height": .int(host.committedHeight),
                "committed_block_id": .string(core.committedBlockID.hex),
                "commit_state_id": .string(host.committedState.root.hex),
                "state_keys": .int(host.committedState.tree.count),
                "highest_qc_round": .int(core.highQC.round),
                "validator": .bool(host.isValidator),
                "validators": .array(core.config.validators.validators.map { .string($0.id.hex) }),
                "syncing": .bool(host.catchUp.syncing),
                "sync_target": .int(host.catchUp.target),
                "catch_up": .object([
                    "blocks": .int(host.catchUpTotals.blocks), "transactions": .int(host.catchUpTotals.transactions),
                    "seconds": .number(host.catchUpTotals.seconds),
                ]),
                "failed_transactions": .int(host.failedTransactions),
                "committed_transactions": .int(host.committedTransactions),
                "last_checkpoint": checkpoint?.follower.last.map {
                    .object([
                        "txid": .string($0.txid), "epoch": .int($0.epoch), "round": .int($0.round),
                        "commit_state_id": .string($0.commitStateID),
                        "bitcoin_height": $0.bitcoinHeight.map { .int($0) } ?? .null,
                    ])
                } ?? .null,
            ])
        case "getcheckpoints":
            guard let host = checkpoint else {
                throw AdminError.serverError(
                    "checkpointing is off here (needs a genesis with checkpoint.coin and [bitcoin] esplora)")
            }
            let tip = host.bitcoinTip
            func row(_ r: CheckpointFollower.Record, status: String) -> JSONValue {
                .object([
                    "txid": .string(r.txid), "epoch": .int(r.epoch), "round": .int(r.round),
                    "commit_state_id": .string(r.commitStateID), "initiator": r.initiator.map { .string($0) } ?? .null,
                    "status": .string(status), "bitcoin_height": r.bitcoinHeight.map { .int($0) } ?? .null,
                    "height": r.height.map { .int($0) } ?? .null,
                    "confirmations": .int(r.bitcoinHeight.flatMap { h in tip.map { max(0, $0 - h + 1) } } ?? 0),
                    "signatures": .int(r.signatures), "fee": .int(r.fee), "psbt": r.psbt.map { .string($0) } ?? .null,
                ])
            }
            let f = host.follower
            let left = consensus.flatMap { host.checkpointsLeft(chain: $0) }
            let pending: [JSONValue] =
                f.unconfirmed.map { [row($0, status: $0.bitcoinHeight == nil ? "mempool" : "confirming")] } ?? []
            let rows: [JSONValue] = f.records.map { row($0, status: "confirmed") } + pending
            return .object([
                // "ok", or "halted" when a buried spend broke the rules (alarm says which).
                "status": .string(host.halted ? "halted" : "ok"),
                "alarm": f.alarm.map { .string($0) } ?? .null,
                "coin": .string("\(f.coinTxid):\(f.coinVout)"), "coin_value": .int(f.coinValue),
                "coin_epoch": .int(f.coinEpoch), "bitcoin_height": tip.map { .int($0) } ?? .null,
                "confirmations_required": .int(host.depth),
                "checkpoints_left": left.map { .int($0) } ?? .null,
                "fee_rate": .number(host.feeRate),
                "fee_rate_override": host.feeRateOverride.map { .number($0) } ?? .null,
                "checkpoints": .array(rows),
            ])
        case "setcheckpointfeerate":
            guard var host = checkpoint else { throw AdminError.serverError("checkpointing is off here") }
            // {"rate": X} sets the operator's rate; {"rate": null} or {} goes back to the estimate.
            switch params["rate"] {
            case nil, .null?:
                host.feeRateOverride = nil
            case let value?:
                guard let rate = value.numberValue, rate > 0, rate.isFinite else {
                    throw AdminError.invalidParams("rate must be a positive number of sat/vB, or null")
                }
                host.feeRateOverride = rate
            }
            do { try files.saveFeeRateOverride(host.feeRateOverride) } catch {
                throw AdminError.serverError("cannot save the fee rate: \(error)")
            }
            checkpoint = host
            return .object([
                "fee_rate": .number(host.feeRate), "override": host.feeRateOverride.map { .number($0) } ?? .null,
                "bounds": .array([.number(host.settings.policy.minFeeRate), .number(host.settings.policy.maxFeeRate)]),
            ])
        case "getblock":
            guard let host = consensus else {
                throw AdminError.serverError("this node runs without a genesis file: no consensus")
            }
            guard let height = Self.count(params, "height"), height >= 1 else {
                throw AdminError.invalidParams("getblock needs {\"height\": N ≥ 1}")
            }
            guard let stored = try? host.committedBlock(height: height),
                let block = try? Block.decode(stored.block),
                let qc = try? QuorumCert.decode(stored.commitQC)
            else { throw AdminError.serverError("no committed block at height \(height)") }
            return .object([
                "height": .int(stored.height),
                "block_id": .string(block.id.hex),
                "round": .int(block.round),
                "epoch": .int(block.epoch),
                "author": .string(block.author.hex),
                "parent_id": .string(block.parentID.hex),
                "state_id": .string(stored.stateID.hex),
                "transactions": .array(
                    block.payload.compactMap { try? Transaction.decode($0).id.hex }.map { .string($0) }),
                "qc": .object(["round": .int(block.qc.round), "signers": .int(block.qc.signatures.count)]),
                "commit_proof": .object([
                    "round": .int(qc.round), "epoch": .int(qc.commitInfo.epoch),
                    "commit_state_id": .string(qc.commitInfo.commitStateID?.hex ?? ""),
                    "signers": .array(qc.signatures.map { .string($0.signer.hex) }),
                ]),
            ])
        case "getbalance":
            guard let host = consensus else {
                throw AdminError.serverError("this node runs without a genesis file: no consensus")
            }
            guard let hex = params["account"]?.stringValue, let bytes = try? Hex.decode(hex),
                let account = try? Ed25519.PublicKey(uncheckedRawRepresentation: bytes)
            else { throw AdminError.invalidParams("getbalance needs {\"account\": HEX}") }
            return .object([
                "account": .string(account.hex), "balance": .int(host.committedState.balance(of: account)),
                "seq": .int(host.committedState.seq(of: account)), "height": .int(host.committedHeight),
            ])
        case "getaccount":
            guard let host = consensus else {
                throw AdminError.serverError("this node runs without a genesis file: no consensus")
            }
            guard let hex = params["account"]?.stringValue, let bytes = try? Hex.decode(hex),
                let account = try? Ed25519.PublicKey(uncheckedRawRepresentation: bytes)
            else { throw AdminError.invalidParams("getaccount needs {\"account\": HEX, \"proof\": BOOL}") }
            let state = host.committedState
            var out: [String: JSONValue] = [
                "account": .string(account.hex), "exists": .bool(state.account(account) != nil),
                "balance": .int(state.balance(of: account)), "seq": .int(state.seq(of: account)),
                "height": .int(host.committedHeight), "state_id": .string(state.root.hex),
            ]
            if params["proof"] == .bool(true) {
                let certified: CertifiedProof
                do { certified = try host.certifiedProof(key: StateKey.account(account.rawRepresentation)) } catch {
                    throw AdminError.serverError("\(error)")
                }
                out["proof"] = .object([
                    "format": .string("sidenode-certified-proof/1"), "hex": .string(certified.encoded.hex),
                    "epoch": .int(certified.root.epoch), "signers": .int(certified.root.commitQC.signatures.count),
                ])
            }
            return .object(out)
        case _ where ContractAdmin.methods.contains(method):
            guard let host = consensus else {
                throw AdminError.serverError("this node runs without a genesis file: no consensus")
            }
            return try ContractAdmin.call(
                method, params, state: host.committedState, height: host.committedHeight, engine: contracts,
                certify: { try host.certifiedProof(key: $0) })
        case "getepoch":
            guard let host = consensus else {
                throw AdminError.serverError("this node runs without a genesis file: no consensus")
            }
            if params["epoch"] != nil, Self.count(params, "epoch") == nil {
                throw AdminError.invalidParams("getepoch needs {\"epoch\": N} (a whole number)")
            }
            let n = Self.count(params, "epoch") ?? host.core.config.epoch
            guard let record = try? host.epochRecord(n), let system = try? SystemState.decode(record.system) else {
                throw AdminError.serverError("no epoch \(n) on this node (current: \(host.core.config.epoch))")
            }
            var proof: JSONValue = .null
            if let bytes = record.proof, let decoded = try? EpochChangeProof.decode(bytes) {
                let qc = decoded.commitQC
                proof = .object([
                    "suffix_blocks": .int(decoded.suffix.count), "commit_round": .int(qc.round),
                    "commit_state_id": .string(qc.commitInfo.commitStateID?.hex ?? ""),
                    "signers": .array(qc.signatures.map { .string($0.signer.hex) }), "hex": .string(bytes.hex),
                ])
            }
            return .object([
                "epoch": .int(record.epoch),
                "validators": .array(
                    system.validators.map {
                        .object([
                            "node_id": .string($0.id.hex), "power": .int($0.power),
                            "bitcoin_xonly": .string($0.bitcoinKey.hex),
                        ])
                    }),
                "total_power": .int(system.totalPower), "quorum_power": .int(system.quorumPower),
                "epoch_length": .int(system.epochLength),
                "first_height": .int(record.startHeight),
                "last_height": record.endHeight.map { .int($0) } ?? .null,
                "builds_on_block": .string(record.genesisBlock.hex),
                "start_state_id": .string(record.genesisState.hex),
                "proof": proof,
            ])
        case "approvevalidatorchange":
            // The operator's consent, given through the local socket: this validator signs.
            guard let host = consensus else {
                throw AdminError.serverError("this node runs without a genesis file: no consensus")
            }
            guard let hex = params["change"]?.stringValue, let bytes = try? Hex.decode(hex),
                let change = try? ValidatorChange.decode(bytes)
            else {
                throw AdminError.invalidParams("approvevalidatorchange needs {\"change\": HEX of a validator change}")
            }
            guard host.isValidator else { throw AdminError.serverError("this node is not a validator of this epoch") }
            guard change.epoch == host.core.config.epoch else {
                throw AdminError.serverError(
                    "the change is for epoch \(change.epoch); this node is in epoch \(host.core.config.epoch)")
            }
            let approval = change.approve(chainID: configuration.chainID, key: keys.identity)
            return .object([
                "validator": .string(approval.validator.hex),
                "signature": .string(approval.signature.rawRepresentation.hex),
                "change": Self.json(change),
            ])
        case "submitvalidatorchange":
            guard consensus != nil else {
                throw AdminError.serverError("this node runs without a genesis file: no consensus")
            }
            guard let hex = params["change"]?.stringValue, let bytes = try? Hex.decode(hex),
                let change = try? ValidatorChange.decode(bytes), let list = params["approvals"]?.arrayValue
            else {
                throw AdminError.invalidParams(
                    "submitvalidatorchange needs {\"change\": HEX, \"approvals\": [{\"validator\": HEX, \"signature\": HEX}]}"
                )
            }
            var approvals: [ValidatorChange.Approval] = []
            for item in list {
                guard let v = item["validator"]?.stringValue, let sig = item["signature"]?.stringValue,
                    let approval = ValidatorChange.Approval(validatorHex: v, signatureHex: sig)
                else { throw AdminError.invalidParams("an approval needs a validator key and a 64-byte signature") }
                approvals.append(approval)
            }
            // The node's own key authors the carrying transaction (fee 0): approvals, not
            // the author, authorise the change.
            let author = keys.identity
            let tx = Transaction(
                chainID: configuration.chainID, author: author, seq: sync.dag.nextSeq(for: author.publicKey), fee: 0,
                payload: .validatorChange(change, approvals: approvals),
                predecessors: sync.predecessorsForNewTransaction(executed: latestExecutedState))
            let submission = submit(hex: tx.encoded.hex)
            finishSubmissions()
            switch submission {
            case .accepted(let accepted):
                return .object(["txid": .string(accepted.id.hex), "change": Self.json(change)])
            case .notHex: throw AdminError.serverError("internal: transaction did not encode")
            case .rejected(let reason): throw AdminError.serverError(reason)
            }
        case "stop":
            // The admin server calls requestStop() once this response is written.
            return .object(["stopping": .bool(true)])
        default:
            throw AdminError.methodNotFound(method)
        }
    }

    static func json(_ change: ValidatorChange) -> JSONValue {
        var fields: [String: JSONValue] = [
            "epoch": .int(change.epoch), "node_id": .string(change.validator.hex), "hex": .string(change.encoded.hex),
        ]
        switch change.operation {
        case .add(let power, let key):
            fields["operation"] = .string("add")
            fields["power"] = .int(power)
            fields["bitcoin_xonly"] = .string(key.hex)
        case .remove:
            fields["operation"] = .string("remove")
        case .setBitcoinKey(let key):
            fields["operation"] = .string("set-btc-key")
            fields["bitcoin_xonly"] = .string(key.hex)
        }
        return .object(fields)
    }

    static func json(_ tx: Transaction) -> JSONValue {
        let payload: JSONValue
        switch tx.payload {
        case .transfer(let to, let amount):
            payload = .object(["type": .string("transfer"), "to": .string(to.hex), "amount": .int(amount)])
        case .data(let bytes):
            payload = .object(["type": .string("data"), "data_hex": .string(bytes.hex)])
        case .validatorChange(let change, let approvals):
            payload = .object([
                "type": .string("validator_change"), "change": json(change),
                "approvals": .array(approvals.map { .string($0.validator.hex) }),
            ])
        case .contract(let msg):
            payload = json(msg)
        }
        return .object([
            "id": .string(tx.id.hex), "chain_id": .string(tx.chainID), "author": .string(tx.author.hex),
            "seq": .int(tx.seq), "fee": .int(tx.fee), "payload": payload,
            "predecessors": .array(tx.predecessors.map { .string($0.hex) }), "hex": .string(tx.encoded.hex),
        ])
    }

    static func json(_ msg: ContractMsg) -> JSONValue {
        func text(_ bytes: [UInt8]) -> JSONValue { .string(String(decoding: bytes, as: UTF8.self)) }
        switch msg {
        case .storeCode(let wasm, let gas):
            return .object([
                "type": .string("store_code"), "checksum": .string(SHA256.hash(wasm).hex), "size": .int(wasm.count),
                "gas_limit": .int(gas),
            ])
        case .instantiate(let codeID, let admin, let label, let m, let funds, let gas):
            return .object([
                "type": .string("instantiate"), "code_id": .int(codeID),
                "admin": admin.map { .string($0.hex) } ?? .null,
                "label": .string(label), "msg": text(m), "funds": .int(funds), "gas_limit": .int(gas),
            ])
        case .execute(let contract, let m, let funds, let gas):
            return .object([
                "type": .string("execute"),
                "contract": .string(ContractAddressFormat.humanize(contract) ?? contract.hex),
                "msg": text(m), "funds": .int(funds), "gas_limit": .int(gas),
            ])
        case .migrate(let contract, let codeID, let m, let gas):
            return .object([
                "type": .string("migrate"),
                "contract": .string(ContractAddressFormat.humanize(contract) ?? contract.hex),
                "code_id": .int(codeID), "msg": text(m), "gas_limit": .int(gas),
            ])
        }
    }

    private func nodeIDParam(_ params: JSONValue) throws(AdminError) -> PeerID {
        guard let hex = params["node_id"]?.stringValue, let bytes = try? Hex.decode(hex),
            let key = try? Ed25519.PublicKey(rawRepresentation: bytes)
        else { throw AdminError.invalidParams("node_id must be 64 hex digits of a node's public key") }
        return key
    }
}

public enum NodeVersion {
    public static let string = "0.1.0"
}

/// Ends the process if stopping takes longer than `seconds`: swift-corelibs-foundation's
/// URLSession can deadlock when an esplora request is cancelled just as it completes
/// (seen once in the multi-process tests: the node never exited on SIGTERM). Every write
/// the node made is already durable, so exiting then is no worse than `kill -9`, which
/// the node recovers from; a stop that finishes in time disarms it.
final class ShutdownWatchdog: Sendable {
    private let done = Atomic<Bool>(false)

    init(seconds: Double, logger: Logger) {
        let thread = Thread { [self] in
            Thread.sleep(forTimeInterval: seconds)
            guard !self.done.load(ordering: .acquiring) else { return }
            logger.critical("the node did not stop within \(Int(seconds)) s; exiting")
            exit(3)
        }
        thread.start()
    }

    func disarm() { done.store(true, ordering: .releasing) }
}
