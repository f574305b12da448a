import RdmigChannels

/// How many page channels a source asks for (`--channels`, `[transport] channels`).
enum PageChannelCount {
    /// "auto" stops here: past a few channels a migration is limited by the guest's dirty
    /// pages and the destination's hashing, not by posting.
    static let automaticMaximum = 8

    struct Choice {
        let count: Int
        let reason: String
    }

    /// nil for "auto", else a count within what LAYOUT allows.
    static func parse(_ text: String) throws(PageChannelCountError) -> Int? {
        let trimmed = text.trimmingCharacters(in: .init(charactersIn: "\" "))
        if trimmed == "auto" { return nil }
        guard let count = Int(trimmed), (1...Int(MigrationMessage.maximumPageChannels)).contains(count) else {
            throw PageChannelCountError(text: text)
        }
        return count
    }

    /// The configured count, or one per hot-path CPU (the CPUs near the NIC the posting
    /// threads are pinned to), at most `automaticMaximum`.
    static func choose(configured: Int?, hotPathCPUs: Int) -> Choice {
        if let configured { return Choice(count: configured, reason: "configured") }
        let count = min(max(hotPathCPUs, 1), automaticMaximum)
        return Choice(count: count, reason: "auto: one per hot-path CPU (\(hotPathCPUs)), at most \(automaticMaximum)")
    }
}

struct PageChannelCountError: Error, CustomStringConvertible {
    let text: String
    var description: String { "\"\(text)\" is not a page channel count: use auto or 1-\(MigrationMessage.maximumPageChannels)" }
}
