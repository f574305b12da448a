/// The outcome of one read from a device's state stream, as the VFIO data fd reports it.
public enum DeviceStateRead: Equatable, Sendable {
    /// This many bytes were written into the caller's buffer.
    case bytes(Int)
    /// PRE_COPY only: nothing is pending right now (the data fd's read() fails with ENOMSG);
    /// more may come as the device dirties its state.
    case nothingPending
    /// STOP_COPY only: the whole state has been read (read() returned 0).
    case endOfStream
}
