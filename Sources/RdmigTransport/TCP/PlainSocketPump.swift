#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem

/// The baselines of `rdmig bench transport`: the plainest TCP sender and receiver, a `send()`
/// loop of `writeSize` chunks into a socket and a `recv()` loop out of it — no framing, no
/// keys, no completions. The benchmark runs it twice over: with the transport's message size
/// and with 1 MiB writes (as `iperf3 -l 1M`), the ceiling. It uses the same sockets as the tcp backend (`TCPSocket`: same
/// buffers, TCP_NODELAY), so the ratio shows what the RDMA semantics cost on top of TCP.
///
/// Each side moves bytes from or into a caller-owned buffer, write-size slot after slot,
/// wrapping around: a buffer of one write stays in the CPU caches; a buffer as large as
/// the transport benchmark's ring moves the same memory footprint as the transport does.
public enum PlainSocketPump {
    /// A listening socket; port 0 picks a free one. `socketBufferBytes` as
    /// `TransportOptions.socketBufferBytes` (nil: the kernel's autotuning).
    public static func listen(
        on endpoint: TransportEndpoint, socketBufferBytes: Int?
    ) throws(TransportError) -> (descriptor: Int32, endpoint: TransportEndpoint) {
        let (descriptor, bound) = try TCPSocket.listen(on: endpoint, bufferBytes: socketBufferBytes)
        return (descriptor, bound)
    }

    /// Receives `total` bytes from the next connection on `listener` into `buffer` (at least
    /// one write), up to `writeSize` per `recv`, then answers one byte so the sender's clock
    /// stops only when everything arrived.
    public static func serve(
        listener: Int32, total: UInt64, writeSize: Int, buffer: UnsafeMutableRawBufferPointer, socketBufferBytes: Int?
    ) throws(TransportError) {
        precondition(buffer.count >= writeSize, "plain pump buffer smaller than one write")
        let peer = TransportEndpoint(host: "plain pump sender", port: 0)
        let connection = try TCPSocket.check("accept", peer) { accept(listener, nil, nil) }
        defer { close(connection) }
        // The transport's `tcp-buffer = "auto"` sizing too (from the handshake's round trip).
        if socketBufferBytes == nil { TCPSocket.sizeSendBufferForRoundTrip(connection, peer) }
        let slots = buffer.count / writeSize
        var received: UInt64 = 0
        var slot = 0
        var inSlot = 0
        while received < total {
            let want = Int(min(UInt64(writeSize - inSlot), total - received))
            let count = recv(connection, buffer.baseAddress! + slot * writeSize + inSlot, want, Int32(MSG_WAITALL))
            if count < 0, SystemCall.currentErrno() == EINTR { continue }
            if count <= 0 {
                throw .peerDisconnected(peer, detail: "plain pump sender stopped after \(received) of \(total) bytes")
            }
            received += UInt64(count)
            inSlot += count
            if inSlot == writeSize {
                inSlot = 0
                slot = slot + 1 == slots ? 0 : slot + 1
            }
        }
        var answer: UInt8 = 1
        _ = try TCPSocket.check("send", peer) { Int32(send(connection, &answer, 1, Int32(MSG_NOSIGNAL))) }
    }

    /// Sends `total` bytes in `writeSize` sends from `buffer` (at least one write, filled by
    /// the caller) and waits for the answer; returns the time.
    public static func run(
        to endpoint: TransportEndpoint, total: UInt64, writeSize: Int, buffer: UnsafeMutableRawBufferPointer,
        socketBufferBytes: Int?, timeout: Duration = .seconds(10)
    ) throws(TransportError) -> Duration {
        precondition(buffer.count >= writeSize, "plain pump buffer smaller than one write")
        let clock = ContinuousClock()
        let descriptor = try TCPSocket.connect(
            to: endpoint, deadline: clock.now + timeout, timeout: timeout, bufferBytes: socketBufferBytes)
        defer { close(descriptor) }
        if socketBufferBytes == nil { TCPSocket.sizeSendBufferForRoundTrip(descriptor, endpoint) }
        let slots = buffer.count / writeSize
        let start = clock.now
        var sent: UInt64 = 0
        var slot = 0
        while sent < total {
            let want = Int(min(UInt64(writeSize), total - sent))
            let message = buffer.baseAddress! + slot * writeSize
            slot = slot + 1 == slots ? 0 : slot + 1
            var offset = 0
            while offset < want {
                let count = send(descriptor, message + offset, want - offset, Int32(MSG_NOSIGNAL))
                if count < 0, SystemCall.currentErrno() == EINTR { continue }
                if count <= 0 { throw TCPSocket.disconnected(endpoint, errno: SystemCall.currentErrno()) }
                offset += count
            }
            sent += UInt64(want)
        }
        var answer: UInt8 = 0
        while true {
            let count = recv(descriptor, &answer, 1, 0)
            if count < 0, SystemCall.currentErrno() == EINTR { continue }
            if count != 1 { throw .peerDisconnected(endpoint, detail: "plain pump receiver closed before answering") }
            break
        }
        return clock.now - start
    }
}
