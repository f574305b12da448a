import RdmigSystem

/// What went wrong talking QMP: QEMU's own refusal of a command (its error class and
/// description, verbatim), or a problem with the connection, each saying what to do.
public enum QMPError: Error, CustomStringConvertible, Equatable {
    /// QEMU answered `{"error": {"class": ..., "desc": ...}}`.
    case commandFailed(command: String, errorClass: String, description: String)
    /// No socket file at the path.
    case socketMissing(path: String)
    /// The socket file exists but nothing accepts on it (ECONNREFUSED): QEMU exited.
    case nobodyListening(path: String)
    /// The connection sat in QEMU's backlog without a greeting: another client holds the socket.
    case busy(path: String, waited: Duration)
    /// The peer's first message was not a QMP greeting.
    case notQMP(path: String, firstMessage: String)
    /// QEMU closed the connection (it exited, or crashed) while something was outstanding.
    case disconnected(path: String, detail: String)
    /// No reply or event within the time allowed.
    case timedOut(path: String, operation: String, after: Duration)
    /// This client closed the connection (`QMPClient.close()`); nothing more can be sent on it.
    case closed(path: String)
    /// QEMU sent something that is not a QMP message (broken JSON, a reply nobody asked for).
    case protocolViolation(path: String, detail: String)
    /// A reply arrived but did not have the expected shape.
    case unexpectedReply(command: String, detail: String)
    /// A socket call failed.
    case system(SystemCallError)
    /// The waiting task was cancelled.
    case cancelled(operation: String)
    /// The API was used in a way it does not support (say which).
    case misuse(String)

    public var description: String {
        switch self {
        case .commandFailed(let command, let errorClass, let description):
            return "QEMU refused \(command): \(description) (\(errorClass))"
        case .socketMissing(let path):
            return "no QMP socket at \(path): is QEMU running with -qmp unix:\(path),server=on,wait=off?"
        case .nobodyListening(let path):
            return "nothing accepts connections on the QMP socket \(path) (connection refused): "
                + "QEMU has exited and left the socket file behind; start QEMU again"
        case .busy(let path, let waited):
            let symptom = waited == .zero
                ? "its backlog is full of clients waiting their turn"
                : "QEMU sent no greeting within \(waited.qmpText)"
            return "QMP socket \(path) is busy: \(symptom). "
                + "A QMP socket serves one client at a time; detach the other client (a test driver, "
                + "qmp-shell, libvirt) or give QEMU a second -qmp unix:PATH,server=on,wait=off for rdmig"
        case .notQMP(let path, let firstMessage):
            return "\(path) is not a QMP socket: its first message was \(firstMessage.prefix(200))"
        case .disconnected(let path, let detail):
            let context = detail.isEmpty ? "" : " \(detail)"
            return "QEMU closed the QMP connection \(path)\(context) (did QEMU exit? see its log)"
        case .timedOut(let path, let operation, let after):
            return "no answer from QEMU on \(path) to \(operation) within \(after.qmpText)"
        case .closed(let path):
            return "the QMP connection \(path) was closed by rdmig"
        case .protocolViolation(let path, let detail):
            return "QEMU sent something QMP does not allow on \(path): \(detail)"
        case .unexpectedReply(let command, let detail):
            return "QEMU's reply to \(command) is not what rdmig understands: \(detail)"
        case .system(let error):
            return "QMP socket: \(error)"
        case .cancelled(let operation):
            return "cancelled while \(operation)"
        case .misuse(let detail):
            return "QMP client misuse: \(detail)"
        }
    }

    /// QEMU's error class when it refused a command ("GenericError", "CommandNotFound", ...).
    public var errorClass: String? {
        if case .commandFailed(_, let errorClass, _) = self { return errorClass }
        return nil
    }

    /// True when the connection to QEMU is gone (nothing more can be sent on it).
    public var isDisconnection: Bool {
        switch self {
        case .disconnected, .nobodyListening, .socketMissing, .closed: return true
        default: return false
        }
    }
}

extension Duration {
    /// "1.5 s" / "250 ms": how rdmig's QEMU messages print a duration.
    var qmpText: String {
        if milliseconds >= 1000 { return "\(formatFixed(seconds, decimals: 2)) s" }
        return "\(formatFixed(milliseconds, decimals: milliseconds < 10 ? 2 : 0)) ms"
    }
}
