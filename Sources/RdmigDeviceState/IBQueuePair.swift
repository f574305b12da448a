/// A queue pair as a VF's state holds it: transport and state, the PD, CQs and SRQ it is
/// linked to, its packet sequence numbers and work-queue counters, and for connected
/// transports the path to its peer (LID/GID, MTU, SL) and the retry timers. These are the
/// fields mlx4's resource tracker keeps per QP and the thesis re-creates on the target.
public struct IBQueuePair: Equatable, Sendable, IBStateObject {
    public var qpn: UInt32
    public var type: IBQueuePairType
    public var state: IBQueuePairState
    public var port: UInt8
    public var serviceLevel: UInt8
    public var pdn: UInt32
    public var sendCQN: UInt32
    public var receiveCQN: UInt32
    /// `IBQueuePair.noSRQ` when the QP has its own receive queue.
    public var srqn: UInt32
    public var pkeyIndex: UInt16
    public var destinationLID: UInt16
    /// UD only: the Q_Key datagrams must carry.
    public var qkey: UInt32
    /// Send-queue PSN (24 bits): the next PSN this QP sends.
    public var sendPSN: UInt32
    /// Receive-queue PSN (24 bits): the next PSN this QP expects.
    public var receivePSN: UInt32
    /// The peer QP (connected transports).
    public var destinationQPN: UInt32
    public var destinationGID: IBGid
    public var sourceGIDIndex: UInt8
    public var pathMTU: IBMTU
    public var timeout: UInt8
    public var retryCount: UInt8
    public var rnrRetry: UInt8
    public var minRNRTimer: UInt8
    public var maxReadAtomic: UInt8
    public var maxDestinationReadAtomic: UInt8
    public var accessFlags: UInt32
    /// Send and receive WQE counters: how far the guest has posted.
    public var sendHead: UInt32
    public var receiveHead: UInt32

    public static let noSRQ: UInt32 = 0xFFFF_FFFF
    /// PSNs are 24-bit on the wire.
    public static let psnMask: UInt32 = 0x00FF_FFFF

    static let kind = IBObjectKind.queuePair
    static let bodySize = 80
    static let empty = IBQueuePair(
        qpn: 0, type: .reliableConnected, state: .reset, port: 0, serviceLevel: 0, pdn: 0, sendCQN: 0, receiveCQN: 0,
        srqn: 0, pkeyIndex: 0, destinationLID: 0, qkey: 0, sendPSN: 0, receivePSN: 0, destinationQPN: 0,
        destinationGID: .zero, sourceGIDIndex: 0, pathMTU: .mtu256, timeout: 0, retryCount: 0, rnrRetry: 0,
        minRNRTimer: 0, maxReadAtomic: 0, maxDestinationReadAtomic: 0, accessFlags: 0, sendHead: 0, receiveHead: 0)

    public init(
        qpn: UInt32, type: IBQueuePairType, state: IBQueuePairState, port: UInt8, serviceLevel: UInt8, pdn: UInt32,
        sendCQN: UInt32, receiveCQN: UInt32, srqn: UInt32, pkeyIndex: UInt16, destinationLID: UInt16, qkey: UInt32,
        sendPSN: UInt32, receivePSN: UInt32, destinationQPN: UInt32, destinationGID: IBGid, sourceGIDIndex: UInt8,
        pathMTU: IBMTU, timeout: UInt8, retryCount: UInt8, rnrRetry: UInt8, minRNRTimer: UInt8, maxReadAtomic: UInt8,
        maxDestinationReadAtomic: UInt8, accessFlags: UInt32, sendHead: UInt32, receiveHead: UInt32
    ) {
        self.qpn = qpn
        self.type = type
        self.state = state
        self.port = port
        self.serviceLevel = serviceLevel
        self.pdn = pdn
        self.sendCQN = sendCQN
        self.receiveCQN = receiveCQN
        self.srqn = srqn
        self.pkeyIndex = pkeyIndex
        self.destinationLID = destinationLID
        self.qkey = qkey
        self.sendPSN = sendPSN
        self.receivePSN = receivePSN
        self.destinationQPN = destinationQPN
        self.destinationGID = destinationGID
        self.sourceGIDIndex = sourceGIDIndex
        self.pathMTU = pathMTU
        self.timeout = timeout
        self.retryCount = retryCount
        self.rnrRetry = rnrRetry
        self.minRNRTimer = minRNRTimer
        self.maxReadAtomic = maxReadAtomic
        self.maxDestinationReadAtomic = maxDestinationReadAtomic
        self.accessFlags = accessFlags
        self.sendHead = sendHead
        self.receiveHead = receiveHead
    }

    func encode(into writer: inout ByteWriter) {
        writer.u32(qpn)
        writer.u8(type.rawValue)
        writer.u8(state.rawValue)
        writer.u8(port)
        writer.u8(serviceLevel)
        writer.u32(pdn)
        writer.u32(sendCQN)
        writer.u32(receiveCQN)
        writer.u32(srqn)
        writer.u16(pkeyIndex)
        writer.u16(destinationLID)
        writer.u32(qkey)
        writer.u32(sendPSN)
        writer.u32(receivePSN)
        writer.u32(destinationQPN)
        writer.u64(destinationGID.subnetPrefix)
        writer.u64(destinationGID.interfaceID)
        writer.u8(sourceGIDIndex)
        writer.u8(pathMTU.rawValue)
        writer.u8(timeout)
        writer.u8(retryCount)
        writer.u8(rnrRetry)
        writer.u8(minRNRTimer)
        writer.u8(maxReadAtomic)
        writer.u8(maxDestinationReadAtomic)
        writer.u32(accessFlags)
        writer.u32(sendHead)
        writer.u32(receiveHead)
    }

    init(decoding reader: inout ByteReader) throws(IBFieldError) {
        qpn = reader.u32()
        type = try decodeEnum(IBQueuePairType.self, reader.u8(), field: "type")
        state = try decodeEnum(IBQueuePairState.self, reader.u8(), field: "state")
        port = reader.u8()
        serviceLevel = reader.u8()
        pdn = reader.u32()
        sendCQN = reader.u32()
        receiveCQN = reader.u32()
        srqn = reader.u32()
        pkeyIndex = reader.u16()
        destinationLID = reader.u16()
        qkey = reader.u32()
        sendPSN = reader.u32()
        receivePSN = reader.u32()
        destinationQPN = reader.u32()
        destinationGID = IBGid(subnetPrefix: reader.u64(), interfaceID: reader.u64())
        sourceGIDIndex = reader.u8()
        pathMTU = try decodeEnum(IBMTU.self, reader.u8(), field: "pathMTU")
        timeout = reader.u8()
        retryCount = reader.u8()
        rnrRetry = reader.u8()
        minRNRTimer = reader.u8()
        maxReadAtomic = reader.u8()
        maxDestinationReadAtomic = reader.u8()
        accessFlags = reader.u32()
        sendHead = reader.u32()
        receiveHead = reader.u32()
        guard sendPSN <= IBQueuePair.psnMask else { throw IBFieldError(field: "sendPSN", value: UInt64(sendPSN)) }
        guard receivePSN <= IBQueuePair.psnMask else { throw IBFieldError(field: "receivePSN", value: UInt64(receivePSN)) }
    }

    var label: String { "qp \(hex(qpn))" }
}
