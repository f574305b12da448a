import RdmigChannels
import RdmigDeviceState
import RdmigTransport

/// Real encodings of every message and record kind, made with rdmig's own encoders (or, for
/// QMP, written as QEMU writes them), in the input format of each target. `rdmig-fuzz seeds
/// DIR` writes them as the committed corpus; the short run in `swift test` starts from them.
package enum FuzzSeeds {
    static let window = RemoteWindow(address: 0x7F12_3456_7000, length: 1 << 30, remoteKey: 0xDEAD_BEEF)

    /// One or more of every migration message, with fields that exercise every branch
    /// (non-zero, high bits, non-ASCII text, empty and non-empty lists).
    package static let messages: [MigrationMessage] = [
        .hello(.init(role: .source, features: [.zeroPageMarkers, .deviceState, .digests],
                     nonce: (0..<32).map { UInt8($0 * 7 & 0xFF) }, software: "rdmig 0.1.0 – fuzz")),
        .hello(.init(role: .destination, features: [.qemuStream, .switchoverAck], nonce: Array(repeating: 0x11, count: 16), software: "")),
        .auth(.init(mac: (0..<32).map { UInt8(255 - $0) })),
        .layout(.init(
            regions: [.init(id: 0, guestPhysicalBase: 0, length: 1 << 31, pageSize: 4096),
                      .init(id: 1, guestPhysicalBase: 0x1_0000_0000, length: 1 << 30, pageSize: 2 << 20)],
            devices: [.init(id: 7, kind: "ib-sw", stateVersion: 3, needsSwitchoverAck: true)], channels: 16)),
        .layout(.init(regions: [], devices: [])),
        .windows(.init(regions: [.init(regionID: 0, window: window),
                                 .init(regionID: 1, window: RemoteWindow(address: 0x1000, length: 4096, remoteKey: 1))], channels: 3)),
        .streamRing(StreamRing(channel: .deviceState, window: window, slotCount: 8, slotSize: 64 * 1024)),
        .streamRing(StreamRing(channel: .qemuStream, window: RemoteWindow(address: 0x2000, length: 64, remoteKey: 9), slotCount: 1, slotSize: 64)),
        .iterationDone(.init(iteration: 3, pagesWritten: 123_456, zeroPages: 789, bytesWritten: 123_456 * 4096)),
        .zeroPages(.init(iteration: 3, regionID: 1, runs: [PageRun(firstPage: 0, count: 1), PageRun(firstPage: 1 << 40, count: 77)])),
        .zeroPages(.init(iteration: 0, regionID: 0, runs: [])),
        .zeroPagesApplied(.init(iteration: 3)),
        .switchover(.init(iteration: 9, reason: .forced, remainingDirtyBytes: 5 << 20, deviceStopCopyBytes: 300 << 20)),
        .switchover(.init(iteration: 2, reason: .converged, remainingDirtyBytes: 0, deviceStopCopyBytes: 0)),
        .switchoverAck(.init(deviceID: 7)),
        .vfStateDone(.init(deviceID: 7, phase: .stopCopy, bytes: 1 << 33, records: 4242, checksum: 0xCAFE_F00D)),
        .vfStateDone(.init(deviceID: 1, phase: .preCopy, bytes: 0, records: 0, checksum: 0)),
        .digests(.init(entries: [.init(subject: .region, id: 0, algorithm: .xxh3ChunkTable, value: Array(repeating: 0xAB, count: 8)),
                                 .init(subject: .region, id: 1, algorithm: .sha256, value: Array(repeating: 0xAB, count: 32)),
                                 .init(subject: .device, id: 7, algorithm: .crc32c, value: [1, 2, 3, 4])])),
        .ready,
        .commit,
        .abort(.init(reason: "destination ran out of memory – giving up")),
        .error(.init(code: 42, message: "VF state checksum mismatch")),
        .touchedChunks(.init(iteration: 3, regionID: 0, chunkSize: 4096, firstChunk: 65536, bitmap: [0b1010_0001, 0, 0xFF])),
        .touchedChunks(.init(iteration: 4, regionID: 1, chunkSize: 64, firstChunk: 0, isLast: false, bitmap: [])),
        .resumed,
        .qemuOutcome(.init(guest: .loadedNotResumed, completedMicroseconds: 1_764_165_000_123_456, resumeMicroseconds: 0,
                           relayBytes: 5 << 30, relayMicroseconds: 3_000_001, detail: "cont failed – guest paused")),
        .qemuOutcome(.init(guest: .resumed, completedMicroseconds: 1_764_165_000_123_456, resumeMicroseconds: 1_764_165_000_200_000,
                           relayBytes: 1 << 30, relayMicroseconds: 900_000, detail: "")),
        .join(.init(migrationID: Array(101...116), channel: 15)),
        .join(.init(migrationID: Array(repeating: 0, count: 16), channel: 1)),
    ]

    static let channelSetup = ChannelSetup(signalWindow: window, receiveCount: 64, receiveBufferSize: 64 << 10)

    static func frame<M: ControlMessage>(_ message: M) -> [UInt8] {
        // Seeds are rdmig's own messages: encoding them cannot fail.
        try! ControlFrame.encodedBytes(message)
    }

    package static var controlFrames: [[UInt8]] { messages.map(frame) + [frame(channelSetup)] }

    /// Type byte + payload (the target frames them).
    package static var controlMessages: [[UInt8]] {
        (messages.map(frame) + [frame(channelSetup)]).map { frame in
            [frame[6]] + frame[ControlFrameHeader.size...]
        }
    }

    /// Mode 0 + a frame sealed at sequence 0, mode 1 + an unsealed frame, mode 2 + type byte and payload.
    package static var authenticatedFrames: [[UInt8]] {
        let sealed = messages.map { [0] + ControlFrameTargets.encodeSealed($0, sequence: 0) }
        let plain = messages.prefix(8).map { [1] + frame($0) }
        let payloads = controlMessages.suffix(8).map { [2] + $0 }
        return sealed + plain + payloads
    }

    // MARK: Device state

    /// The stream of an ib-sw VF of the fuzzed shape: pre-copy (everything once, then what the
    /// guest changed) and stop-copy (what changed since, then the end entry), or stop-copy only.
    static func ibStream(withPrecopy: Bool) -> [UInt8] {
        let source = IBSoftwareDeviceStateProvider(configuration: DeviceStateTargets.ibConfiguration, name: "seed")
        var stream: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        func drain() {
            while true {
                let result = try! buffer.withUnsafeMutableBytes { try source.read(into: $0) }
                guard case .bytes(let count) = result else { return }
                stream += buffer[0..<count]
            }
        }
        if withPrecopy {
            try! source.transition(to: .preCopy)
            drain()
            source.step(5)
            drain()
            source.step(3)
        }
        try! source.transition(to: .stopCopy)
        drain()
        return stream
    }

    package static var ibStreams: [[UInt8]] {
        let full = ibStream(withPrecopy: false)
        let precopy = ibStream(withPrecopy: true)
        return [[255] + full, [0] + full, [6] + precopy, [40] + precopy, [7] + Array(full.prefix(60))]
    }

    /// Records as the device-state sender frames them: several tags, both phases, flags, an
    /// empty record, payloads from an ib-sw stream.
    package static var chunkRecordStreams: [[UInt8]] {
        let payload = ibStream(withPrecopy: false)
        func records(_ pieces: [(ChunkPhase, UInt32, ChunkRecordFlags, ArraySlice<UInt8>)], firstSeq: UInt64 = 0) -> [UInt8] {
            var encoder = ChunkRecordEncoder(firstSeq: firstSeq, maxPayload: DeviceStateTargets.chunkPayloadLimit)
            var stream: [UInt8] = []
            for (phase, tag, flags, bytes) in pieces {
                var buffer = [UInt8](repeating: 0, count: ChunkRecordHeader.size + bytes.count)
                let length = buffer.withUnsafeMutableBytes { raw in
                    bytes.withUnsafeBytes { try! encoder.encode(phase: phase, tag: tag, flags: flags, payload: $0, into: raw) }
                }
                stream += buffer[0..<length]
            }
            return stream
        }
        let half = payload.count / 2
        let oneDevice = records([
            (.precopy, 3, [], payload[0..<half]),
            (.precopy, 3, [.initialDataComplete], payload[half..<half]),
            (.stopCopy, 3, [], payload[half...]),
            (.stopCopy, 3, [.endOfPhase], payload[0..<0]),
        ])
        let twoDevices = records([
            (.precopy, 1, [], payload[0..<40]),
            (.precopy, 2, [.endOfPhase], payload[40..<100]),
            (.stopCopy, 1, [.endOfPhase], payload[100..<101]),
            (.stopCopy, 2, [.endOfPhase], payload[101..<300]),
        ], firstSeq: 17)
        return [[0] + oneDevice, [31] + oneDevice, [255] + twoDevices, [2] + twoDevices, [9] + Array(oneDevice.prefix(50))]
    }

    // MARK: TCP

    package static var tcpFrames: [[UInt8]] {
        let headers: [TCPFrameHeader] = [
            TCPFrameHeader(kind: .write, flags: [.hasImmediate, .completionRequested], key: 0x1234, address: 0x7F00_0000_1000,
                           length: 4096, immediate: 0x0300_0001, sequence: 1),
            TCPFrameHeader(kind: .write, flags: [], key: 7, address: 0x1000, length: 0, sequence: 2),
            TCPFrameHeader(kind: .send, flags: [.completionRequested], length: 96, sequence: 3),
            TCPFrameHeader(kind: .ack, address: 512, sequence: 3),
            TCPFrameHeader(kind: .error, key: TCPFrameHeader.ErrorCode.remoteAccess.rawValue, length: 40, sequence: 1),
            TCPFrameHeader(kind: .close),
        ]
        var all: [UInt8] = []
        var single: [[UInt8]] = []
        for header in headers {
            var bytes = [UInt8](repeating: 0, count: TCPFrameHeader.size)
            bytes.withUnsafeMutableBytes { header.encode(into: $0.baseAddress!) }
            single.append([0] + bytes)
            all += bytes
        }
        return single + [[0] + all, [1] + TCPPreamble.encode(), [1] + TCPPreamble.encode(version: 2),
                         [1] + Array(TCPPreamble.encode().prefix(9)), [1] + Array("GET / HTTP/1.1\r\n".utf8)]
    }

    // MARK: QMP

    /// Messages as QEMU 10.0 writes them (one line each, compact JSON).
    package static let qmpLines: [String] = [
        #"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "Debian 1:10.0.2+ds-2+deb13u1~bpo12+1"}, "capabilities": ["oob"]}}"#,
        #"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}"#,
        #"{"return": {}}"#,
        #"{"return": {}, "id": 1}"#,
        #"{"return": {"status": "setup"}, "id": 2}"#,
        #"{"return": {"expected-downtime": 300, "status": "active", "setup-time": 2, "total-time": 1234, "ram": {"total": 1074077696, "postcopy-requests": 0, "dirty-sync-count": 2, "multifd-bytes": 0, "pages-per-second": 38000, "downtime-bytes": 0, "page-size": 4096, "remaining": 12345, "postcopy-bytes": 0, "mbps": 1234.5, "transferred": 123456789, "precopy-bytes": 123456789, "duplicate": 200000, "dirty-pages-rate": 1000, "normal-bytes": 100000000, "normal": 24414}}, "id": 3}"#,
        #"{"return": {"status": "completed", "setup-time": 3, "downtime": 41, "total-time": 2210, "ram": {"total": 1074077696, "mbps": 3110.7, "transferred": 812345678, "normal": 198000, "duplicate": 64000, "dirty-sync-count": 4, "page-size": 4096}}, "id": 4}"#,
        #"{"return": {"status": "failed", "error-desc": "Unable to write to socket: Broken pipe"}, "id": 5}"#,
        #"{"return": {"status": "pre-switchover", "total-time": 900}, "id": 6}"#,
        #"{"return": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "Debian 1:10.0.2"}, "id": 7}"#,
        #"{"return": [{"name": "oob"}, 1, 2.5, -3, true, false, null, "x\u00e9\n\"q\""], "id": 8}"#,
        #"{"error": {"class": "GenericError", "desc": "Parameter 'uri' is missing"}, "id": 9}"#,
        #"{"error": {"class": "CommandNotFound", "desc": "The command foo has not been found"}}"#,
        #"{"timestamp": {"seconds": 1764165000, "microseconds": 123456}, "event": "STOP"}"#,
        #"{"timestamp": {"seconds": 1764165001, "microseconds": 5}, "event": "RESUME", "data": {"reason": "migration"}}"#,
        #"{"timestamp": {"seconds": 1764165000, "microseconds": 999999}, "event": "MIGRATION", "data": {"status": "completed"}}"#,
        #"{"timestamp": {"seconds": 1764165000, "microseconds": 1}, "event": "MIGRATION_PASS", "data": {"pass": 3}}"#,
        #"{"timestamp": {"seconds": -1, "microseconds": -1}, "event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}"#,
    ]

    package static var qmpMessages: [[UInt8]] { qmpLines.map { Array($0.utf8) } }

    /// A session's bytes as they arrive: greeting, replies and events, "\r\n" after each.
    package static var qmpByteStreams: [[UInt8]] {
        let session = Array(qmpLines.prefix(8).joined(separator: "\r\n").utf8) + Array("\r\n".utf8)
        let events = Array(qmpLines.suffix(5).joined(separator: "\n").utf8) + Array("\r\n{\"return\": {".utf8)
        return [[0] + session, [63] + session, [255] + events, [4] + Array("\r\n\n\r\r\n \t\n".utf8)]
    }
}
