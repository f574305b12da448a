import RdmigChannels
import RdmigSystem

/// QEMU mode's measurement of the transport before QEMU's `max-bandwidth` is set: a short
/// timed burst over its own byte-stream channel (`bandwidthProbe`), the same kind of channel
/// and slot size the QEMU stream then uses, so it measures the path QEMU's bytes take
/// (transport, copies, credits). The clock stops when `finish` returns: every write has
/// completed. QEMU's default (128 MiB/s, migration/options.c) would otherwise throttle the
/// stream, and a guest dirtying faster than that never converges.
enum BandwidthProbe {
    struct Measurement: Sendable {
        var bytes: UInt64
        var elapsed: Duration
        var bandwidth: ByteRate {
            let seconds = elapsed.seconds
            return ByteRate(bytesPerSecond: seconds > 0 ? UInt64(Double(bytes) / seconds) : 0)
        }
    }

    /// Writes until `maxBytes` or `maxDuration`, whichever comes first, then finishes.
    static func send(over sender: ByteStreamSender, maxBytes: UInt64, maxDuration: Duration,
                     timeout: Duration) throws(ChannelError) -> Measurement {
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: sender.ring.slotSize, alignment: 64)
        defer { chunk.deallocate() }
        // Arbitrary but not all zeros, in case a transport ever compresses.
        for index in 0..<chunk.count { chunk[index] = UInt8(truncatingIfNeeded: index &* 2_654_435_761 >> 13) }
        let started = ContinuousClock.now
        var bytes: UInt64 = 0
        while bytes < maxBytes, ContinuousClock.now - started < maxDuration {
            try sender.write(UnsafeRawBufferPointer(chunk), timeout: timeout)
            bytes += UInt64(chunk.count)
        }
        try sender.finish(timeout: timeout)
        return Measurement(bytes: bytes, elapsed: ContinuousClock.now - started)
    }

    /// The destination's side: reads the burst to its end and discards it.
    static func drain(_ receiver: ByteStreamReceiver, timeout: Duration) throws(ChannelError) -> UInt64 {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: receiver.ring.slotSize, alignment: 64)
        defer { buffer.deallocate() }
        var total: UInt64 = 0
        while true {
            let count = try receiver.read(into: buffer, timeout: timeout)
            if count == 0 { return total }
            total += UInt64(count)
        }
    }
}
