/// The link measurement at setup: the source writes the first `bytes` of the guest's first
/// region (less for a smaller guest) in 1 MiB WRITEs over every page channel at once, before
/// the first pass, which overwrites them (`link-bandwidth`). 64 MiB: long enough that ramp-up
/// is a few per cent of it, short enough to add only milliseconds to setup (16 ms at 4 GB/s);
/// a destination that pins on fault faults these bytes in beforehand.
enum LinkBurst {
    static let bytes = 64 << 20
}
