#if canImport(Glibc)
import Glibc
#endif
@testable import RdmigChannels
import RdmigSystem
import RdmigTransport
import Testing

/// A source region with known contents, the destination's copy (pre-filled with 0xEE so that
/// unwritten and un-zeroed pages show), and the page channel's view of both.
final class PageTestRegions: @unchecked Sendable {
    static let pageSize = 4096
    let pageCount: Int
    let source: TestMemory
    let destination: TestMemory
    let region: PageChannel.Region

    init(_ peers: LoopbackPeers, pageCount: Int, zeroPages: Set<Int>) throws {
        self.pageCount = pageCount
        source = TestMemory(count: pageCount * Self.pageSize)
        destination = TestMemory(count: pageCount * Self.pageSize, fill: 0xEE)
        for page in 0..<pageCount where !zeroPages.contains(page) {
            let base = source.bytes.baseAddress! + page * Self.pageSize
            for word in 0..<(Self.pageSize / 8) {
                base.storeBytes(of: UInt64(page) << 32 | UInt64(word) | 1, toByteOffset: word * 8, as: UInt64.self)
            }
        }
        let sourceRegistration = try peers.source.register(source.bytes, access: [.localWrite])
        let destinationRegistration = try peers.destination.register(destination.bytes, access: [.localWrite, .remoteWrite])
        // The destination announces its window the way a migration does.
        try peers.destinationControl.send(MigrationMessage.windows(.init(regions: [.init(regionID: 5, window: destinationRegistration.window())])))
        guard case .windows(let windows) = try peers.sourceControl.receive(timeout: .seconds(5)) else {
            throw ChannelError.protocolViolation(detail: "expected WINDOWS")
        }
        region = try PageChannel.Region(id: 5, memory: UnsafeRawBufferPointer(source.bytes), registration: sourceRegistration,
                                        peerWindow: windows.regions[0].window, pageSize: Self.pageSize)
        peers.keepUntilClosed(self)
    }

    func page(_ memory: TestMemory, _ page: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: memory.bytes[(page * Self.pageSize)..<((page + 1) * Self.pageSize)])
    }

    func destinationPageEqualsSource(_ index: Int) -> Bool {
        memcmp(page(source, index).baseAddress!, page(destination, index).baseAddress!, Self.pageSize) == 0
    }

    func destinationPageIsUntouched(_ index: Int) -> Bool {
        page(destination, index).allSatisfy { $0 == 0xEE }
    }
}

/// What the destination saw of one iteration.
struct ReceivedIteration: Sendable {
    var zeroPagesApplied: UInt64 = 0
    var zeroPageMessages = 0
    var done: MigrationMessage.IterationDone?
}

@Suite(.serialized) struct PageChannelOverTCP {
    /// The destination's side of an iteration: apply ZERO_PAGES until ITERATION_DONE.
    static func receiveIteration(_ peers: LoopbackPeers, _ regions: PageTestRegions,
                                 atIterationDone check: (ReceivedIteration) -> Void = { _ in }) throws -> ReceivedIteration {
        var received = ReceivedIteration()
        while received.done == nil {
            switch try peers.destinationControl.receive(timeout: .seconds(20)) {
            case .zeroPages(let message):
                #expect(message.regionID == 5)
                received.zeroPagesApplied += try PageChannel.applyZeroPages(message, to: regions.destination.bytes,
                                                                            pageSize: PageTestRegions.pageSize)
                received.zeroPageMessages += 1
            case .iterationDone(let done):
                received.done = done
                check(received)
            case let other:
                throw ChannelError.protocolViolation(detail: "unexpected \(other.wireName) during an iteration")
            }
        }
        return received
    }

    @Test func aSparseDirtySetArrivesCoalescedWithZeroPagesAsMarkers() throws {
        let peers = try LoopbackPeers()
        defer { peers.close() }
        let zeroPages: Set<Int> = [5, 6, 35, 102, 250, 251, 252, 253, 254, 255]
        let regions = try PageTestRegions(peers, pageCount: 256, zeroPages: zeroPages)
        let runs = [PageRun(firstPage: 0, count: 10), PageRun(firstPage: 10, count: 5), PageRun(firstPage: 20, count: 1),
                    PageRun(firstPage: 30, count: 40), PageRun(firstPage: 100, count: 1), PageRun(firstPage: 102, count: 1),
                    PageRun(firstPage: 104, count: 1), PageRun(firstPage: 200, count: 56)]
        let dirty = Set(runs.flatMap { Int($0.firstPage)..<Int($0.endPage) })
        let channel = try PageChannel(router: peers.sourceRouter, control: peers.sourceControl)
        // The destination checks its memory the moment ITERATION_DONE arrives, without waiting
        // for anything else: the writes posted before it must already be visible.
        let destination = try Background("test-page-dest") { () -> ReceivedIteration in
            try Self.receiveIteration(peers, regions) { _ in
                for page in 0..<regions.pageCount {
                    if dirty.contains(page) {
                        #expect(zeroPages.contains(page) || regions.destinationPageEqualsSource(page), "dirty page \(page)")
                    } else {
                        #expect(regions.destinationPageIsUntouched(page), "clean page \(page)")
                    }
                }
            }
        }

        try channel.beginIteration(1)
        try channel.write(runs, of: regions.region)
        let statistics = try channel.endIteration()
        let received = try destination.join()

        // Nonzero dirty runs: 0-4, 7-14, 20, 30-34, 36-69, 100, 104, 200-249.
        #expect(statistics.writesPosted == 8)
        #expect(statistics.pagesWritten == 105)
        #expect(statistics.bytesWritten == 105 * 4096)
        #expect(statistics.zeroPages == 10)
        #expect(statistics.zeroPageMessages == 1)
        #expect(received.zeroPagesApplied == 10)
        #expect(received.zeroPageMessages == 1)
        #expect(received.done == .init(iteration: 1, pagesWritten: 105, zeroPages: 10, bytesWritten: 105 * 4096))
        for page in 0..<regions.pageCount {
            if dirty.contains(page) {
                #expect(regions.destinationPageEqualsSource(page), "dirty page \(page)")
            } else {
                #expect(regions.destinationPageIsUntouched(page), "clean page \(page)")
            }
        }
    }

    @Test func coalescedWritesStopAtTheMaximumWriteSize() throws {
        let peers = try LoopbackPeers()
        defer { peers.close() }
        let regions = try PageTestRegions(peers, pageCount: 64, zeroPages: [])
        var configuration = PageChannel.Configuration()
        configuration.maxWriteBytes = 4 * PageTestRegions.pageSize
        let channel = try PageChannel(router: peers.sourceRouter, control: peers.sourceControl, configuration: configuration)
        let destination = try Background("test-page-dest") { try Self.receiveIteration(peers, regions) }
        try channel.beginIteration(1)
        try channel.write([PageRun(firstPage: 0, count: 64)], of: regions.region)
        let statistics = try channel.endIteration()
        _ = try destination.join()
        #expect(statistics.writesPosted == 16)
        #expect(statistics.pagesWritten == 64)
        #expect((0..<64).allSatisfy(regions.destinationPageEqualsSource))
    }

    @Test func manyMoreWritesThanTheSendQueueReservationAllLand() throws {
        let peers = try LoopbackPeers()
        defer { peers.close() }
        let regions = try PageTestRegions(peers, pageCount: 2048, zeroPages: [])
        var configuration = PageChannel.Configuration()
        configuration.sendSlots = 16
        let channel = try PageChannel(router: peers.sourceRouter, control: peers.sourceControl, configuration: configuration)
        let destination = try Background("test-page-dest") { try Self.receiveIteration(peers, regions) }
        try channel.beginIteration(1)
        // Every other page: 1024 single-page writes through 16 send-queue slots.
        try channel.write((0..<1024).lazy.map { PageRun(firstPage: UInt64($0) * 2, count: 1) }, of: regions.region)
        let statistics = try channel.endIteration()
        _ = try destination.join()
        #expect(statistics.writesPosted == 1024)
        #expect(statistics.sendQueueWaits > 0)
        for page in 0..<2048 {
            #expect(page % 2 == 0 ? regions.destinationPageEqualsSource(page) : regions.destinationPageIsUntouched(page), "page \(page)")
        }
    }

    @Test func aFenceLandsEveryEarlierPageAndZeroMarkerBeforeTheNextControlMessage() throws {
        let peers = try LoopbackPeers()
        defer { peers.close() }
        let regions = try PageTestRegions(peers, pageCount: 512, zeroPages: [7, 8, 9, 300])
        let channel = try PageChannel(router: peers.sourceRouter, control: peers.sourceControl)
        #expect(throws: ChannelError.self) { try channel.fence() }
        // The destination checks the first half the moment the message behind the fence
        // arrives (the migration's TOUCHED_CHUNKS). Without the fence the last coalesced
        // write (pages 10-255) and the zero markers would still be held back.
        let destination = try Background("test-page-dest") { () -> Int in
            var zeroed = 0
            while true {
                switch try peers.destinationControl.receive(timeout: .seconds(20)) {
                case .zeroPages(let message):
                    zeroed += Int(try PageChannel.applyZeroPages(message, to: regions.destination.bytes, pageSize: PageTestRegions.pageSize))
                case .ready:
                    for page in 0..<256 {
                        #expect(regions.destinationPageEqualsSource(page), "page \(page) before the fence")
                    }
                    _ = try Self.receiveIteration(peers, regions)
                    return zeroed
                case let other:
                    throw ChannelError.protocolViolation(detail: "unexpected \(other.wireName)")
                }
            }
        }
        try channel.beginIteration(1)
        try channel.write([PageRun(firstPage: 0, count: 256)], of: regions.region)
        try channel.fence()
        #expect(channel.bytesWrittenThisIteration == 253 * 4096)
        try peers.sourceControl.send(MigrationMessage.ready)
        try channel.write([PageRun(firstPage: 256, count: 256)], of: regions.region)
        let statistics = try channel.endIteration()
        #expect(try destination.join() == 3)
        #expect(statistics.zeroPages == 4)
        #expect(statistics.zeroScanTime > .zero)
        for page in 0..<512 { #expect(regions.destinationPageEqualsSource(page), "page \(page)") }
    }

    @Test func knownZeroPagesAreZeroedOnTheDestinationWithoutAScan() throws {
        let peers = try LoopbackPeers()
        defer { peers.close() }
        let regions = try PageTestRegions(peers, pageCount: 16, zeroPages: [])
        let channel = try PageChannel(router: peers.sourceRouter, control: peers.sourceControl)
        let destination = try Background("test-page-dest") { try Self.receiveIteration(peers, regions) }
        try channel.beginIteration(1)
        // The caller vouches for pages 4..<9 and 12 (never populated on a real source); their
        // content here is not read, and the destination's copies become zeros.
        try channel.writeKnownZero([PageRun(firstPage: 4, count: 3), PageRun(firstPage: 7, count: 2), PageRun(firstPage: 12, count: 1)],
                                   of: regions.region)
        try channel.write([PageRun(firstPage: 0, count: 4)], of: regions.region)
        #expect(throws: ChannelError.self) { try channel.writeKnownZero([PageRun(firstPage: 15, count: 2)], of: regions.region) }
        let statistics = try channel.endIteration()
        let received = try destination.join()
        #expect(statistics.zeroPages == 6 && statistics.zeroScanTime == .zero)
        #expect(statistics.zeroPageMessages == 1, "adjacent runs merge into one ZERO_PAGES message")
        #expect(received.zeroPagesApplied == 6)
        for page in [4, 5, 6, 7, 8, 12] { #expect(regions.page(regions.destination, page).allSatisfy { $0 == 0 }, "page \(page)") }
        for page in 0..<4 { #expect(regions.destinationPageEqualsSource(page), "page \(page)") }
        for page in [9, 10, 11, 13, 14, 15] { #expect(regions.destinationPageIsUntouched(page), "page \(page)") }
    }

    @Test func withoutZeroPagesNoScanTimeIsCounted() throws {
        let peers = try LoopbackPeers()
        defer { peers.close() }
        let regions = try PageTestRegions(peers, pageCount: 64, zeroPages: [])
        let channel = try PageChannel(router: peers.sourceRouter, control: peers.sourceControl)
        let destination = try Background("test-page-dest") { try Self.receiveIteration(peers, regions) }
        try channel.beginIteration(1)
        try channel.write([PageRun(firstPage: 0, count: 64)], of: regions.region)
        let statistics = try channel.endIteration()
        _ = try destination.join()
        #expect(statistics.zeroScanTime == .zero)
    }

    @Test func theNextIterationWaitsUntilTheDestinationAppliedZeroPages() throws {
        let peers = try LoopbackPeers()
        defer { peers.close() }
        let regions = try PageTestRegions(peers, pageCount: 16, zeroPages: [3])
        let channel = try PageChannel(router: peers.sourceRouter, control: peers.sourceControl)
        let destination = try Background("test-page-dest") { () -> ReceivedIteration in
            let received = try Self.receiveIteration(peers, regions)
            try peers.destinationControl.send(MigrationMessage.zeroPagesApplied(.init(iteration: 1)))
            return received
        }
        try channel.beginIteration(1)
        try channel.write([PageRun(firstPage: 0, count: 16)], of: regions.region)
        _ = try channel.endIteration()
        #expect(try destination.join().zeroPagesApplied == 1)
        #expect(channel.awaitsZeroPagesApplied)
        let error = #expect(throws: ChannelError.self) { try channel.beginIteration(2) }
        #expect(error?.description.contains("ZERO_PAGES_APPLIED") == true)
        guard case .zeroPagesApplied(let applied) = try peers.sourceControl.receive(timeout: .seconds(5)) else {
            Issue.record("expected ZERO_PAGES_APPLIED")
            return
        }
        channel.zeroPagesApplied(through: applied.iteration)
        try channel.beginIteration(2)
        _ = try channel.endIteration()
    }

    @Test func runsOutsideTheRegionAndWindowsTooSmallAreRefused() throws {
        let peers = try LoopbackPeers()
        defer { peers.close() }
        let regions = try PageTestRegions(peers, pageCount: 8, zeroPages: [])
        let channel = try PageChannel(router: peers.sourceRouter, control: peers.sourceControl)
        try channel.beginIteration(1)
        #expect(throws: ChannelError.self) { try channel.write([PageRun(firstPage: 6, count: 3)], of: regions.region) }
        #expect(throws: ChannelError.self) { try channel.write([PageRun(firstPage: UInt64.max, count: 1)], of: regions.region) }
        let small = RemoteWindow(address: regions.region.peerWindow.address, length: 4096, remoteKey: regions.region.peerWindow.remoteKey)
        #expect(throws: ChannelError.self) {
            _ = try PageChannel.Region(id: 5, memory: regions.region.memory, registration: regions.region.registration,
                                       peerWindow: small, pageSize: 4096)
        }
    }
}
