import RdmigChannels
import RdmigDeviceState
import RdmigSystem

/// The VF state stream into the destination's ring, and the chunk records it carries. Its
/// passes run on a thread of their own (`inBackground`), beside the pages: during pre-copy,
/// and with the guest paused, in parallel with the last pages instead of after them.
final class SourceDeviceStream: @unchecked Sendable {
    let stream: ByteStreamSender
    /// VF_STATE_DONE goes out on the migration's control channel (it serializes its senders).
    let session: MigrationSession
    private var encoder = ChunkRecordEncoder()
    /// One chunk record at a time is encoded here before it goes into the stream.
    private let recordBuffer: UnsafeMutableRawBufferPointer

    init(session: MigrationSession, ring: StreamRing) throws(MigrationError) {
        self.session = session
        do {
            stream = try ByteStreamSender(router: session.router, ring: ring)
        } catch {
            throw MigrationError(.layout, "opening the VF state stream: \(error)")
        }
        recordBuffer = .allocate(byteCount: ChunkRecordHeader.size + ChunkRecordHeader.defaultMaxPayload, alignment: 64)
    }

    deinit {
        recordBuffer.deallocate()
    }

    /// Runs `work` over a copy of `devices` on a thread of its own; `DeviceStreamJob.finish`
    /// joins it and returns the devices as the work left them.
    func inBackground(_ devices: [SourceDevice], name: String,
                      _ work: @escaping @Sendable (SourceDeviceStream, inout [SourceDevice]) throws(MigrationError) -> UInt64)
        throws(MigrationError) -> DeviceStreamJob {
        let job = DeviceStreamJob(devices: devices)
        do {
            job.thread = try SystemThread(name: name) { [self] in job.run(self, work) }
        } catch {
            throw MigrationError(.precopy, "starting the VF state thread: \(error)")
        }
        return job
    }

    /// Pre-copy VF state: what the device has pending now, bounded so a busy device cannot
    /// keep one iteration going forever.
    func sendPrecopy(_ device: inout SourceDevice, limit: WaitLimit) throws(MigrationError) -> UInt64 {
        let budget: UInt64
        do {
            let info = try device.provider.precopyInfo()
            budget = info.initialBytes + info.dirtyBytes + 1
        } catch {
            throw MigrationError(.precopy, "VF \(device.provider.name): \(error)")
        }
        let before = device.sender.precopyBytes
        var wrote = false
        while device.sender.precopyBytes - before < budget {
            let length: Int?
            do {
                length = try device.sender.nextPrecopyRecord(encoder: &encoder, into: recordBuffer)
            } catch {
                throw MigrationError(.precopy, "VF \(device.provider.name) pre-copy: \(error)")
            }
            guard let length else { break }
            try write(length, limit: limit, .precopy, during: "streaming VF \(device.provider.name) state")
            wrote = true
        }
        // A partly filled slot would otherwise wait for more state: the destination needs the
        // initial bytes now, to acknowledge them before switchover.
        if wrote { try flush(limit: limit, .precopy, during: "streaming VF \(device.provider.name) state") }
        return device.sender.precopyBytes - before
    }

    /// Stop-copy VF state: everything the stopped device has left, then VF_STATE_DONE.
    func sendStopCopy(_ device: inout SourceDevice, limit: WaitLimit) throws(MigrationError) -> UInt64 {
        var records: UInt64 = 0
        while true {
            let length: Int?
            do {
                length = try device.sender.nextStopCopyRecord(encoder: &encoder, into: recordBuffer)
            } catch {
                throw MigrationError(.switchover, "VF \(device.provider.name) stop-copy: \(error)")
            }
            guard let length else { break }
            records += 1
            try write(length, limit: limit, .switchover, during: "streaming VF \(device.provider.name) stop-copy state")
        }
        try session.send(.vfStateDone(.init(deviceID: device.id, phase: .stopCopy, bytes: device.sender.stopCopyBytes, records: records, checksum: 0)),
                         .switchover)
        return device.sender.stopCopyBytes
    }

    func flush(limit: WaitLimit, _ phase: MigrationError.Phase, during: String) throws(MigrationError) {
        do {
            try stream.flush(timeout: limit.timeout)
        } catch {
            throw MigrationError.channel(error, phase, during: during)
        }
    }

    private func write(_ length: Int, limit: WaitLimit, _ phase: MigrationError.Phase, during: String) throws(MigrationError) {
        do {
            try stream.write(UnsafeRawBufferPointer(rebasing: recordBuffer[0..<length]), timeout: limit.timeout)
        } catch {
            throw MigrationError.channel(error, phase, during: during)
        }
    }
}

/// A VF state pass running beside the pages. Its devices and result are read only after
/// `finish` joined the thread.
final class DeviceStreamJob: @unchecked Sendable {
    private(set) var devices: [SourceDevice]
    private var result: Result<UInt64, MigrationError> = .success(0)
    /// How long the pass took on its thread (for the downtime's laps).
    private(set) var elapsed: Duration = .zero
    fileprivate var thread: SystemThread?

    fileprivate init(devices: [SourceDevice]) {
        self.devices = devices
    }

    fileprivate func run(_ stream: SourceDeviceStream,
                         _ work: (SourceDeviceStream, inout [SourceDevice]) throws(MigrationError) -> UInt64) {
        let start = ContinuousClock.now
        result = Result { () throws(MigrationError) in try work(stream, &devices) }
        elapsed = .now - start
    }

    /// Joins the thread; the bytes the pass sent, or its error.
    func finish() throws(MigrationError) -> UInt64 {
        thread?.join()
        return try result.get()
    }
}
