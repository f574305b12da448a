import RdmigChannels
import RdmigTransport

/// One filled-in message of every kind, with values that exercise every field (non-zero,
/// high bits set, non-ASCII text), for roundtrip tests.
enum MessageSamples {
    static let window = RemoteWindow(address: 0x7F12_3456_7000, length: 1 << 30, remoteKey: 0xDEAD_BEEF)

    static let all: [MigrationMessage] = [
        .hello(.init(role: .source, features: [.zeroPageMarkers, .deviceState, .digests],
                     nonce: (0..<32).map { UInt8($0 * 7 & 0xFF) }, software: "rdmig 0.1.0 – test")),
        .auth(.init(mac: (0..<32).map { UInt8(255 - $0) })),
        .layout(.init(
            regions: [.init(id: 0, guestPhysicalBase: 0, length: 1 << 31, pageSize: 4096),
                      .init(id: 1, guestPhysicalBase: 0x1_0000_0000, length: 1 << 30, pageSize: 2 << 20)],
            devices: [.init(id: 7, kind: "ib-sw", stateVersion: 3, needsSwitchoverAck: true)], channels: 16)),
        .windows(.init(regions: [.init(regionID: 0, window: window),
                                 .init(regionID: 1, window: RemoteWindow(address: 0x1000, length: 4096, remoteKey: 1))], channels: 3)),
        .streamRing(StreamRing(channel: .deviceState, window: window, slotCount: 8, slotSize: 64 * 1024)),
        .iterationDone(.init(iteration: 3, pagesWritten: 123_456, zeroPages: 789, bytesWritten: 123_456 * 4096)),
        .zeroPages(.init(iteration: 3, regionID: 1, runs: [PageRun(firstPage: 0, count: 1), PageRun(firstPage: 1 << 40, count: 77)])),
        .zeroPagesApplied(.init(iteration: 3)),
        .switchover(.init(iteration: 9, reason: .forced, remainingDirtyBytes: 5 << 20, deviceStopCopyBytes: 300 << 20)),
        .switchoverAck(.init(deviceID: 7)),
        .vfStateDone(.init(deviceID: 7, phase: .stopCopy, bytes: 1 << 33, records: 4242, checksum: 0xCAFE_F00D)),
        .digests(.init(entries: [.init(subject: .region, id: 0, algorithm: .xxh3ChunkTable, value: Array(repeating: 0xAB, count: 8)),
                                 .init(subject: .region, id: 1, algorithm: .sha256, value: Array(repeating: 0xAB, count: 32)),
                                 .init(subject: .device, id: 7, algorithm: .crc32c, value: [1, 2, 3, 4])])),
        .ready,
        .commit,
        .abort(.init(reason: "destination ran out of memory – giving up")),
        .error(.init(code: 42, message: "VF state checksum mismatch")),
        .touchedChunks(.init(iteration: 3, regionID: 0, chunkSize: 4096, firstChunk: 65536, bitmap: [0b1010_0001, 0, 0xFF])),
        .resumed,
        .qemuOutcome(.init(guest: .loadedNotResumed, completedMicroseconds: 1_764_165_000_123_456, resumeMicroseconds: 0,
                           relayBytes: 5 << 30, relayMicroseconds: 3_000_001, detail: "cont failed – guest paused")),
        .resolve(.init(migrationID: Array(1...16))),
        .resolution(.init(outcome: .runsOnDestination, detail: "committed on RESOLVE after 3.2 s in doubt")),
        .join(.init(migrationID: Array(101...116), channel: 15)),
    ]
}
