import RdmigChannels
import RdmigTransport
import Testing

/// Every count, length and offset a peer sends, at its extremes (0, the type's maximum, sums
/// that overflow): refused with an error naming the message and the field, never a trap.
@Suite struct PeerValueLimits {
    /// Encodes `message` as a peer would (the encoder checks nothing) and decodes it as this
    /// side does; the decoding error, nil if it decoded.
    func decodingError(_ message: MigrationMessage) throws -> WireError? {
        var counter = WireWriter(countingFor: message.wireName)
        try message.encodePayload(to: &counter)
        var payload = [UInt8](repeating: 0, count: counter.count)
        try payload.withUnsafeMutableBytes { raw in
            var writer = WireWriter(into: raw, messageName: message.wireName)
            try message.encodePayload(to: &writer)
        }
        return payload.withUnsafeBytes { raw -> WireError? in
            var reader = WireReader(raw, messageName: message.wireName)
            do throws(WireError) {
                _ = try MigrationMessage.decode(type: message.wireType, payload: &reader)
                try reader.finish()
                return nil
            } catch {
                return error
            }
        }
    }

    /// The field an `invalidValue` error names, nil for any other outcome.
    func refusedField(_ message: MigrationMessage) throws -> String? {
        guard case .invalidValue(let name, let field, _)? = try decodingError(message) else { return nil }
        #expect(name == message.wireName)
        return field
    }

    func layout(_ regions: [MigrationMessage.RegionLayout], devices: [MigrationMessage.DeviceLayout] = []) -> MigrationMessage {
        .layout(.init(regions: regions, devices: devices))
    }

    @Test func twoRegionsWhoseLengthsOverflow64BitsAreRefusedNotSummedIntoATrap() throws {
        let half = UInt64(1) << 63
        let message = layout([.init(id: 0, guestPhysicalBase: 0, length: half, pageSize: 4096),
                              .init(id: 1, guestPhysicalBase: 0, length: half, pageSize: 4096)])
        let error = try #require(try decodingError(message))
        guard case .invalidValue("LAYOUT", "regions.length", let detail) = error else {
            Issue.record("expected an invalid regions.length, got \(error)")
            return
        }
        #expect(detail.contains("9223372036854775808 + 9223372036854775808"), "\(detail)")
        // A LAYOUT built locally with the same regions reports the overflow as nil.
        guard case .layout(let built) = message else { return }
        #expect(built.totalLength == nil)
    }

    @Test(arguments: [0, 1, 2048, 3000, 4095, 1 << 31, UInt32.max] as [UInt32])
    func aPageSizeThatIsNotAPowerOfTwoFrom4KiBTo1GiBIsRefused(_ pageSize: UInt32) throws {
        let field = try refusedField(layout([.init(id: 0, guestPhysicalBase: 0, length: 1 << 32, pageSize: pageSize)]))
        #expect(field == "regions.pageSize")
    }

    @Test(arguments: [4096, 2 << 20, 1 << 30] as [UInt32])
    func pageSizesFrom4KiBTo1GiBAreAccepted(_ pageSize: UInt32) throws {
        #expect(try decodingError(layout([.init(id: 0, guestPhysicalBase: 0, length: 1 << 30, pageSize: pageSize)])) == nil)
    }

    @Test func regionLengthsAndBasesAtTheirExtremesAreRefusedByField() throws {
        #expect(try refusedField(layout([.init(id: 0, guestPhysicalBase: 0, length: 0, pageSize: 4096)])) == "regions.length")
        #expect(try refusedField(layout([.init(id: 0, guestPhysicalBase: 0, length: .max, pageSize: 4096)])) == "regions.length")
        // Page-aligned, but base + length reaches 2^64 (the range's end is not a u64).
        let lastPage = UInt64.max - 4095
        #expect(try refusedField(layout([.init(id: 0, guestPhysicalBase: lastPage, length: 4096, pageSize: 4096)])) == "regions.length")
        #expect(try decodingError(layout([.init(id: 0, guestPhysicalBase: lastPage - 4096, length: 4096, pageSize: 4096)])) == nil)
        #expect(try refusedField(layout([.init(id: 0, guestPhysicalBase: 1, length: 4096, pageSize: 4096)])) == "regions.guestPhysicalBase")
    }

    @Test func idsEveryLaterMessageNamesMustBeUnique() throws {
        let region = MigrationMessage.RegionLayout(id: 7, guestPhysicalBase: 0, length: 4096, pageSize: 4096)
        var other = region
        other.guestPhysicalBase = 1 << 20
        #expect(try refusedField(layout([region, other])) == "regions.id")
        let device = MigrationMessage.DeviceLayout(id: 3, kind: "ib-sw", stateVersion: 1, needsSwitchoverAck: false)
        // Two devices of one id used to trap building the destination's loader table.
        #expect(try refusedField(layout([region], devices: [device, device])) == "devices.id")
    }

    @Test func qemuOutcomeTimesBeyondASignedDurationAreRefused() throws {
        func outcome(completed: UInt64 = 0, resume: UInt64 = 0, relay: UInt64 = 0) -> MigrationMessage {
            .qemuOutcome(.init(guest: .resumed, completedMicroseconds: completed, resumeMicroseconds: resume,
                               relayBytes: .max, relayMicroseconds: relay, detail: ""))
        }
        #expect(try refusedField(outcome(completed: .max)) == "completedMicroseconds")
        #expect(try refusedField(outcome(resume: UInt64(Int64.max) + 1)) == "resumeMicroseconds")
        #expect(try refusedField(outcome(relay: .max)) == "relayMicroseconds")
        #expect(try decodingError(outcome(completed: UInt64(Int64.max), resume: UInt64(Int64.max), relay: UInt64(Int64.max))) == nil)
    }

    @Test func zeroPageRunsThatWrapOrLeaveTheRegionAreRefused() throws {
        let wrapping = MigrationMessage.zeroPages(.init(iteration: .max, regionID: .max, runs: [PageRun(firstPage: .max, count: 1)]))
        #expect(try refusedField(wrapping) == "runs.count")
        // A run that decodes (no wrap) but covers more than the region: refused when applied.
        var memory = [UInt8](repeating: 1, count: 4 * 4096)
        for run in [PageRun(firstPage: 0, count: .max), PageRun(firstPage: 4, count: 0), PageRun(firstPage: .max - 1, count: 1)] {
            let message = MigrationMessage.ZeroPages(iteration: 0, regionID: 0, runs: [run])
            #expect(try decodingError(.zeroPages(message)) == nil)
            let error = memory.withUnsafeMutableBytes { raw -> ChannelError? in
                do throws(ChannelError) {
                    _ = try PageChannel.applyZeroPages(message, to: raw, pageSize: 4096)
                    return nil
                } catch {
                    return error
                }
            }
            guard case .protocolViolation(let detail)? = error else {
                Issue.record("\(run) gave \(String(describing: error))")
                continue
            }
            #expect(detail.contains("outside its 4 pages"), "\(detail)")
        }
        #expect(memory.allSatisfy { $0 == 1 }, "nothing was zeroed")
    }

    @Test func touchedChunksSizesAndOffsetsAreCheckedByField() throws {
        func touched(chunkSize: UInt32 = 4096, firstChunk: UInt32 = 0, bitmap: [UInt8] = [1]) -> MigrationMessage {
            .touchedChunks(.init(iteration: .max, regionID: .max, chunkSize: chunkSize, firstChunk: firstChunk, bitmap: bitmap))
        }
        #expect(try refusedField(touched(chunkSize: 0)) == "chunkSize")
        #expect(try refusedField(touched(chunkSize: .max)) == "chunkSize")
        #expect(try refusedField(touched(firstChunk: .max)) == "firstChunk")
        #expect(try refusedField(touched(bitmap: [UInt8](repeating: 0xff, count: MigrationMessage.TouchedChunks.maximumBitmapBytes + 1))) == "bitmap")
        #expect(try decodingError(touched(firstChunk: .max - 7)) == nil, "the destination bounds it against the region")
    }

    @Test func streamRingsAndWindowsThatWrapOrDoNotFitAreRefused() throws {
        func ring(address: UInt64 = 0, length: UInt64, slots: Int, size: Int) -> MigrationMessage {
            .streamRing(StreamRing(channel: .deviceState, window: RemoteWindow(address: address, length: length, remoteKey: 1),
                                   slotCount: slots, slotSize: size))
        }
        #expect(try refusedField(ring(address: .max, length: 1, slots: 1, size: 1)) == "window.length")
        #expect(try refusedField(ring(length: .max, slots: 0, size: 64)) == "slotCount")
        // u32 max slots of u32 max bytes: their product overflowed the source's Int when it
        // sized its staging buffer.
        let most = Int(UInt32.max)
        #expect(try refusedField(ring(length: .max, slots: most, size: most)) == "slotCount")
        #expect(try refusedField(ring(length: .max, slots: 1 << 20, size: most)) == "slotSize")
        #expect(try refusedField(ring(length: .max, slots: 1, size: 63)) == "slotSize")
        let largest = UInt64(1 << 20) * UInt64(1 << 30)
        #expect(try refusedField(ring(length: largest - 1, slots: 1 << 20, size: 1 << 30)) == "window.length")
        #expect(try decodingError(ring(length: largest, slots: 1 << 20, size: 1 << 30)) == nil)
    }

    @Test func aHostileCountInEveryArrayIsATruncationNotAnAllocation() throws {
        // LAYOUT's region count is the first field: u32 max with nothing behind it.
        let payload: [UInt8] = [0xff, 0xff, 0xff, 0xff]
        let error = payload.withUnsafeBytes { raw -> WireError? in
            var reader = WireReader(raw, messageName: "LAYOUT")
            do throws(WireError) {
                _ = try MigrationMessage.decode(type: MigrationMessage.Kind.layout.rawValue, payload: &reader)
                return nil
            } catch {
                return error
            }
        }
        guard case .truncated("LAYOUT", "regions", let needed, 0)? = error else {
            Issue.record("got \(String(describing: error))")
            return
        }
        #expect(needed == Int(UInt32.max) * MigrationMessage.RegionLayout.minimumEncodedSize)
    }
}
