import RdmigTransport

// The payloads of `MigrationMessage`, each with its wire form. Field names in the codecs are
// the ones errors report ("LAYOUT message is truncated at field 'regions.pageSize'").

extension MigrationMessage {
    /// What each side supports; the intersection of both HELLOs is what the migration uses.
    public struct Features: OptionSet, Hashable, Sendable {
        public let rawValue: UInt64
        public init(rawValue: UInt64) { self.rawValue = rawValue }

        /// Zero pages travel as ZERO_PAGES runs instead of page contents.
        public static let zeroPageMarkers = Features(rawValue: 1 << 0)
        /// VF state moves over a byte-stream channel (VFIO migration v2 model).
        public static let deviceState = Features(rawValue: 1 << 1)
        /// The destination acknowledges loaded initial device state before switchover.
        public static let switchoverAck = Features(rawValue: 1 << 2)
        /// The relayed stream of a QEMU fd: migration.
        public static let qemuStream = Features(rawValue: 1 << 3)
        /// DIGESTS are exchanged and checked before READY.
        public static let digests = Features(rawValue: 1 << 4)
        /// This side wants the transport's frames encrypted (tcp: AES-256-GCM under keys from
        /// the handshake); either side asking turns it on for both.
        public static let encryption = Features(rawValue: 1 << 5)
        /// Proxy mode: the connection relays one unix-socket connection's bytes both ways
        /// (`rdmig proxy`); native and QEMU-mode peers refuse it by name.
        public static let proxyStream = Features(rawValue: 1 << 6)
    }

    public enum Role: UInt8, Sendable, CaseIterable {
        case source = 1
        case destination = 2
    }

    /// HELLO: the first message each way.
    public struct Hello: Hashable, Sendable, WireCodable {
        public static let nonceSizes = 16...64

        public var protocolVersion: UInt16
        public var role: Role
        public var features: Features
        /// Fresh random bytes; AUTH's HMAC covers both sides' nonces, so a recorded
        /// exchange cannot be replayed.
        public var nonce: [UInt8]
        /// The sender's software and version, for logs ("rdmig 0.1.0").
        public var software: String

        public init(protocolVersion: UInt16 = RdmigProtocol.version, role: Role, features: Features, nonce: [UInt8], software: String) {
            self.protocolVersion = protocolVersion
            self.role = role
            self.features = features
            self.nonce = nonce
            self.software = software
        }

        /// Refuses a peer of another protocol version with the error people can act on.
        public func checkCompatible(localVersion: UInt16 = RdmigProtocol.version) throws(ChannelError) {
            guard protocolVersion == localVersion else {
                throw .versionMismatch(peer: protocolVersion, local: localVersion)
            }
        }

        public static let minimumEncodedSize = 2 + 1 + 8 + 4 + 4

        public func encode(to writer: inout WireWriter) throws(WireError) {
            try writer.write(protocolVersion, "protocolVersion")
            try writer.write(role.rawValue, "role")
            try writer.write(features.rawValue, "features")
            try writer.write(bytes: nonce, "nonce")
            try writer.write(software, "software")
        }

        public init(from reader: inout WireReader) throws(WireError) {
            protocolVersion = try reader.readUInt16("protocolVersion")
            let roleCode = try reader.readUInt8("role")
            guard let role = Role(rawValue: roleCode) else {
                throw .invalidValue(message: reader.messageName, field: "role", detail: "\(roleCode) is neither source (1) nor destination (2)")
            }
            self.role = role
            features = Features(rawValue: try reader.readUInt64("features"))
            nonce = try reader.readBytes("nonce", limit: Self.nonceSizes.upperBound)
            guard Self.nonceSizes.contains(nonce.count) else {
                throw .invalidValue(message: reader.messageName, field: "nonce", detail: "\(nonce.count) bytes, expected \(Self.nonceSizes.lowerBound)-\(Self.nonceSizes.upperBound)")
            }
            software = try reader.readString("software", limit: 256)
        }
    }

    /// AUTH: HMAC (SHA-256 with the pre-shared key) over both nonces; computed and checked by
    /// the migration layer, carried here.
    public struct Auth: Hashable, Sendable, WireCodable {
        public var mac: [UInt8]
        public init(mac: [UInt8]) { self.mac = mac }

        public static let minimumEncodedSize = 4

        public func encode(to writer: inout WireWriter) throws(WireError) {
            try writer.write(bytes: mac, "mac")
        }

        public init(from reader: inout WireReader) throws(WireError) {
            mac = try reader.readBytes("mac", limit: 64)
        }
    }

    /// One guest memory region in LAYOUT.
    public struct RegionLayout: Hashable, Sendable, WireCodable {
        public var id: UInt32
        public var guestPhysicalBase: UInt64
        public var length: UInt64
        public var pageSize: UInt32

        public init(id: UInt32, guestPhysicalBase: UInt64, length: UInt64, pageSize: UInt32) {
            self.id = id
            self.guestPhysicalBase = guestPhysicalBase
            self.length = length
            self.pageSize = pageSize
        }

        public static let minimumEncodedSize = 24
        /// Page sizes a peer may announce: the host's base page up to a 1 GiB huge page. A
        /// smaller one could not be mapped or protected page by page; a larger one is no page
        /// size any x86 or Arm host has.
        public static let pageSizes: ClosedRange<UInt32> = 4096...(1 << 30)

        public func encode(to writer: inout WireWriter) throws(WireError) {
            try writer.write(id, "regions.id")
            try writer.write(guestPhysicalBase, "regions.guestPhysicalBase")
            try writer.write(length, "regions.length")
            try writer.write(pageSize, "regions.pageSize")
        }

        public init(from reader: inout WireReader) throws(WireError) {
            id = try reader.readUInt32("regions.id")
            guestPhysicalBase = try reader.readUInt64("regions.guestPhysicalBase")
            length = try reader.readUInt64("regions.length")
            pageSize = try reader.readUInt32("regions.pageSize")
            guard pageSize.nonzeroBitCount == 1, Self.pageSizes.contains(pageSize) else {
                throw .invalidValue(message: reader.messageName, field: "regions.pageSize",
                                    detail: "\(pageSize) is not a power of two from \(Self.pageSizes.lowerBound) to \(Self.pageSizes.upperBound)")
            }
            guard length > 0 else {
                throw .invalidValue(message: reader.messageName, field: "regions.length", detail: "region \(id) has 0 bytes")
            }
            guard length % UInt64(pageSize) == 0 else {
                throw .invalidValue(message: reader.messageName, field: "regions.length", detail: "\(length) is not a multiple of the page size \(pageSize)")
            }
            guard guestPhysicalBase % UInt64(pageSize) == 0 else {
                throw .invalidValue(message: reader.messageName, field: "regions.guestPhysicalBase",
                                    detail: "0x\(String(guestPhysicalBase, radix: 16)) is not a multiple of the page size \(pageSize)")
            }
            guard !guestPhysicalBase.addingReportingOverflow(length).overflow else {
                throw .invalidValue(message: reader.messageName, field: "regions.length",
                                    detail: "\(length) bytes from guest-physical 0x\(String(guestPhysicalBase, radix: 16)) run past 2^64")
            }
        }
    }

    /// One device in LAYOUT: its kind ("ib-sw", "vfio") and the version of its state format.
    public struct DeviceLayout: Hashable, Sendable, WireCodable {
        public var id: UInt32
        public var kind: String
        public var stateVersion: UInt32
        /// The provider wants SWITCHOVER_ACK (initial state loaded) before switchover.
        public var needsSwitchoverAck: Bool

        public init(id: UInt32, kind: String, stateVersion: UInt32, needsSwitchoverAck: Bool) {
            self.id = id
            self.kind = kind
            self.stateVersion = stateVersion
            self.needsSwitchoverAck = needsSwitchoverAck
        }

        public static let minimumEncodedSize = 4 + 4 + 4 + 1

        public func encode(to writer: inout WireWriter) throws(WireError) {
            try writer.write(id, "devices.id")
            try writer.write(kind, "devices.kind")
            try writer.write(stateVersion, "devices.stateVersion")
            try writer.write(needsSwitchoverAck, "devices.needsSwitchoverAck")
        }

        public init(from reader: inout WireReader) throws(WireError) {
            id = try reader.readUInt32("devices.id")
            kind = try reader.readString("devices.kind", limit: 64)
            stateVersion = try reader.readUInt32("devices.stateVersion")
            needsSwitchoverAck = try reader.readBool("devices.needsSwitchoverAck")
        }
    }

    /// LAYOUT: the source's guest memory regions and devices.
    public struct Layout: Hashable, Sendable, WireCodable {
        public var regions: [RegionLayout]
        public var devices: [DeviceLayout]
        /// Page channels the source asks for (1...`maximumPageChannels`): each is its own
        /// connection, the first this one, the others JOIN it.
        public var channels: UInt16

        public init(regions: [RegionLayout], devices: [DeviceLayout], channels: UInt16 = 1) {
            self.regions = regions
            self.devices = devices
            self.channels = channels
        }

        public static let minimumEncodedSize = 10

        public func encode(to writer: inout WireWriter) throws(WireError) {
            try writer.write(regions, "regions")
            try writer.write(devices, "devices")
            try writer.write(channels, "channels")
        }

        /// All regions' bytes; nil when the sum does not fit 64 bits (never for a decoded
        /// LAYOUT, which refuses that).
        public var totalLength: UInt64? {
            var total: UInt64 = 0
            for region in regions {
                let (sum, overflow) = total.addingReportingOverflow(region.length)
                if overflow { return nil }
                total = sum
            }
            return total
        }

        /// Region and device ids are what every later message names, so each must be unique;
        /// the regions' lengths must add up without overflowing.
        public init(from reader: inout WireReader) throws(WireError) {
            regions = try reader.readArray(of: RegionLayout.self, "regions")
            devices = try reader.readArray(of: DeviceLayout.self, "devices")
            channels = try reader.readUInt16("channels")
            guard (1...MigrationMessage.maximumPageChannels).contains(channels) else {
                throw .invalidValue(message: reader.messageName, field: "channels",
                                    detail: "\(channels) page channels, 1-\(MigrationMessage.maximumPageChannels) expected")
            }
            var regionIDs = Set<UInt32>()
            for region in regions where !regionIDs.insert(region.id).inserted {
                throw .invalidValue(message: reader.messageName, field: "regions.id", detail: "region \(region.id) appears more than once")
            }
            var deviceIDs = Set<UInt32>()
            for device in devices where !deviceIDs.insert(device.id).inserted {
                throw .invalidValue(message: reader.messageName, field: "devices.id", detail: "device \(device.id) appears more than once")
            }
            guard totalLength != nil else {
                throw .invalidValue(message: reader.messageName, field: "regions.length",
                                    detail: "the regions' lengths (\(regions.map { String($0.length) }.joined(separator: " + "))) add up to more than 2^64 - 1 bytes")
            }
        }
    }

    /// One region's window in WINDOWS.
    public struct RegionWindow: Hashable, Sendable, WireCodable {
        public var regionID: UInt32
        public var window: RemoteWindow

        public init(regionID: UInt32, window: RemoteWindow) {
            self.regionID = regionID
            self.window = window
        }

        public static let minimumEncodedSize = 4 + RemoteWindow.minimumEncodedSize

        public func encode(to writer: inout WireWriter) throws(WireError) {
            try writer.write(regionID, "regions.regionID")
            try writer.write(window)
        }

        public init(from reader: inout WireReader) throws(WireError) {
            regionID = try reader.readUInt32("regions.regionID")
            window = try reader.read(RemoteWindow.self)
        }
    }

    /// WINDOWS: the destination's answer to LAYOUT, one remote window per region.
    public struct Windows: Hashable, Sendable, WireCodable {
        public var regions: [RegionWindow]
        /// Page channels the destination accepts (at most what LAYOUT asked for); on a joined
        /// channel, the same number again.
        public var channels: UInt16
        public init(regions: [RegionWindow], channels: UInt16 = 1) {
            self.regions = regions
            self.channels = channels
        }

        public static let minimumEncodedSize = 6

        public func encode(to writer: inout WireWriter) throws(WireError) {
            try writer.write(regions, "regions")
            try writer.write(channels, "channels")
        }

        public init(from reader: inout WireReader) throws(WireError) {
            regions = try reader.readArray(of: RegionWindow.self, "regions")
            channels = try reader.readUInt16("channels")
            guard (1...MigrationMessage.maximumPageChannels).contains(channels) else {
                throw .invalidValue(message: reader.messageName, field: "channels",
                                    detail: "\(channels) page channels, 1-\(MigrationMessage.maximumPageChannels) expected")
            }
        }
    }

    /// JOIN: the first message on an extra page channel's connection, after its own HELLO/AUTH:
    /// it belongs to the migration `migrationID` (a value derived from the first connection's
    /// session keys, so only a holder of the key who took part in that handshake knows it) as
    /// its channel `channel` (1 ..< the accepted count). The destination answers with WINDOWS
    /// registered on this connection.
    public struct Join: Hashable, Sendable, WireCodable {
        public var migrationID: [UInt8]
        public var channel: UInt16
        public init(migrationID: [UInt8], channel: UInt16) {
            self.migrationID = migrationID
            self.channel = channel
        }

        public static let minimumEncodedSize = 4 + Resolve.idSize + 2

        public func encode(to writer: inout WireWriter) throws(WireError) {
            try writer.write(bytes: migrationID, "migrationID")
            try writer.write(channel, "channel")
        }

        public init(from reader: inout WireReader) throws(WireError) {
            migrationID = try reader.readBytes("migrationID", limit: Resolve.idSize)
            guard migrationID.count == Resolve.idSize else {
                throw .invalidValue(message: reader.messageName, field: "migrationID", detail: "\(migrationID.count) bytes, \(Resolve.idSize) expected")
            }
            channel = try reader.readUInt16("channel")
            guard channel >= 1, channel < MigrationMessage.maximumPageChannels else {
                throw .invalidValue(message: reader.messageName, field: "channel",
                                    detail: "channel \(channel), 1-\(MigrationMessage.maximumPageChannels - 1) expected")
            }
        }
    }

    /// ITERATION_DONE: every page of `iteration` is written (RC ordering: the writes posted
    /// before this message are visible when it arrives) and every zero-page run was sent.
    public struct IterationDone: Hashable, Sendable, WireCodable {
        public var iteration: UInt32
        public var pagesWritten: UInt64
        public var zeroPages: UInt64
        public var bytesWritten: UInt64

        public init(iteration: UInt32, pagesWritten: UInt64, zeroPages: UInt64, bytesWritten: UInt64) {
            self.iteration = iteration
            self.pagesWritten = pagesWritten
            self.zeroPages = zeroPages
            self.bytesWritten = bytesWritten
        }

        public static let minimumEncodedSize = 28

        public func encode(to writer: inout WireWriter) throws(WireError) {
            try writer.write(iteration, "iteration")
            try writer.write(pagesWritten, "pagesWritten")
            try writer.write(zeroPages, "zeroPages")
            try writer.write(bytesWritten, "bytesWritten")
        }

        public init(from reader: inout WireReader) throws(WireError) {
            iteration = try reader.readUInt32("iteration")
            pagesWritten = try reader.readUInt64("pagesWritten")
            zeroPages = try reader.readUInt64("zeroPages")
            bytesWritten = try reader.readUInt64("bytesWritten")
        }
    }

    /// ZERO_PAGES: pages of one region that are all zero in this iteration; the destination
    /// zeroes them instead of receiving 4 KiB of zeros each.
    public struct ZeroPages: Hashable, Sendable, WireCodable {
        public var iteration: UInt32
        public var regionID: UInt32
        public var runs: [PageRun]

        public init(iteration: UInt32, regionID: UInt32, runs: [PageRun]) {
            self.iteration = iteration
            self.regionID = regionID
            self.runs = runs
        }

        public static let minimumEncodedSize = 12
        /// Bytes before the runs: iteration, region, count.
        public static let headerSize = 12

        public func encode(to writer: inout WireWriter) throws(WireError) {
            try writer.write(iteration, "iteration")
            try writer.write(regionID, "regionID")
            try writer.write(runs, "runs")
        }

        public init(from reader: inout WireReader) throws(WireError) {
            iteration = try reader.readUInt32("iteration")
            regionID = try reader.readUInt32("regionID")
            runs = try reader.readArray(of: PageRun.self, "runs")
        }
    }

    /// ZERO_PAGES_APPLIED: the destination has zeroed every page ZERO_PAGES named up to and
    /// including `iteration`, and hashed the chunks the iteration touched (sent for every
    /// pre-copy iteration: the source waits for it before deciding, so neither side carries
    /// a hashing backlog into the downtime). The source must have it before writing the next iteration's
    /// pages: a one-sided write of iteration i+1 could otherwise land before the destination
    /// zeroes the same page for iteration i, and be wiped.
    public struct ZeroPagesApplied: Hashable, Sendable, WireCodable {
        public var iteration: UInt32
        public init(iteration: UInt32) { self.iteration = iteration }

        public static let minimumEncodedSize = 4

        public func encode(to writer: inout WireWriter) throws(WireError) {
            try writer.write(iteration, "iteration")
        }

        public init(from reader: inout WireReader) throws(WireError) {
            iteration = try reader.readUInt32("iteration")
        }
    }

    public enum SwitchoverReason: UInt8, Sendable, CaseIterable {
        /// Predicted downtime is under the limit.
        case converged = 1
        /// `max-iterations` reached; the policy forces switchover.
        case forced = 2
        /// The operator asked for it.
        case requested = 3
    }

    /// SWITCHOVER: the source paused the guest; last pages and device state follow.
    public struct Switchover: Hashable, Sendable, WireCodable {
        public var iteration: UInt32
        public var reason: SwitchoverReason
        public var remainingDirtyBytes: UInt64
        public var deviceStopCopyBytes: UInt64

        public init(iteration: UInt32, reason: SwitchoverReason, remainingDirtyBytes: UInt64, deviceStopCopyBytes: UInt64) {
            self.iteration = iteration
            self.reason = reason
            self.remainingDirtyBytes = remainingDirtyBytes
            self.deviceStopCopyBytes = deviceStopCopyBytes
        }

        public static let minimumEncodedSize = 21

        public func encode(to writer: inout WireWriter) throws(WireError) {
            try writer.write(iteration, "iteration")
            try writer.write(reason.rawValue, "reason")
            try writer.write(remainingDirtyBytes, "remainingDirtyBytes")
            try writer.write(deviceStopCopyBytes, "deviceStopCopyBytes")
        }

        public init(from reader: inout WireReader) throws(WireError) {
            iteration = try reader.readUInt32("iteration")
            let code = try reader.readUInt8("reason")
            guard let reason = SwitchoverReason(rawValue: code) else {
                throw .invalidValue(message: reader.messageName, field: "reason", detail: "unknown switchover reason \(code)")
            }
            self.reason = reason
            remainingDirtyBytes = try reader.readUInt64("remainingDirtyBytes")
            deviceStopCopyBytes = try reader.readUInt64("deviceStopCopyBytes")
        }
    }

    /// SWITCHOVER_ACK: the destination loaded the device's initial pre-copy state.
    public struct SwitchoverAck: Hashable, Sendable, WireCodable {
        public var deviceID: UInt32
        public init(deviceID: UInt32) { self.deviceID = deviceID }

        public static let minimumEncodedSize = 4

        public func encode(to writer: inout WireWriter) throws(WireError) {
            try writer.write(deviceID, "deviceID")
        }

        public init(from reader: inout WireReader) throws(WireError) {
            deviceID = try reader.readUInt32("deviceID")
        }
    }

    /// The VFIO migration phase device state was read in.
    public enum DeviceStatePhase: UInt8, Sendable, CaseIterable {
        case preCopy = 1
        case stopCopy = 2
    }

    /// VF_STATE_DONE: all of a device's state for `phase` is in the stream.
    public struct VFStateDone: Hashable, Sendable, WireCodable {
        public var deviceID: UInt32
        public var phase: DeviceStatePhase
        public var bytes: UInt64
        public var records: UInt64
        /// CRC-32C over the phase's payload bytes, checked by the destination.
        public var checksum: UInt32

        public init(deviceID: UInt32, phase: DeviceStatePhase, bytes: UInt64, records: UInt64, checksum: UInt32) {
            self.deviceID = deviceID
            self.phase = phase
            self.bytes = bytes
            self.records = records
            self.checksum = checksum
        }

        public static let minimumEncodedSize = 25

        public func encode(to writer: inout WireWriter) throws(WireError) {
            try writer.write(deviceID, "deviceID")
            try writer.write(phase.rawValue, "phase")
            try writer.write(bytes, "bytes")
            try writer.write(records, "records")
            try writer.write(checksum, "checksum")
        }

        public init(from reader: inout WireReader) throws(WireError) {
            deviceID = try reader.readUInt32("deviceID")
            let code = try reader.readUInt8("phase")
            guard let phase = DeviceStatePhase(rawValue: code) else {
                throw .invalidValue(message: reader.messageName, field: "phase", detail: "unknown device-state phase \(code)")
            }
            self.phase = phase
            bytes = try reader.readUInt64("bytes")
            records = try reader.readUInt64("records")
            checksum = try reader.readUInt32("checksum")
        }
    }

    public enum DigestSubject: UInt8, Sendable, CaseIterable {
        case region = 1
        case device = 2
    }

    public enum DigestAlgorithm: UInt8, Sendable, CaseIterable {
        case crc32c = 1
        case sha256 = 2
        /// The sum over a region's chunks of XXH3-64(chunk index, XXH3-64 of the chunk), keyed
        /// with the session's digest seed (`ChunkDigester`). Code 3 was XXH64's until protocol
        /// v2 and is not reused, so an old peer's DIGESTS cannot be read as this.
        case xxh3ChunkTable = 5
        /// A device provider's own digest (object and byte counts, CRC-32C, FNV-1a).
        case deviceState = 4
    }

    /// One digest in DIGESTS.
    public struct Digest: Hashable, Sendable, WireCodable {
        public var subject: DigestSubject
        public var id: UInt32
        public var algorithm: DigestAlgorithm
        public var value: [UInt8]

        public init(subject: DigestSubject, id: UInt32, algorithm: DigestAlgorithm, value: [UInt8]) {
            self.subject = subject
            self.id = id
            self.algorithm = algorithm
            self.value = value
        }

        public static let minimumEncodedSize = 1 + 4 + 1 + 4

        public func encode(to writer: inout WireWriter) throws(WireError) {
            try writer.write(subject.rawValue, "digests.subject")
            try writer.write(id, "digests.id")
            try writer.write(algorithm.rawValue, "digests.algorithm")
            try writer.write(bytes: value, "digests.value")
        }

        public init(from reader: inout WireReader) throws(WireError) {
            let subjectCode = try reader.readUInt8("digests.subject")
            guard let subject = DigestSubject(rawValue: subjectCode) else {
                throw .invalidValue(message: reader.messageName, field: "digests.subject", detail: "unknown digest subject \(subjectCode)")
            }
            self.subject = subject
            id = try reader.readUInt32("digests.id")
            let algorithmCode = try reader.readUInt8("digests.algorithm")
            guard let algorithm = DigestAlgorithm(rawValue: algorithmCode) else {
                throw .invalidValue(message: reader.messageName, field: "digests.algorithm", detail: "unknown digest algorithm \(algorithmCode)")
            }
            self.algorithm = algorithm
            value = try reader.readBytes("digests.value", limit: 64)
        }
    }

    /// DIGESTS: per-region and per-device digests after the last pages, checked by the
    /// destination before READY.
    public struct Digests: Hashable, Sendable, WireCodable {
        public var entries: [Digest]
        public init(entries: [Digest]) { self.entries = entries }

        public static let minimumEncodedSize = 4

        public func encode(to writer: inout WireWriter) throws(WireError) {
            try writer.write(entries, "digests")
        }

        public init(from reader: inout WireReader) throws(WireError) {
            entries = try reader.readArray(of: Digest.self, "digests")
        }
    }

    /// ABORT: the sender gives up the migration before COMMIT; the reason is for the log.
    public struct Abort: Hashable, Sendable, WireCodable {
        public var reason: String
        public init(reason: String) { self.reason = reason }

        public static let minimumEncodedSize = 4

        public func encode(to writer: inout WireWriter) throws(WireError) {
            try writer.write(reason, "reason")
        }

        public init(from reader: inout WireReader) throws(WireError) {
            reason = try reader.readString("reason", limit: 4096)
        }
    }

    /// RESOLVE: "where does migration `migrationID` stand?" — the first message of a source
    /// that lost its destination after COMMIT (`SessionKeys.migrationID` of the lost session).
    public struct Resolve: Hashable, Sendable, WireCodable {
        public static let idSize = 16
        public var migrationID: [UInt8]
        public init(migrationID: [UInt8]) { self.migrationID = migrationID }

        public static let minimumEncodedSize = 4 + idSize

        public func encode(to writer: inout WireWriter) throws(WireError) {
            try writer.write(bytes: migrationID, "migrationID")
        }

        public init(from reader: inout WireReader) throws(WireError) {
            migrationID = try reader.readBytes("migrationID", limit: Self.idSize)
            guard migrationID.count == Self.idSize else {
                throw .invalidValue(message: reader.messageName, field: "migrationID", detail: "\(migrationID.count) bytes, \(Self.idSize) expected")
            }
        }
    }

    /// RESOLUTION: the destination's answer to RESOLVE.
    public struct Resolution: Hashable, Sendable, WireCodable {
        public enum Outcome: UInt8, Sendable {
            /// The guest runs on the destination (it had COMMIT, or committed on this RESOLVE).
            case runsOnDestination = 1
            /// The destination does not hold the guest (never verified it, discarded it, or
            /// does not know the migration): the source resumes its copy.
            case notOnDestination = 2
        }
        public var outcome: Outcome
        public var detail: String
        public init(outcome: Outcome, detail: String) {
            self.outcome = outcome
            self.detail = detail
        }

        public static let minimumEncodedSize = 1 + 4

        public func encode(to writer: inout WireWriter) throws(WireError) {
            try writer.write(outcome.rawValue, "outcome")
            try writer.write(detail, "detail")
        }

        public init(from reader: inout WireReader) throws(WireError) {
            let code = try reader.readUInt8("outcome")
            guard let outcome = Outcome(rawValue: code) else {
                throw .invalidValue(message: reader.messageName, field: "outcome", detail: "unknown outcome \(code)")
            }
            self.outcome = outcome
            detail = try reader.readString("detail", limit: 4096)
        }
    }

    /// ERROR: the sender failed; `code` is machine-readable, `message` for people.
    public struct ErrorReport: Hashable, Sendable, WireCodable {
        public var code: UInt32
        public var message: String

        public init(code: UInt32, message: String) {
            self.code = code
            self.message = message
        }

        public static let minimumEncodedSize = 8

        public func encode(to writer: inout WireWriter) throws(WireError) {
            try writer.write(code, "code")
            try writer.write(message, "message")
        }

        public init(from reader: inout WireReader) throws(WireError) {
            code = try reader.readUInt32("code")
            message = try reader.readString("message", limit: 4096)
        }
    }
}

extension MigrationMessage {
    /// TOUCHED_CHUNKS: which digest chunks of a region this iteration wrote or zeroed (one
    /// bit per chunk from `firstChunk` on, little-endian bit order within each byte). A
    /// region with more chunks than one bitmap holds is covered by several messages.
    public struct TouchedChunks: Hashable, Sendable, WireCodable {
        /// Keeps the bitmap within one control frame.
        public static let maximumBitmapBytes = 8192

        public var iteration: UInt32
        public var regionID: UInt32
        public var chunkSize: UInt32
        /// The chunk bit 0 of `bitmap` stands for; a multiple of 8.
        public var firstChunk: UInt32
        /// The iteration's last TOUCHED_CHUNKS: the destination hashes what it marked and
        /// answers ZERO_PAGES_APPLIED for the iteration.
        public var isLast: Bool
        public var bitmap: [UInt8]

        public init(iteration: UInt32, regionID: UInt32, chunkSize: UInt32, firstChunk: UInt32 = 0, isLast: Bool = true, bitmap: [UInt8]) {
            self.iteration = iteration
            self.regionID = regionID
            self.chunkSize = chunkSize
            self.firstChunk = firstChunk
            self.isLast = isLast
            self.bitmap = bitmap
        }

        public static let minimumEncodedSize = 4 + 4 + 4 + 4 + 1 + 4

        public func encode(to writer: inout WireWriter) throws(WireError) {
            try writer.write(iteration, "iteration")
            try writer.write(regionID, "regionID")
            try writer.write(chunkSize, "chunkSize")
            try writer.write(firstChunk, "firstChunk")
            try writer.write(isLast, "isLast")
            try writer.write(bytes: bitmap, "bitmap")
        }

        public init(from reader: inout WireReader) throws(WireError) {
            iteration = try reader.readUInt32("iteration")
            regionID = try reader.readUInt32("regionID")
            chunkSize = try reader.readUInt32("chunkSize")
            guard chunkSize >= 64, chunkSize & (chunkSize - 1) == 0 else {
                throw .invalidValue(message: reader.messageName, field: "chunkSize", detail: "\(chunkSize) is not a power of two of at least 64")
            }
            firstChunk = try reader.readUInt32("firstChunk")
            guard firstChunk % 8 == 0 else {
                throw .invalidValue(message: reader.messageName, field: "firstChunk", detail: "\(firstChunk) is not a multiple of 8")
            }
            isLast = try reader.readBool("isLast")
            bitmap = try reader.readBytes("bitmap", limit: Self.maximumBitmapBytes)
        }
    }
}
