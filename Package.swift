// swift-tools-version:6.1
import PackageDescription

// Every Swift target builds in Swift 6 language mode with strict concurrency;
// ExistentialAny keeps `any` explicit so protocol-typed values stand out.
let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny")
]
// The consensus simulator runs tens of thousands of rounds per test: the modules it
// spends its time in are optimized in debug builds too (still built for testing), which
// keeps the test suite's run time in CI down. Debugging them needs `-c release -g` anyway.
let hot: [SwiftSetting] = strict + [.unsafeFlags(["-O"], .when(configuration: .debug))]

let package = Package(
    name: "SideNode",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "p2pnode", targets: ["p2pnode"]),
        .library(name: "NodeCrypto", targets: ["NodeCrypto"]),
        .library(name: "Bitcoin", targets: ["Bitcoin"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        // The contract VM: a Wasm interpreter with fuel metering. Its fuel prices and stack
        // layout are consensus parameters (gas), so the version is pinned exactly.
        .package(url: "https://github.com/swiftwasm/WasmKit", exact: "0.4.2"),
    ],
    targets: [
        // C libraries, reached only through NodeCrypto.
        .systemLibrary(
            name: "CSodium",
            pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"])]
        ),
        .systemLibrary(
            name: "CSecp256k1",
            pkgConfig: "libsecp256k1",
            providers: [.apt(["libsecp256k1-dev"])]
        ),
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        .target(
            name: "NodeCrypto",
            dependencies: ["CSodium", "CSecp256k1"],
            swiftSettings: hot
        ),
        .target(
            name: "Noise",
            dependencies: ["NodeCrypto"],
            swiftSettings: strict
        ),
        .target(
            name: "Wire",
            swiftSettings: hot
        ),
        .target(
            name: "Gossip",
            dependencies: ["NodeCrypto", "Wire"],
            swiftSettings: strict
        ),
        .target(
            name: "Ledger",
            dependencies: [
                "NodeCrypto", "Wire", "StateTree", .product(name: "HashTreeCollections", package: "swift-collections"),
            ],
            swiftSettings: strict
        ),
        // The authenticated versioned state: a sparse Merkle tree whose root is the state id.
        .target(
            name: "StateTree",
            dependencies: ["NodeCrypto", "Wire"],
            swiftSettings: hot
        ),
        .target(
            name: "Bitcoin",
            dependencies: ["NodeCrypto"],
            swiftSettings: strict
        ),
        .target(
            name: "Checkpoint",
            dependencies: ["Bitcoin", "Consensus", "NodeCrypto", "Wire"],
            swiftSettings: strict
        ),
        .target(
            name: "Esplora",
            swiftSettings: strict
        ),
        .target(
            name: "Storage",
            dependencies: ["CSQLite"],
            swiftSettings: strict
        ),
        .target(
            name: "Consensus",
            dependencies: ["NodeCrypto", "Wire"],
            swiftSettings: hot
        ),
        // Snapshot sync: manifests proved from the genesis, chunks proved against the root.
        .target(
            name: "StateSync",
            dependencies: ["Consensus", "Ledger", "StateTree", "Wire"],
            swiftSettings: strict
        ),
        // The application behind consensus: blocks run on the ledger (BlockExecution).
        .target(
            name: "Execution",
            dependencies: ["Consensus", "Ledger", "NodeCrypto"],
            swiftSettings: strict
        ),
        // CosmWasm contracts (interface_version_8) on WasmKit: the host, upload checks, gas,
        // and the wasm/ module's message handling (ContractEngine for the ledger).
        .target(
            name: "Contracts",
            dependencies: [
                "Ledger", "NodeCrypto", "Wire", "Bitcoin",
                .product(name: "WasmKit", package: "WasmKit"),
                .product(name: "WasmParser", package: "WasmKit"),
                .product(name: "WAT", package: "WasmKit"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "Node",
            dependencies: [
                "Consensus",
                "Contracts",
                "StateTree",
                "StateSync",
                "Execution",
                "Ledger",
                "Storage",
                "NodeCrypto",
                "Noise",
                "Gossip",
                "Wire",
                "Bitcoin",
                "Checkpoint",
                "Esplora",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "NodeCLI",
            dependencies: [
                "Node",
                "Contracts",
                "Bitcoin",
                "Checkpoint",
                "Esplora",
                "NodeCrypto",
                "Gossip",
                "Ledger",
                "StateTree",
                "StateSync",
                "Consensus",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "p2pnode",
            dependencies: ["NodeCLI"],
            swiftSettings: strict
        ),
        // The node with a test misbehaviour switched on (CheckpointFault): built for the
        // end-to-end tests only, never installed.
        .executableTarget(
            name: "p2pnode-faulty",
            dependencies: ["NodeCLI", "Node"],
            path: "Tests/FaultyNode",
            swiftSettings: strict
        ),
        // Shared by the test targets: vector loading, temporary directories.
        // Every decoder that reads outside bytes, as one-input functions: libFuzzer drives
        // them (Fuzz/, scripts/fuzz.sh); FuzzTargetsTests replays the corpus in every test run.
        .target(
            name: "FuzzTargets",
            dependencies: [
                "Bitcoin", "Checkpoint", "Consensus", "Contracts", "Esplora", "Gossip", "Ledger", "Node", "NodeCrypto",
                "Noise", "StateSync", "StateTree", .product(name: "WAT", package: "WasmKit"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "TestSupport",
            path: "Tests/TestSupport",
            swiftSettings: strict
        ),
        .testTarget(
            name: "NodeCryptoTests",
            dependencies: ["NodeCrypto", "TestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "NoiseTests",
            dependencies: ["Noise", "NodeCrypto", "TestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "GossipTests",
            dependencies: ["Gossip", "Wire", "NodeCrypto", "TestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "LedgerTests",
            dependencies: ["Ledger", "StateTree", "Wire", "NodeCrypto", "TestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "StateSyncTests",
            dependencies: ["StateSync", "StateTree", "Consensus", "Ledger", "NodeCrypto", "Wire", "TestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "StateTreeTests",
            dependencies: ["StateTree", "Wire", "TestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "BitcoinTests",
            dependencies: ["Bitcoin", "NodeCrypto", "TestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "CheckpointTests",
            dependencies: ["Checkpoint", "Bitcoin", "Consensus", "NodeCrypto", "Wire"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "StorageTests",
            dependencies: ["Storage", "TestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ConsensusTests",
            dependencies: [
                "Consensus", "Wire", "NodeCrypto", "TestSupport",
                .product(name: "HeapModule", package: "swift-collections"),
            ],
            swiftSettings: hot
        ),
        .testTarget(
            name: "ContractsTests",
            dependencies: ["Contracts", "Ledger", "NodeCrypto", "Wire", "TestSupport"],
            exclude: ["Examples"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ExecutionTests",
            dependencies: ["Execution", "Consensus", "Ledger", "NodeCrypto", "TestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "NodeTests",
            dependencies: [
                "Node", "NodeCrypto", "TestSupport", "Consensus", "Ledger", "Storage", "StateTree", "StateSync",
                "Execution",
            ],
            swiftSettings: strict
        ),
        // Real p2pnode processes on loopback; slower, so kept apart from the unit tests.
        .testTarget(
            name: "NodeIntegrationTests",
            dependencies: [
                "Node", "Consensus", "Noise", "NodeCrypto", "Gossip", "Ledger", "Bitcoin", "Esplora", "Checkpoint",
                "TestSupport",
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "FuzzTargetsTests",
            dependencies: ["FuzzTargets", "TestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "NodeCLITests",
            dependencies: ["NodeCLI", "Node", "TestSupport"],
            swiftSettings: strict
        ),
    ]
)

// The libFuzzer binary exists only for scripts/fuzz.sh (SIDENODE_FUZZ=1): libFuzzer
// supplies its `main`, so an ordinary build could not link it. The executable is a C
// target so SwiftPM adds no Swift entry point; the Swift callback lives in FuzzEntry.
if Context.environment["SIDENODE_FUZZ"] != nil {
    package.targets += [
        .target(name: "FuzzEntry", dependencies: ["FuzzTargets"], path: "Fuzz/FuzzEntry", swiftSettings: strict),
        .executableTarget(name: "SideNodeFuzz", dependencies: ["FuzzEntry"], path: "Fuzz/SideNodeFuzz"),
    ]
}
