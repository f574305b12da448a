import ArgumentParser

/// How much memory the plain TCP pump cycles through on each side.
enum BaselineBufferKind: String, Codable, CaseIterable, ExpressibleByArgument, Sendable {
    /// One message-size buffer, sent from and received into again and again: the plainest
    /// pump, whose buffer stays in the CPU caches.
    case message
    /// As many bytes as the transport's ring (queue depth × message size), slot after slot:
    /// the same memory footprint as the transport, so a ratio compares the protocols alone.
    case ring

    func bytes(messageSize: Int, queueDepth: Int) -> Int {
        switch self {
        case .message: return messageSize
        case .ring: return messageSize * queueDepth
        }
    }
}
