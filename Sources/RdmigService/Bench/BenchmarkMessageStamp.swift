/// What the transport benchmark's sender writes into every message so that the receiver can
/// tell, from its window alone, which messages landed there: `samples` 8-byte words spread
/// evenly over the message (the first at its first byte, the last ending at its last byte),
/// each the message's sequence number XOR a mask drawn from the run's nonce and the word's
/// index. The sender stamps the source slot right before posting the write (a few stores;
/// the slot is free again, as its previous write completed), so the words change with every
/// message and with every run, and a window that kept an older run's or an older message's
/// bytes does not pass for this one's.
///
/// Only these words are checked — a sampled check: a write that did not land, landed in the
/// wrong slot, or landed partly (its first or last bytes missing) is seen; a byte changed
/// between two samples is not.
struct BenchmarkMessageStamp: Sendable, Equatable {
    /// Words per message, at most (fewer when the message holds fewer).
    static let maximumSamples = 16
    static let wordBytes = 8

    let messageSize: Int
    let samples: Int

    /// Messages of at least one word (`wordBytes`): the CLI refuses smaller ones.
    init(messageSize: Int) {
        precondition(messageSize >= Self.wordBytes, "a stamped message holds at least one 8-byte word")
        self.messageSize = messageSize
        samples = min(Self.maximumSamples, messageSize / Self.wordBytes)
    }

    /// Where word `index` starts in the message; words never overlap (`samples` × 8 ≤ size).
    func offset(ofSample index: Int) -> Int {
        samples == 1 ? 0 : index * (messageSize - Self.wordBytes) / (samples - 1)
    }

    /// SplitMix64's finaliser (Steele, Lea, Flood 2014) over the nonce and the word's index:
    /// masks of neighbouring words and nonces share no obvious bits, and no mask is likely
    /// to turn a zeroed window into a plausible sequence number.
    static func mask(nonce: UInt64, sample: Int) -> UInt64 {
        var z = nonce &+ UInt64(sample + 1) &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Writes message `sequence`'s words into the slot at `message`.
    func stamp(_ message: UnsafeMutableRawPointer, nonce: UInt64, sequence: UInt64) {
        for sample in 0..<samples {
            let word = sequence ^ Self.mask(nonce: nonce, sample: sample)
            message.storeBytes(of: word.littleEndian, toByteOffset: offset(ofSample: sample), as: UInt64.self)
        }
    }

    /// The sequence number word `sample` of the slot at `message` carries.
    func sequence(in message: UnsafeRawPointer, nonce: UInt64, sample: Int) -> UInt64 {
        let word = UInt64(littleEndian: message.loadUnaligned(fromByteOffset: offset(ofSample: sample), as: UInt64.self))
        return word ^ Self.mask(nonce: nonce, sample: sample)
    }

    /// The sequence number every word of the slot agrees on, or nil when they disagree.
    func agreedSequence(in message: UnsafeRawPointer, nonce: UInt64) -> UInt64? {
        let first = sequence(in: message, nonce: nonce, sample: 0)
        for sample in 1..<samples where sequence(in: message, nonce: nonce, sample: sample) != first {
            return nil
        }
        return first
    }
}
