#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem
import RdmigTransport
import Synchronization
import Testing

@Suite("plain TCP pump")
struct PlainSocketPumpTests {
    /// Three 1000-byte slots. 2500 bytes: the receiver fills slot 0, slot 1 and half of slot 2,
    /// each from the sender's slot of the same index, and leaves the rest untouched. 5500 bytes
    /// wrap around twice and end in the same slots, so the buffers end up equal.
    @Test(arguments: [2500, 5500])
    func bothSidesCycleThroughTheirBufferSlotBySlot(total: Int) throws {
        let messageSize = 1000
        let source = UnsafeMutableRawBufferPointer.allocate(byteCount: 3 * messageSize, alignment: 64)
        let target = UnsafeMutableRawBufferPointer.allocate(byteCount: 3 * messageSize, alignment: 64)
        defer {
            source.deallocate()
            target.deallocate()
        }
        for index in 0..<source.count { source[index] = UInt8(index / messageSize + 1) }
        target.initializeMemory(as: UInt8.self, repeating: 0)

        let (listener, endpoint) = try PlainSocketPump.listen(on: TransportEndpoint(host: "127.0.0.1", port: 0), socketBufferBytes: nil)
        defer { close(listener) }
        let failure = Mutex<String?>(nil)
        let targetAddress = UInt(bitPattern: target.baseAddress)
        let receiver = try SystemThread(name: "pump-test") {
            let buffer = UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(bitPattern: targetAddress), count: 3 * messageSize)
            do {
                try PlainSocketPump.serve(listener: listener, total: UInt64(total), writeSize: messageSize, buffer: buffer, socketBufferBytes: nil)
            } catch {
                failure.withLock { $0 = "\(error)" }
            }
        }
        _ = try PlainSocketPump.run(to: endpoint, total: UInt64(total), writeSize: messageSize, buffer: source, socketBufferBytes: nil)
        receiver.join()
        #expect(failure.withLock { $0 } == nil)
        let filled = min(total, target.count)
        #expect(Array(target[0..<filled]) == Array(source[0..<filled]))
        #expect(target[filled...].allSatisfy { $0 == 0 })
    }
}
