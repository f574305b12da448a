@testable import RdmigChannels
import Testing

@Suite struct ZeroPages {
    @Test func aPageIsZeroOnlyWhenEveryByteIs() {
        let page = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { page.deallocate() }
        page.initializeMemory(as: UInt8.self, repeating: 0)
        #expect(PageChannel.isZero(page.baseAddress!, 4096))
        for index in [0, 1, 63, 64, 2047, 4095] {
            page[index] = 1
            #expect(!PageChannel.isZero(page.baseAddress!, 4096), "byte \(index)")
            page[index] = 0
        }
    }

    @Test func zeroPageMarkersZeroExactlyTheNamedPages() throws {
        let pageSize = 4096
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: 16 * pageSize, alignment: 4096)
        defer { memory.deallocate() }
        memory.initializeMemory(as: UInt8.self, repeating: 0xA5)
        let message = MigrationMessage.ZeroPages(iteration: 1, regionID: 0,
                                                 runs: [PageRun(firstPage: 2, count: 3), PageRun(firstPage: 15, count: 1)])
        let named = try PageChannel.applyZeroPages(message, to: memory, pageSize: pageSize)
        #expect(named == 4)
        for page in 0..<16 {
            let isZero = PageChannel.isZero(memory.baseAddress! + page * pageSize, pageSize)
            #expect(isZero == [2, 3, 4, 15].contains(page), "page \(page)")
        }
    }

    @Test func zeroPageMarkersOutsideTheRegionTouchNothing() {
        let pageSize = 4096
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: 4 * pageSize, alignment: 4096)
        defer { memory.deallocate() }
        memory.initializeMemory(as: UInt8.self, repeating: 0xA5)
        let message = MigrationMessage.ZeroPages(iteration: 1, regionID: 3,
                                                 runs: [PageRun(firstPage: 0, count: 1), PageRun(firstPage: 3, count: 2)])
        #expect(throws: ChannelError.self) { try PageChannel.applyZeroPages(message, to: memory, pageSize: pageSize) }
        // The valid first run was not applied either: runs are checked before any is applied.
        #expect(!PageChannel.isZero(memory.baseAddress!, pageSize))
    }
}
