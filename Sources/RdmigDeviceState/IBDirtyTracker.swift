/// Pre-copy bookkeeping for an ib-sw source session: how far the initial pass has got, and
/// which objects changed after they were sent.
///
/// An object that changes before the initial pass reaches it is not marked: the pass will
/// read its current value anyway. One that changes after being sent is marked dirty and
/// sent again; sending clears the mark. So `dirtyBytes` is exactly what the destination
/// lacks beyond the initial data, as VFIO_MIG_GET_PRECOPY_INFO's dirty_bytes means it.
struct IBDirtyTracker: Sendable {
    let shape: IBVFShape
    /// Global index (canonical order) of the next object the initial pass sends.
    var initialCursor = 0
    var dirty: IBObjectBitmap
    /// Global index where each kind's objects start, plus the total at the end.
    private let offsets: [Int]

    init(shape: IBVFShape) {
        self.shape = shape
        dirty = IBObjectBitmap(shape: shape)
        var offsets = [0]
        for kind in IBObjectKind.allCases { offsets.append(offsets.last! + shape.count(of: kind)) }
        self.offsets = offsets
    }

    var total: Int { offsets.last! }
    var initialComplete: Bool { initialCursor >= total }

    func globalIndex(_ kind: IBObjectKind, _ index: Int) -> Int { offsets[kind.ordinal] + index }

    func locate(_ global: Int) -> (IBObjectKind, Int) {
        var ordinal = 0
        while offsets[ordinal + 1] <= global { ordinal += 1 }
        return (IBObjectKind.allCases[ordinal], global - offsets[ordinal])
    }

    mutating func markDirty(_ kind: IBObjectKind, _ index: Int) {
        if globalIndex(kind, index) < initialCursor { dirty.insert(kind, index) }
    }

    /// Bytes of object entries the initial pass has still to send.
    var remainingInitialBytes: Int {
        var bytes = 0
        for kind in IBObjectKind.allCases {
            let start = offsets[kind.ordinal], end = offsets[kind.ordinal + 1]
            let remaining = end - max(start, min(end, initialCursor))
            bytes += remaining * IBStreamFormat.entrySize(kind)
        }
        return bytes
    }

    var dirtyBytes: Int {
        IBObjectKind.allCases.reduce(0) { $0 + dirty.counts[$1.ordinal] * IBStreamFormat.entrySize($1) }
    }
}
