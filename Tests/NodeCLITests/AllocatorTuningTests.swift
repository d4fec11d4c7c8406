import Testing

@testable import NodeCLI

#if canImport(Glibc)
    import Glibc
#endif

@Suite("allocator tuning")
struct AllocatorTuningTests {
    @Test func bothSettingsApplyByDefault() {
        #expect(
            AllocatorTuning.settings(environment: [:], cores: 2) == [
                AllocatorTuning.arenaMax(cores: 2), AllocatorTuning.mmapThreshold,
            ])
        // glibc's own numbers for M_ARENA_MAX and M_MMAP_THRESHOLD (malloc.h).
        #expect(AllocatorTuning.arenaMax(cores: 2).option == -8)
        #expect(AllocatorTuning.mmapThreshold.option == -3)
    }

    @Test func arenasFollowTheCoresWithinBounds() {
        #expect([1, 2, 4, 8, 64].map { AllocatorTuning.arenaMax(cores: $0).value } == [2, 2, 4, 8, 8])
    }

    @Test func anOperatorsSettingWins() {
        let threshold = [AllocatorTuning.mmapThreshold]
        let arenas = [AllocatorTuning.arenaMax(cores: 4)]
        #expect(AllocatorTuning.settings(environment: ["MALLOC_ARENA_MAX": "8"], cores: 4) == threshold)
        #expect(AllocatorTuning.settings(environment: ["MALLOC_MMAP_THRESHOLD_": "0"], cores: 4) == arenas)
        #expect(
            AllocatorTuning.settings(environment: ["GLIBC_TUNABLES": "glibc.malloc.arena_max=3"], cores: 4) == threshold
        )
        #expect(
            AllocatorTuning.settings(
                environment: ["GLIBC_TUNABLES": "glibc.malloc.tcache_count=0:glibc.malloc.mmap_threshold=65536"],
                cores: 4) == arenas)
        #expect(
            AllocatorTuning.settings(
                environment: ["MALLOC_ARENA_MAX": "4", "MALLOC_MMAP_THRESHOLD_": "65536"], cores: 4
            ).isEmpty)
        // An empty variable is glibc's default, not a choice: the node still tunes.
        #expect(AllocatorTuning.settings(environment: ["MALLOC_ARENA_MAX": ""], cores: 4).count == 2)
    }

    #if canImport(Glibc)
        /// mallopt answers 1 even for an option it does not know, so the test looks at what
        /// the allocator does: with glibc's dynamic threshold, freeing a 4 MiB mapped block
        /// makes the next 1 MiB block come from an arena; with the node's fixed threshold it
        /// is mapped. glibc marks a mapped chunk with bit 1 of the size word before it.
        @Test func largeBlocksStayMappedAfterALargeFree() throws {
            #expect(
                AllocatorTuning.apply(environment: [:], cores: 2) == [
                    AllocatorTuning.arenaMax(cores: 2), AllocatorTuning.mmapThreshold,
                ])
            func isMapped(_ pointer: UnsafeMutableRawPointer) -> Bool {
                pointer.load(fromByteOffset: -MemoryLayout<UInt>.size, as: UInt.self) & 2 != 0
            }
            let large = try #require(malloc(4 << 20))
            #expect(isMapped(large))
            free(large)
            let next = try #require(malloc(1 << 20))
            defer { free(next) }
            #expect(isMapped(next))
        }
    #endif
}
