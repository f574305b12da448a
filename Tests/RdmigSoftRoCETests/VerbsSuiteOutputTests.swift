import Testing

/// The parsing the Soft-RoCE test relies on, against output shaped like a real run's.
@Suite struct VerbsSuiteOutputTests {
    static let passingRun = """
        rdmig softroce guest: rxe0 ACTIVE on eth0 10.0.2.15 mtu 9000, 3.10 s after boot
        == step conformance
        transport conformance: backend verbs on 10.0.2.15 (verbs forced by configuration)
        PASS connectAndAcceptGiveAConnectedPair (231 ms)
        SKIP ipv6LoopbackWorks: the environment's host 10.0.2.15 is not IPv4 loopback
        PASS largeTransferArrivesByteForByte (313 ms)
        2 passed, 0 failed, 1 skipped
        -- step conformance: PASS (4.0 s)
        == step conformance-busy-poll
        transport conformance: backend verbs on 10.0.2.15, completion busy-poll (verbs forced by configuration)
        PASS connectAndAcceptGiveAConnectedPair (201 ms)
        FAIL largeTransferArrivesByteForByte: timed out
        1 passed, 1 failed, 0 skipped
        -- step conformance-busy-poll: FAIL (exit 1, 3.0 s)
        == step bandwidth
        round 1: rdmig 82.320 MiB/s (plain TCP pump 28.417 MiB/s), ib_write_bw 48.55 MiB/s
        verbs-vs-ib_write_bw: rdmig 82.3 MiB/s, ib_write_bw 43.2 MiB/s, ratio 1.90 (medians of 3 rounds of 64MiB in 64 KiB writes; best round each: 99.2 and 48.6 MiB/s, ratio 2.04)
        -- step bandwidth: PASS (20.5 s)
        == step migration
        migration over rxe: completed, verified, downtime 101.9 ms, total 14980 ms, 24 iterations (setup 5441 ms, 93.5 MiB sent; 128 MiB guest, 16 MiB/s dirtied, ib-sw VF; rdmig debug build)
        -- step migration: PASS (16.1 s)
        == step extra.sh
        PASS someOtherCase (1 ms)
        1 passed, 0 failed, 0 skipped
        -- step extra.sh: FAIL (exit 1, 0.2 s)
        verbs suite in the guest: 3 steps passed, 2 failed: conformance-busy-poll extra.sh
        rdmig softroce verbs suite: FAIL: verbs suite in the guest: 3 steps passed, 2 failed: conformance-busy-poll extra.sh (conformance: 2 passed, 0 failed, 1 skipped; rdmig/ib_write_bw: 1.90; 33 s in all)
        """

    @Test func conformanceTotalsComeFromTheConformanceStepNotFromLaterSteps() {
        let output = VerbsSuiteOutput(Self.passingRun)
        #expect(output.conformanceTotals == .init(passed: 2, failed: 0, skipped: 1))
        #expect(output.conformanceCases == [
            "connectAndAcceptGiveAConnectedPair": .pass,
            "ipv6LoopbackWorks": .skip,
            "largeTransferArrivesByteForByte": .pass,
        ])
        #expect(output.conformanceCases(inStep: "conformance-busy-poll") == [
            "connectAndAcceptGiveAConnectedPair": .pass,
            "largeTransferArrivesByteForByte": .fail,
        ])
    }

    @Test func ratioLineAndStepVerdictsAreRead() {
        let output = VerbsSuiteOutput(Self.passingRun)
        #expect(output.bandwidth == .init(rdmig: 82.3, ibWriteBW: 43.2, ratio: 1.90))
        #expect(output.steps == [
            "conformance": .pass, "conformance-busy-poll": .fail, "bandwidth": .pass, "migration": .pass, "extra.sh": .fail,
        ])
        #expect(output.verdict?.verdict == .fail)
    }

    @Test func migrationLineIsReadOnlyWhenCompletedAndVerified() {
        #expect(VerbsSuiteOutput(Self.passingRun).migration == .init(downtime: 101.9, totalTime: 14980, iterations: 24))
        let failed = "rdmig source: exit 1, status failed, verified false; its report and log:\n-- step migration: FAIL (exit 1, 9.0 s)\n"
        #expect(VerbsSuiteOutput(failed).migration == nil)
        #expect(VerbsSuiteOutput(failed).steps == ["migration": .fail])
    }

    @Test func aSkipCarriesItsReason() {
        let output = VerbsSuiteOutput("rdmig softroce verbs suite: SKIP: QEMU cannot start here: qemu-system-x86_64 is not installed\n")
        #expect(output.verdict?.verdict == .skip)
        #expect(output.verdict?.detail == "QEMU cannot start here: qemu-system-x86_64 is not installed")
        #expect(output.conformanceTotals == nil)
        #expect(output.bandwidth == nil)
        #expect(output.migration == nil)
    }
}
