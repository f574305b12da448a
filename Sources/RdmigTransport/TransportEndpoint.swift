/// A host and port as written on a command line: `127.0.0.1:7471`, `[::1]:7471`,
/// `node7:7471`. IPv6 literals are bracketed, as in URLs.
public struct TransportEndpoint: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    public enum ParseError: Error, CustomStringConvertible, Equatable, Sendable {
        case missingPort(String)
        case invalidPort(String)
        case emptyHost(String)

        public var description: String {
            switch self {
            case .missingPort(let text): return "address '\(text)' has no port: write HOST:PORT, e.g. 127.0.0.1:7471 or [::1]:7471"
            case .invalidPort(let text): return "address '\(text)' has an invalid port: use 0-65535"
            case .emptyHost(let text): return "address '\(text)' has no host: write HOST:PORT, e.g. 127.0.0.1:7471"
            }
        }
    }

    public init(parsing text: String) throws(ParseError) {
        let hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw .missingPort(text) }
            hostPart = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw .missingPort(text) }
            portPart = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw .missingPort(text) }
            hostPart = text[..<colon]
            // An unbracketed IPv6 literal is ambiguous; ask for brackets.
            guard !hostPart.contains(":") else { throw .missingPort(text) }
            portPart = text[text.index(after: colon)...]
        }
        guard !hostPart.isEmpty else { throw .emptyHost(text) }
        guard let port = UInt16(portPart) else { throw .invalidPort(text) }
        self.host = String(hostPart)
        self.port = port
    }

    public var isIPv6Literal: Bool { host.contains(":") }

    public var description: String { isIPv6Literal ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// A loopback address (127.0.0.0/8, ::1, localhost): traffic that never leaves the host.
    public var isLoopback: Bool {
        let name = host.lowercased()
        return name.hasPrefix("127.") || name == "::1" || name == "localhost" || name.hasPrefix("::ffff:127.")
    }
}
