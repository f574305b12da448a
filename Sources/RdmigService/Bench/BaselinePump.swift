/// The plain TCP pumps `rdmig bench transport` runs beside the transport, between the same two
/// processes over the same socket setup (`PlainSocketPump`); they differ in the size of each
/// `send()`.
enum BaselinePump: String, CaseIterable, Codable, Sendable {
    /// 1 MiB sends, as `iperf3 -l 1M`: the fewest syscalls per byte, so what TCP over this
    /// path moves at most — the ceiling `ratio` compares against. (On this 2-core machine
    /// the sender's core is the limit: iperf3 `-l 1M` moved ~4.9 GB/s, `-l 128K` ~2.9 GB/s.)
    case largeWrite = "large-write"
    /// One `send()` per `message-size`: the pump every table before issue 14 compared
    /// against. At 64 KiB it pays a syscall per 64 KiB where the tcp backend sends a batch
    /// of frames per `sendmsg`, so the transport looked up to 2.4× "faster than TCP".
    case messageSize = "message-size"

    static let largeWriteBytes = 1 << 20

    func writeSize(messageSize: Int) -> Int {
        switch self {
        case .largeWrite: return Self.largeWriteBytes
        case .messageSize: return messageSize
        }
    }

    /// For text: "large-write pump (1 MiB sends)".
    var name: String {
        switch self {
        case .largeWrite: return "large-write pump"
        case .messageSize: return "message-size pump"
        }
    }
}
