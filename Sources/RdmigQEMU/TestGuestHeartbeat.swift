/// One heartbeat line of rdmig's self-checking test guest (Tests/qemu-guest/init.c) on its
/// serial console: `rdmig-guest: heartbeat n=12 written=123456 errors=0 ...`. `errors` counts
/// pages found not to hold what the guest last wrote: a migration that lost a write shows it.
/// `rdmig qemu-launch --guest test` and the QEMU tests read the console with it.
public struct TestGuestHeartbeat: Sendable, Equatable, CustomStringConvertible {
    public let n: Int
    public let written: Int
    public let errors: Int

    public init(n: Int, written: Int, errors: Int) {
        self.n = n
        self.written = written
        self.errors = errors
    }

    public var description: String { "n=\(n) written=\(written) errors=\(errors)" }

    /// Every heartbeat in a serial console's text, in order.
    public static func parse(_ serialText: String) -> [TestGuestHeartbeat] {
        serialText.matches(of: /rdmig-guest: heartbeat n=(\d+) written=(\d+) errors=(\d+)/).compactMap { match in
            guard let n = Int(match.output.1), let written = Int(match.output.2), let errors = Int(match.output.3) else {
                return nil
            }
            return TestGuestHeartbeat(n: n, written: written, errors: errors)
        }
    }
}
