/// Splits the bytes QEMU sends into messages. QEMU's monitor writes each JSON message compactly
/// on one line ended by "\r\n" (monitor/qmp.c; pretty printing only with `-qmp ...,pretty=on`,
/// which rdmig does not support), so a newline ends a message.
///
/// `package`: the fuzz targets (Tests/fuzz) split lines with it too.
package struct QMPLineFramer {
    private var pending: [UInt8] = []
    private var start = 0
    /// Where the search for the next newline resumes: `pending[start..<scanned]` holds none, so
    /// a long message arriving in many small reads is scanned once, not once per read
    /// (rescanning from `start` made that quadratic: the fuzzer's 4 KiB lines fed a byte at a
    /// time took 13 ms each).
    private var scanned = 0
    /// A message longer than this is a broken peer, not QMP (query-qmp-schema, the largest
    /// reply rdmig asks for, is ~250 KB on QEMU 10.0).
    package let limit: Int

    package init(limit: Int = 64 << 20) {
        self.limit = limit
    }

    package mutating func append(_ bytes: UnsafeRawBufferPointer) {
        if start > 0, start == pending.count {
            pending.removeAll(keepingCapacity: true)
            start = 0
            scanned = 0
        }
        pending.append(contentsOf: bytes)
    }

    /// The next complete line without its "\r\n"; nil when none is complete yet.
    package mutating func nextLine() -> ArraySlice<UInt8>? {
        guard let newline = pending[max(start, scanned)...].firstIndex(of: UInt8(ascii: "\n")) else {
            scanned = pending.count
            if start > 0, start > pending.count / 2 {
                pending.removeFirst(start)
                scanned -= start
                start = 0
            }
            return nil
        }
        var end = newline
        if end > start, pending[end - 1] == UInt8(ascii: "\r") { end -= 1 }
        let line = pending[start..<end]
        start = newline + 1
        return line
    }

    /// Bytes of an unfinished message held back.
    package var pendingCount: Int { pending.count - start }

    package var isOverLimit: Bool { pendingCount > limit }
}
