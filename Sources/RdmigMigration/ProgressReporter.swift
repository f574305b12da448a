#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Shows a running migration's progress: on a terminal one line rewritten in place
/// (carriage return + erase to end of line), elsewhere (logs, pipes, CI) plain lines, at
/// most one per `plainInterval` so a log is not flooded.
public final class ProgressReporter: Sendable {
    public let fileDescriptor: Int32
    public let isTerminal: Bool
    private let plainInterval: Duration
    private struct State {
        var lastPlain: ContinuousClock.Instant?
        var lineOpen = false
    }
    private let state = Mutex(State())

    /// `isTerminal` nil asks isatty(3).
    public init(fileDescriptor: Int32 = 2, isTerminal: Bool? = nil, plainInterval: Duration = .seconds(1)) {
        self.fileDescriptor = fileDescriptor
        self.isTerminal = isTerminal ?? (isatty(fileDescriptor) == 1)
        self.plainInterval = plainInterval
    }

    /// Shows `progress`. On a terminal every call redraws; otherwise calls within
    /// `plainInterval` of the last printed line are skipped (`force` prints anyway).
    public func update(_ progress: MigrationProgress, force: Bool = false) {
        let now = ContinuousClock.now
        let text: String? = state.withLock { state in
            if isTerminal {
                state.lineOpen = true
                return "\r" + progress.line + "\u{1B}[K"
            }
            if !force, let last = state.lastPlain, now - last < plainInterval { return nil }
            state.lastPlain = now
            return progress.line + "\n"
        }
        if let text { write(text) }
    }

    /// Ends the progress display: closes an open terminal line, then prints `message` (if any)
    /// on its own line.
    public func finish(_ message: String? = nil) {
        let closing = state.withLock { state in
            defer { state.lineOpen = false }
            return state.lineOpen ? "\n" : ""
        }
        write(closing + (message.map { $0 + "\n" } ?? ""))
    }

    private func write(_ text: String) {
        guard !text.isEmpty else { return }
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { buffer in
                Glibc.write(fileDescriptor, buffer.baseAddress! + offset, buffer.count - offset)
            }
            if written < 0 {
                if errno == EINTR { continue }
                return  // a closed terminal or pipe must not stop the migration
            }
            offset += written
        }
    }
}
