import RdmigSystem
import RdmigTransport

/// `[transport] tcp-buffer` and `--tcp-buffer`: the tcp backend's socket buffers, `auto` for
/// sizes rdmig picks from tcp_rmem and the round trip (`TransportOptions.socketBufferBytes`
/// nil) or a fixed size.
enum TCPBufferSetting: Equatable, CustomStringConvertible {
    case auto
    case fixed(ByteCount)

    struct ParseError: Error, CustomStringConvertible {
        var description: String
    }

    init(parsing text: String) throws(ParseError) {
        if text.lowercased() == "auto" {
            self = .auto
            return
        }
        let size: ByteCount
        do {
            size = try ByteCount(parsing: text)
        } catch {
            throw ParseError(description: "\(error), or auto for sizes rdmig picks")
        }
        guard size.bytes <= UInt64(Int.max), TransportOptions.socketBufferBytesRange.contains(Int(size.bytes)) else {
            throw ParseError(description: "\(size) is out of range: \(TransportOptions.socketBufferRange)")
        }
        self = .fixed(size)
    }

    /// `TransportOptions.socketBufferBytes`.
    var bytes: Int? {
        switch self {
        case .auto: return nil
        case .fixed(let size): return Int(size.bytes)
        }
    }

    var description: String {
        switch self {
        case .auto: return "auto"
        case .fixed(let size): return "\(size.bytes)"
        }
    }
}
