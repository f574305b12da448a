/// Which pages of one guest memory region were written since the last collection.
///
/// The pre-copy loop calls `collectAndClear(into:)` at the start of every pass and sends
/// the pages it returns. A write that happens while (or after) the log is collected is
/// reported by this collection or the next one, never lost: implementations clear their
/// state before the caller reads the pages, and re-arm tracking before returning.
public protocol DirtyLog: AnyObject, Sendable {
    /// The region's page count; bitmaps passed in must have exactly this many pages.
    var pageCount: Int { get }
    /// Bytes per tracked page.
    var pageSize: Int { get }

    /// Starts (or restarts) tracking: pages written after this call are reported; marks
    /// from before it are dropped. The first pre-copy pass sends every page anyway.
    func start() throws(DirtyLogError)

    /// Adds (OR) the pages written since the previous collection (or `start`) to `bitmap`,
    /// and clears the log. Returns how many pages the log reported. Does not allocate.
    @discardableResult
    func collectAndClear(into bitmap: inout DirtyBitmap) throws(DirtyLogError) -> Int

    /// Stops tracking and releases what tracking holds (protections, handler threads).
    /// Safe to call more than once.
    func stop()
}
