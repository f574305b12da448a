#if canImport(Glibc)
import Glibc
#endif
import Foundation
import RdmigSystem
import Testing
@testable import RdmigQEMU

@Suite struct MigrationPipeTests {
    /// 1 MiB where the system allows it (root, or pipe-max-size ≥ 1 MiB, its default), both
    /// ends close-on-exec, the relay's end non-blocking: a full pipe returns EAGAIN at once.
    @Test func thePipeHoldsAMegabyteAndItsWriteEndNeverBlocks() throws {
        let pipe = try MigrationPipe()
        let maximum = (try? String(contentsOfFile: "/proc/sys/fs/pipe-max-size", encoding: .utf8))
            .flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 1 << 20
        if geteuid() == 0 || maximum >= MigrationPipe.requestedBytes {
            #expect(pipe.capacity >= MigrationPipe.requestedBytes)
        }
        #expect(pipe.kind.hasPrefix("pipe of "))
        for end in [pipe.qemuEnd, pipe.relayEnd] {
            #expect(fcntl(end, F_GETFD) & FD_CLOEXEC != 0)
        }
        #expect(fcntl(pipe.relayEnd, F_GETFL) & O_NONBLOCK != 0)
        let chunk = [UInt8](repeating: 0x5A, count: 64 << 10)
        var buffered = 0
        while true {
            let written = chunk.withUnsafeBytes { write(pipe.relayEnd, $0.baseAddress!, $0.count) }
            if written <= 0 {
                #expect(SystemCall.currentErrno() == EAGAIN)
                break
            }
            buffered += written
        }
        #expect(buffered == pipe.capacity)
        #expect(try PipeCalls.unread(pipe.relayEnd) == pipe.capacity)
    }

    /// A pipe has no shutdown: after `shutdownRelayEnd` QEMU's end reads what was queued, then
    /// end of file, and the relay's end (still a valid number) refuses vmsplice.
    @Test func shuttingTheRelayEndDownEndsTheStreamForQEMUAfterWhatWasQueued() throws {
        let pipe = try MigrationPipe()
        let message = Array("queued before the shutdown".utf8)
        #expect(message.withUnsafeBytes { write(pipe.relayEnd, $0.baseAddress!, $0.count) } == message.count)
        pipe.shutdownRelayEnd()
        var buffer = [UInt8](repeating: 0, count: 256)
        let read1 = buffer.withUnsafeMutableBytes { read(pipe.qemuEnd, $0.baseAddress!, $0.count) }
        #expect(read1 == message.count && Array(buffer[..<max(0, read1)]) == message)
        #expect(buffer.withUnsafeMutableBytes { read(pipe.qemuEnd, $0.baseAddress!, $0.count) } == 0)
        #expect(throws: SystemCallError.self) { _ = try PipeCalls.vmsplice(pipe.relayEnd, message, message.count) }
        pipe.shutdownRelayEnd()  // twice is harmless
    }
}
