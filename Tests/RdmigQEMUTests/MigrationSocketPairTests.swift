#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
@testable import RdmigQEMU

@Suite struct MigrationSocketPairTests {
    static func option(_ fd: Int32, _ name: Int32) -> Int32 {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        _ = getsockopt(fd, SOL_SOCKET, name, &value, &length)
        return value
    }

    /// Root gets the full 4 MiB past net.core.wmem_max; anyone else at least the system's cap.
    @Test func bothEndsHoldMegabytesInFlight() throws {
        let pair = try MigrationSocketPair()
        let systemCap = (try? String(contentsOfFile: "/proc/sys/net/core/wmem_max", encoding: .utf8))
            .flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 212_992
        let expected = geteuid() == 0 ? MigrationSocketPair.bufferBytes : min(MigrationSocketPair.bufferBytes, systemCap)
        for end in [pair.qemuEnd, pair.relayEnd] {
            // Linux reports twice the request (room for its bookkeeping).
            #expect(Self.option(end, SO_SNDBUF) >= expected)
            #expect(Self.option(end, SO_RCVBUF) >= expected)
        }
        // What QEMU can write before the relay reads anything: well past the default ~200 KiB.
        let chunk = [UInt8](repeating: 0x5A, count: 64 << 10)
        var buffered = 0
        while buffered < Int(expected) {
            let written = chunk.withUnsafeBytes { send(pair.qemuEnd, $0.baseAddress!, $0.count, Int32(MSG_DONTWAIT)) }
            if written <= 0 { break }
            buffered += written
        }
        #expect(buffered >= Int(expected) / 2, "only \(buffered) bytes fit before the relay read")
    }
}
