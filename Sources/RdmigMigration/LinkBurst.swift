/// The link measurement at setup: the source writes the first `bytes` of the guest's first
/// region (less for a smaller guest) in 1 MiB WRITEs over every page channel at once, before
/// the first pass, which overwrites them (`link-bandwidth`).
enum LinkBurst {
    static let bytes = 64 << 20
}
