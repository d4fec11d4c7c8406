import Testing

@testable import NodeCLI

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
        /// The lookup of `mallopt` through dlsym works (without it the node would silently
        /// keep glibc's defaults). Its effect is not checked here: in a test process that
        /// has already allocated, a large block may come from an arena's free space
        /// whatever the threshold; the soak's malloc_stats showed the node with 2 arenas.
        @Test func malloptIsFoundAndAccepted() {
            #expect(
                AllocatorTuning.apply(environment: [:], cores: 2) == [
                    AllocatorTuning.arenaMax(cores: 2), AllocatorTuning.mmapThreshold,
                ])
        }
    #endif
}
