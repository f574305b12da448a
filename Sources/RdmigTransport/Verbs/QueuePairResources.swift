import CRDMA
import RdmigSystem

/// The verbs objects of one connection, created in dependency order and released in the
/// reverse: QP, then CQ, then its completion channel, then every MR, then the PD
/// (each later one refuses to go, EBUSY, while an earlier one still uses it).
///
/// A final class because it is built on one thread (connect, or the listener's thread for an
/// accepted connection) and handed to the connection; after `build` nothing here changes
/// except the registrations, which lock.
final class QueuePairResources: @unchecked Sendable {
    private(set) var protectionDomain: ProtectionDomain?
    private(set) var completionChannel: CompletionChannel?
    private(set) var completionQueue: CompletionQueue?
    private(set) var queuePair: QueuePair?
    let registrations = RegistrationCache()

    /// The options with queue sizes and message limits as the device grants them.
    private(set) var effectiveOptions = TransportOptions()
    private(set) var deviceName = "unknown"
    /// For rdma_connect / rdma_accept (responder resources and initiator depth).
    private(set) var maxReadAtomicsIn: UInt8 = 0
    private(set) var maxReadAtomicsOut: UInt8 = 0
    private(set) var context: UnsafeMutablePointer<ibv_context>?
    private(set) var protectionDomainPointer: UnsafeMutablePointer<ibv_pd>?
    private(set) var completionChannelPointer: UnsafeMutablePointer<ibv_comp_channel>?
    private(set) var completionQueuePointer: UnsafeMutablePointer<ibv_cq>?
    private(set) var queuePairPointer: UnsafeMutablePointer<ibv_qp>?

    init() {}

    deinit {
        queuePair = nil
        completionQueue = nil
        completionChannel = nil
        registrations.deregisterAll()
        protectionDomain = nil
    }

    /// Creates PD, completion channel, CQ and an RC QP on `identifier`, sized from the
    /// device limits (`ibv_query_device`, `ibv_query_port`) and `options`. On a throw, what
    /// was created is released by deinit in the right order.
    func build(identifier: UnsafeMutablePointer<rdma_cm_id>, options: TransportOptions) throws(TransportError) {
        guard let context = identifier.pointee.verbs else {
            throw .deviceUnavailable(reason: "rdma_cm bound the connection to no RDMA device")
        }
        self.context = context
        deviceName = String(cString: ibv_get_device_name(context.pointee.device))
        var device = ibv_device_attr()
        let queried = ibv_query_device(context, &device)
        if queried != 0 {
            throw .system(SystemCallError(call: "ibv_query_device", errno: queried, context: deviceName))
        }
        var port = ibv_port_attr()
        let portQueried = ___ibv_query_port(context, identifier.pointee.port_num, &port)
        if portQueried != 0 {
            throw .system(SystemCallError(call: "ibv_query_port", errno: portQueried, context: "\(deviceName) port \(identifier.pointee.port_num)"))
        }
        effectiveOptions = QueuePairResources.fit(options, device: device, port: port)
        maxReadAtomicsIn = UInt8(clamping: device.max_qp_rd_atom)
        maxReadAtomicsOut = UInt8(clamping: device.max_qp_init_rd_atom)

        // Each object goes into its stored property as soon as it exists, so a later throw
        // leaves deinit to release exactly what was made, in order.
        let pd = try ProtectionDomain(context: context)
        protectionDomainPointer = pd.pointer
        protectionDomain = Optional(pd)
        let channel = try CompletionChannel(context: context)
        completionChannelPointer = channel.pointer
        completionChannel = Optional(channel)
        // Every send WR can complete (in error all do, signalled or not) and every posted
        // receive does: size the CQ for both queues so it can never overrun.
        let entries = Int32(clamping: effectiveOptions.sendQueueDepth + effectiveOptions.receiveQueueDepth)
        let cq = try CompletionQueue(context: context, entries: entries, channel: completionChannelPointer!)
        completionQueuePointer = cq.pointer
        completionQueue = Optional(cq)
        let qp = try QueuePair(
            identifier: identifier, protectionDomain: protectionDomainPointer!, completionQueue: completionQueuePointer!,
            sendDepth: effectiveOptions.sendQueueDepth, receiveDepth: effectiveOptions.receiveQueueDepth)
        queuePairPointer = qp.pointer
        queuePair = Optional(qp)
        requestShortAckTimeout(identifier)
    }

    /// Why the ACK timeout could not be asked for; nil when rdma_cm took it.
    private(set) var ackTimeoutProblem: String?

    /// The local ACK timeout rdmig asks rdma_cm to give the QP when it moves it to RTS: 14,
    /// 4.096 µs × 2^14 ≈ 67 ms, perftest's DEF_QP_TIME. Without it the CM derives one from the
    /// path's packet lifetime (on RoCE ~0.5 s and more), and a lost packet on a lossy RoCE
    /// fabric stalls the queue pair that long before its retransmission — inside a
    /// migration's downtime, ten times its limit.
    static let requestedAckTimeout: UInt8 = 14

    /// RDMA_OPTION_ID_ACK_TIMEOUT (rdma_set_option(3)) before connect/accept; rdma_cm applies
    /// it in the RTS transition. A kernel without the option leaves the CM's value (noted).
    private func requestShortAckTimeout(_ identifier: UnsafeMutablePointer<rdma_cm_id>) {
        var timeout = QueuePairResources.requestedAckTimeout
        let result = rdma_set_option(identifier, Int32(RDMA_OPTION_ID), Int32(RDMA_OPTION_ID_ACK_TIMEOUT),
                                     &timeout, MemoryLayout<UInt8>.size)
        if result != 0 {
            ackTimeoutProblem = "rdma_set_option(RDMA_OPTION_ID_ACK_TIMEOUT) failed: "
                + "\(SystemCallError(call: "rdma_set_option", errno: SystemCall.currentErrno()))"
        }
    }

    /// `options` cut to what the device and port allow. perftest does the same with tx_depth
    /// against max_qp_wr (perftest_parameters.c); the CQ must hold both queues' completions.
    static func fit(_ options: TransportOptions, device: ibv_device_attr, port: ibv_port_attr) -> TransportOptions {
        var fitted = options
        let maxWorkRequests = max(1, Int(device.max_qp_wr))
        fitted.sendQueueDepth = min(max(1, options.sendQueueDepth), maxWorkRequests)
        fitted.receiveQueueDepth = min(max(1, options.receiveQueueDepth), maxWorkRequests)
        let maxEntries = max(2, Int(device.max_cqe))
        if fitted.sendQueueDepth + fitted.receiveQueueDepth > maxEntries {
            fitted.sendQueueDepth = min(fitted.sendQueueDepth, maxEntries / 2)
            fitted.receiveQueueDepth = maxEntries - fitted.sendQueueDepth
        }
        if port.max_msg_sz > 0 {
            fitted.maxSendBytes = min(options.maxSendBytes, Int(port.max_msg_sz))
        }
        return fitted
    }
}
