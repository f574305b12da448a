import ArgumentParser

/// How much memory a plain TCP pump cycles through on each side.
enum BaselineBufferKind: String, Codable, CaseIterable, ExpressibleByArgument, Sendable {
    /// One write's buffer (a message for the message-size pump, 1 MiB for the large-write
    /// pump), sent from and received into again and again: the plainest pump, whose buffer
    /// stays in the CPU caches.
    case message
    /// As many bytes as the transport's ring (queue depth × message size), write after write
    /// (at least one write): the same memory footprint as the transport, so a ratio compares
    /// the protocols alone.
    case ring

    func bytes(writeSize: Int, messageSize: Int, queueDepth: Int) -> Int {
        switch self {
        case .message: return writeSize
        case .ring: return max(writeSize, messageSize * queueDepth)
        }
    }

    /// The message-size pump's buffer.
    func bytes(messageSize: Int, queueDepth: Int) -> Int {
        bytes(writeSize: messageSize, messageSize: messageSize, queueDepth: queueDepth)
    }
}
