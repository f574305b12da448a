import Testing

@testable import RdmigDeviceState

#if canImport(Glibc)
import Glibc
#endif

/// One device's migration over an in-memory wire: the sender frames the source's reads as
/// chunk records in a slot buffer, the receiver loads them into the destination.
struct LoopbackMigration {
    let source: any DeviceStateProvider
    let destination: any DeviceStateProvider
    var encoder = ChunkRecordEncoder()
    var sender: DeviceStateSender
    var receiver: DeviceStateReceiver
    var slot: [UInt8]
    var wire: [[UInt8]] = []

    init(source: any DeviceStateProvider, destination: any DeviceStateProvider, payloadPerRecord: Int = 64 << 10) {
        self.source = source
        self.destination = destination
        sender = DeviceStateSender(provider: source, tag: 3)
        receiver = DeviceStateReceiver(providers: [3: destination])
        slot = [UInt8](repeating: 0, count: ChunkRecordHeader.size + payloadPerRecord)
    }

    /// Sends pre-copy records until the device has nothing pending; returns how many.
    mutating func pumpPrecopy(deliver: Bool = true) throws -> Int {
        var count = 0
        while true {
            var sender = self.sender
            var encoder = self.encoder
            let length = try slot.withUnsafeMutableBytes { try sender.nextPrecopyRecord(encoder: &encoder, into: $0) }
            self.sender = sender
            self.encoder = encoder
            guard let length else { return count }
            try send(Array(slot[0..<length]), deliver: deliver)
            count += 1
        }
    }

    mutating func pumpStopCopy(deliver: Bool = true) throws {
        while true {
            var sender = self.sender
            var encoder = self.encoder
            let length = try slot.withUnsafeMutableBytes { try sender.nextStopCopyRecord(encoder: &encoder, into: $0) }
            self.sender = sender
            self.encoder = encoder
            guard let length else { return }
            try send(Array(slot[0..<length]), deliver: deliver)
        }
    }

    mutating func send(_ record: [UInt8], deliver: Bool) throws {
        wire.append(record)
        if deliver { try record.withUnsafeBytes { try receiver.receive($0) } }
    }
}

/// Reads a saving provider until it has nothing more, in pieces of `piece` bytes.
func readStream(_ provider: any DeviceStateProvider, piece: Int) throws -> [UInt8] {
    var stream: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: piece)
    while true {
        let result = try buffer.withUnsafeMutableBytes { try provider.read(into: $0) }
        guard case .bytes(let count) = result else { return stream }
        stream += buffer[0..<count]
    }
}

/// Writes `stream` into a resuming provider in pieces of the given sizes, cycling.
func writeStream(_ stream: [UInt8], to provider: any DeviceStateProvider, pieces: [Int] = [1 << 20]) throws {
    var start = 0
    var turn = 0
    while start < stream.count {
        let end = min(stream.count, start + pieces[turn % pieces.count])
        try stream[start..<end].withUnsafeBytes { try provider.write($0) }
        start = end
        turn += 1
    }
}

/// The entries of an ib-sw stream: type, index and byte range, walked by their headers.
func entries(of stream: [UInt8]) -> [(type: UInt8, index: Int, range: Range<Int>)] {
    var result: [(UInt8, Int, Range<Int>)] = []
    var offset = 0
    while offset + 8 <= stream.count {
        let length = Int(stream[offset + 2]) | Int(stream[offset + 3]) << 8
        let index = Int(stream[offset + 4]) | Int(stream[offset + 5]) << 8 | Int(stream[offset + 6]) << 16
            | Int(stream[offset + 7]) << 24
        result.append((stream[offset], index, offset..<(offset + 8 + length)))
        offset += 8 + length
    }
    return result
}

@Suite struct IBSoftwareMigration {
    @Test func precopyWithDirtyRoundsAndStopCopyReproducesTheSourceExactly() throws {
        let source = try IBSoftwareDeviceStateProvider(spec: "ib-sw:qps=2000,seed=7")
        let destination = try IBSoftwareDeviceStateProvider(spec: "ib-sw:qps=2000,seed=8")
        #expect(source.snapshot() != destination.snapshot())
        var migration = LoopbackMigration(source: source, destination: destination)
        try destination.enterResuming()
        try source.enterPreCopy()
        source.step(300)  // changes before the initial pass reaches them are read as they are

        #expect(try migration.pumpPrecopy() > 1)
        #expect(try source.precopyInfo() == PrecopyInfo(initialBytes: 0, dirtyBytes: 0))
        #expect(migration.receiver.initialDataLoaded(tag: 3))

        for _ in 0..<4 {
            #expect(source.step(500) == 500)
            let dirty = try source.precopyInfo().dirtyBytes
            #expect(dirty > 0)
            #expect(try migration.pumpPrecopy() >= 1)
            #expect(try source.precopyInfo().dirtyBytes == 0)
        }
        source.step(250)
        try source.enterStopCopy()
        let estimate = try source.stopCopySize()
        let before = migration.sender.stopCopyBytes
        try migration.pumpStopCopy()
        #expect(migration.sender.stopCopyBytes - before == estimate)
        #expect(migration.receiver.allStopCopyComplete)
        try migration.receiver.finish()
        try source.transition(to: .stop)

        try destination.finishResuming(run: true)
        #expect(destination.state == .running)
        #expect(destination.snapshot().difference(from: source.snapshot()) == [])
        #expect(destination.snapshot() == source.snapshot())
        #expect(try destination.stateDigest() == source.stateDigest())
        #expect(migration.receiver.precopyBytes == migration.sender.precopyBytes)
    }

    @Test func readsOfAnySizeYieldTheSameStream() throws {
        var streams: [[UInt8]] = []
        for piece in [1 << 20, 1, 7, 88, 1000] {
            let source = try IBSoftwareDeviceStateProvider(spec: "ib-sw:qps=100")
            try source.enterStopCopy()
            streams.append(try readStream(source, piece: piece))
            var spare = [UInt8](repeating: 0, count: 8)
            #expect(try spare.withUnsafeMutableBytes { try source.read(into: $0) } == .endOfStream)
        }
        #expect(streams.allSatisfy { $0 == streams[0] })
        #expect(UInt64(streams[0].count) == (try IBSoftwareDeviceStateProvider(spec: "ib-sw:qps=100").stopCopySize()))
    }

    @Test func writesOfAnySegmentationLoadTheSameState() throws {
        let source = try IBSoftwareDeviceStateProvider(spec: "ib-sw:qps=300")
        try source.enterStopCopy()
        let stream = try readStream(source, piece: 4096)
        let destination = try IBSoftwareDeviceStateProvider(spec: "ib-sw:qps=300,seed=2")
        try destination.enterResuming()
        try writeStream(stream, to: destination, pieces: [1, 3, 8, 9, 87, 88, 89, 500, 7])
        try destination.finishResuming(run: false)
        #expect(destination.state == .stop)
        #expect(destination.snapshot() == source.snapshot())
    }

    @Test func precopyInfoCountsInitialBytesDownThenDirtyBytes() throws {
        let source = try IBSoftwareDeviceStateProvider(spec: "ib-sw:qps=500")
        let full = try source.stopCopySize()
        try source.enterPreCopy()
        let start = try source.precopyInfo()
        #expect(start.initialBytes + UInt64(IBStreamFormat.endEntrySize) == full)
        #expect(start.dirtyBytes == 0)
        var piece = [UInt8](repeating: 0, count: 1001)
        _ = try piece.withUnsafeMutableBytes { try source.read(into: $0) }
        #expect(try source.precopyInfo().initialBytes == start.initialBytes - 1001)
        _ = try readStream(source, piece: 4096)
        #expect(try source.precopyInfo() == PrecopyInfo(initialBytes: 0, dirtyBytes: 0))
        #expect(try piece.withUnsafeMutableBytes { try source.read(into: $0) } == .nothingPending)
        source.step(40)
        let dirty = try source.precopyInfo().dirtyBytes
        #expect(dirty > 0)
        let resent = try readStream(source, piece: 333)
        #expect(UInt64(resent.count) == dirty)
        #expect(try source.precopyInfo().dirtyBytes == 0)
    }

    @Test func aCorruptedFieldIsRefusedOnLoadAndNamedObjectByObject() throws {
        let source = try IBSoftwareDeviceStateProvider(spec: "ib-sw:qps=200")
        try source.enterStopCopy()
        var stream = try readStream(source, piece: 1 << 20)
        let qp = try #require(entries(of: stream).first { $0.type == IBObjectKind.queuePair.rawValue && $0.index == 5 })
        // The body's sendPSN field follows qpn, type, state, port, sl, pdn, CQs, srqn,
        // pkey index, dlid and qkey: 32 bytes in, after the 8-byte entry header.
        let sendPSN = qp.range.lowerBound + 8 + 32
        stream[sendPSN] ^= 0x01

        let destination = try IBSoftwareDeviceStateProvider(spec: "ib-sw:qps=200")
        try destination.enterResuming()
        try writeStream(stream, to: destination)
        let error = #expect(throws: DeviceStateError.self) { try destination.finishResuming(run: false) }
        guard case .incompleteState(device: "ib-sw:qps=200", reason: let reason) = error else {
            Issue.record("expected the load to be refused, got \(String(describing: error))")
            return
        }
        #expect(reason.contains("does not match the source's"))
        #expect(destination.state == .error)
        let original = source.snapshot().queuePairs[5].sendPSN
        #expect(destination.snapshot().difference(from: source.snapshot())
            == ["qp 0x205: sendPSN \(original ^ 1) != \(original)"])
        try destination.abortToRunning()
        #expect(destination.state == .running)
    }

    @Test func aDroppedObjectIsNamedAsNeverArrived() throws {
        let source = try IBSoftwareDeviceStateProvider(spec: "ib-sw:qps=200")
        try source.enterStopCopy()
        let stream = try readStream(source, piece: 1 << 20)
        let mr = try #require(entries(of: stream).first { $0.type == IBObjectKind.memoryRegion.rawValue && $0.index == 17 })
        let dropped = Array(stream[..<mr.range.lowerBound] + stream[mr.range.upperBound...])
        let destination = try IBSoftwareDeviceStateProvider(spec: "ib-sw:qps=200")
        try destination.enterResuming()
        try writeStream(dropped, to: destination, pieces: [4000])
        #expect(throws: DeviceStateError.incompleteState(
            device: "ib-sw:qps=200", reason: "1 of \(source.configuration.shape.objectCount) objects never arrived (first: mr #17)")) {
            try destination.finishResuming(run: false)
        }
        #expect(destination.snapshot().difference(from: source.snapshot()).first?.hasPrefix("mr 0x111: lkey 0 != ") == true)
    }

    @Test func aDroppedDirtyUpdateLeavesAStaleObjectThatIsNamed() throws {
        let source = try IBSoftwareDeviceStateProvider(spec: "ib-sw:qps=300,seed=3")
        try source.enterPreCopy()
        var stream = try readStream(source, piece: 1 << 20)
        let before = source.snapshot()
        source.step(200)
        let changed = source.snapshot()
        let stale = try #require(changed.queuePairs.indices.first { changed.queuePairs[$0] != before.queuePairs[$0] })
        let update = try readStream(source, piece: 1 << 20)
        let updateEntries = entries(of: update)
        let entry = try #require(updateEntries.last { $0.type == IBObjectKind.queuePair.rawValue && $0.index == stale })
        stream += update[..<entry.range.lowerBound] + update[entry.range.upperBound...]
        try source.enterStopCopy()
        stream += try readStream(source, piece: 1 << 20)

        let destination = try IBSoftwareDeviceStateProvider(spec: "ib-sw:qps=300,seed=3")
        try destination.enterResuming()
        try writeStream(stream, to: destination, pieces: [65536])
        #expect(throws: DeviceStateError.self) { try destination.finishResuming(run: false) }
        let difference = destination.snapshot().difference(from: source.snapshot())
        #expect(difference.count == 1)
        #expect(difference.first?.hasPrefix("qp \(hex(changed.queuePairs[stale].qpn)): ") == true)
    }

    @Test func theRecordLayerRefusesACorruptOrMissingRecordBeforeTheDeviceSeesIt() throws {
        for tamper in ["corrupt", "drop"] {
            let source = try IBSoftwareDeviceStateProvider(spec: "ib-sw:qps=400")
            let destination = try IBSoftwareDeviceStateProvider(spec: "ib-sw:qps=400")
            var migration = LoopbackMigration(source: source, destination: destination, payloadPerRecord: 4096)
            try source.enterPreCopy()
            try destination.enterResuming()
            _ = try migration.pumpPrecopy(deliver: false)
            var wire = migration.wire
            #expect(wire.count > 5)
            if tamper == "corrupt" { wire[3][ChunkRecordHeader.size + 100] ^= 0x40 } else { wire.remove(at: 2) }
            var receiver = DeviceStateReceiver(providers: [3: destination])
            let error = #expect(throws: ChunkRecordError.self) {
                for record in wire { try record.withUnsafeBytes { try receiver.receive($0) } }
            }
            let recordSize = UInt64(ChunkRecordHeader.size + 4096)
            if tamper == "corrupt" {
                guard case .payloadChecksumMismatch(seq: 3, offset: 3 * recordSize, _, _) = error else {
                    Issue.record("expected record 3 to fail its checksum, got \(String(describing: error))")
                    continue
                }
            } else {
                #expect(error == .outOfOrder(seq: 3, expected: 2, offset: 2 * recordSize))
            }
        }
    }

    @Test func recordsForUnknownOrFinishedDevicesAreRefused() throws {
        let destination = try IBSoftwareDeviceStateProvider(spec: "ib-sw:qps=10")
        try destination.enterResuming()
        let stray = try recordStream([(.precopy, 99, [], [1, 2, 3])])
        var receiver = DeviceStateReceiver(providers: [3: destination])
        #expect(throws: ChunkRecordError.unknownTag(seq: 0, offset: 0, tag: 99)) {
            try stray.withUnsafeBytes { try receiver.receive($0) }
        }
        let late = try recordStream([(.stopCopy, 3, .endOfPhase, []), (.stopCopy, 3, [], [1])])
        var second = DeviceStateReceiver(providers: [3: destination])
        #expect(throws: ChunkRecordError.recordAfterEnd(seq: 1, offset: 32, tag: 3)) {
            try late.withUnsafeBytes { try second.receive($0) }
        }
    }

    @Test func aStoppedDeviceDoesNotChangeAndAbortResumesTheSource() throws {
        let source = try IBSoftwareDeviceStateProvider(spec: "ib-sw:qps=100")
        try source.enterPreCopy()
        _ = try readStream(source, piece: 1 << 16)
        try source.enterStopCopy()
        let frozen = source.snapshot()
        #expect(source.step(1000) == 0)
        #expect(source.snapshot() == frozen)
        try source.abortToRunning()
        #expect(source.state == .running)
        #expect(source.step(10) == 10)
        #expect(throws: DeviceStateError.wrongState(
            device: "ib-sw:qps=100", operation: "read", state: .running, expected: "PRE_COPY or STOP_COPY")) {
            try readStream(source, piece: 64)
        }
    }

    @Test func arcsTheUAPIForbidsAreRefused() throws {
        let device = try IBSoftwareDeviceStateProvider(spec: "ib-sw:qps=10")
        #expect(throws: DeviceStateError.self) { try device.transition(to: .runningP2P) }
        #expect(throws: DeviceStateError.wrongState(
            device: "ib-sw:qps=10", operation: "precopy info", state: .running, expected: "PRE_COPY")) {
            try device.precopyInfo()
        }
        #expect(throws: DeviceStateError.wrongState(
            device: "ib-sw:qps=10", operation: "write", state: .running, expected: "RESUMING")) {
            try [UInt8(0)].withUnsafeBytes { try device.write($0) }
        }
        try device.enterStopCopy()
        #expect(device.state == .stopCopy)
        #expect(throws: DeviceStateError.invalidTransition(
            device: "ib-sw:qps=10", from: .stopCopy, to: .preCopy, reason: "the VFIO state machine has no such arc")) {
            try device.enterPreCopy()
        }
        #expect(throws: DeviceStateError.self) { try device.transition(to: .error) }
    }

    @Test func aDestinationOfAnotherShapeRefusesTheStream() throws {
        let source = try IBSoftwareDeviceStateProvider(spec: "ib-sw:qps=100")
        try source.enterStopCopy()
        let stream = try readStream(source, piece: 1 << 20)
        let destination = try IBSoftwareDeviceStateProvider(spec: "ib-sw:qps=200")
        try destination.enterResuming()
        let error = #expect(throws: DeviceStateError.self) { try writeStream(stream, to: destination) }
        guard case .incompatibleDevice = error else {
            Issue.record("expected incompatibleDevice, got \(String(describing: error))")
            return
        }
        #expect(destination.state == .error)
    }

    @Test func garbageIsRefusedAsACorruptStream() throws {
        let destination = try IBSoftwareDeviceStateProvider(spec: "ib-sw:qps=10")
        try destination.enterResuming()
        let error = #expect(throws: DeviceStateError.self) {
            try [UInt8](repeating: 0x16, count: 200).withUnsafeBytes { try destination.write($0) }
        }
        #expect(error == .corruptStream(
            device: "ib-sw:qps=10", offset: 0, reason: "entry header's reserved byte is 22, not 0"))
        let empty = try IBSoftwareDeviceStateProvider(spec: "ib-sw:qps=10")
        try empty.enterResuming()
        #expect(throws: DeviceStateError.incompleteState(
            device: "ib-sw:qps=10", reason: "no ib-sw stream header arrived: nothing was loaded")) {
            try empty.finishResuming(run: false)
        }
    }

    @Test func aStreamCutBeforeItsEndIsRefused() throws {
        let source = try IBSoftwareDeviceStateProvider(spec: "ib-sw:qps=50")
        try source.enterStopCopy()
        let stream = try readStream(source, piece: 1 << 20)
        let destination = try IBSoftwareDeviceStateProvider(spec: "ib-sw:qps=50")
        try destination.enterResuming()
        try writeStream(Array(stream.dropLast(IBStreamFormat.endEntrySize)), to: destination)
        let error = #expect(throws: DeviceStateError.self) { try destination.finishResuming(run: false) }
        #expect(error?.description.contains("has no end entry") == true)
    }

    @Test func theMutatorThreadDirtiesTheRunningDevice() throws {
        let source = try IBSoftwareDeviceStateProvider(spec: "ib-sw:qps=1000")
        try source.enterPreCopy()
        _ = try readStream(source, piece: 1 << 20)
        let mutator = try IBMutatorThread(provider: source, changesPerSecond: 200_000, batch: 100)
        var waited = 0
        while mutator.applied < 1000 && waited < 2000 {
            usleep(5000)
            waited += 5
        }
        mutator.stop()
        #expect(mutator.applied >= 1000)
        #expect(try source.precopyInfo().dirtyBytes > 0)
    }

    @Test func differenceNamesTheFirstDifferingFieldOfEachObject() throws {
        let reference = IBVFState(populating: IBVFConfiguration(queuePairs: 20))
        var copy = reference
        copy.queuePairs[3].state = .error
        copy.memoryRegions[0].rkey = 0xDEAD
        copy.completionQueues[1].consumerIndex &+= 1
        let lines = copy.difference(from: reference)
        #expect(lines == [
            "mr 0x100: rkey 57005 != \(reference.memoryRegions[0].rkey)",
            "cq 0x81: consumerIndex \(copy.completionQueues[1].consumerIndex) != \(reference.completionQueues[1].consumerIndex)",
            "qp 0x203: state error != \(reference.queuePairs[3].state)",
        ])
        #expect(copy.difference(from: reference, limit: 1).count == 1)
        #expect(reference.difference(from: reference) == [])
        #expect(copy.digest() != reference.digest())
        let digest = reference.digest()
        #expect(DeviceStateDigest(encoded: digest.encoded) == digest)
    }

    @Test func aHundredThousandQPsSerializeAndLoad() throws {
        let clock = ContinuousClock()
        let started = clock.now
        let source = try IBSoftwareDeviceStateProvider(spec: "ib-sw:qps=100k")
        let populated = clock.now
        try source.enterStopCopy()
        let estimate = try source.stopCopySize()
        let stream = try readStream(source, piece: 1 << 20)
        let serialized = clock.now
        #expect(UInt64(stream.count) == estimate)
        let destination = try IBSoftwareDeviceStateProvider(spec: "ib-sw:qps=100k,seed=5")
        try destination.enterResuming()
        try writeStream(stream, to: destination)
        try destination.finishResuming(run: false)
        let loaded = clock.now
        #expect(destination.snapshot() == source.snapshot())
        print("ib-sw 100k QPs: \(stream.count) bytes; populate \(populated - started), serialize \(serialized - populated), "
            + "load+verify \(loaded - serialized) (debug build)")
    }
}
