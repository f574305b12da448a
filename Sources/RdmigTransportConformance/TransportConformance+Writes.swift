#if canImport(Glibc)
import Glibc
#endif
import RdmigTransport

/// Cases about moving bytes: visibility, ordering, volume, queue depth, SEND/RECV.
extension TransportConformance {
    static func writeIsVisibleAfterItsCompletion(_ environment: ConformanceEnvironment) throws {
        let peers = try ConformancePeers(environment)
        let size = 64 << 10
        let clientMemory = peers.memory(size)
        let serverMemory = peers.memory(size)
        let clientRegistration = try peers.register(clientMemory, on: peers.client, access: [.localWrite, .remoteWrite])
        let serverRegistration = try peers.register(serverMemory, on: peers.server, access: [.localWrite, .remoteWrite])
        // (offset, length) pairs: odd sizes and offsets, a page, the whole window.
        let writes = [(0, 1), (1, 7), (13, 4096), (4096, 4096), (100, 30_000), (0, size)]
        for (round, (offset, length)) in writes.enumerated() {
            // Both directions, so each side is writer and target once.
            for (writer, target, source, destination, registration, window) in [
                (peers.client, "server", clientMemory, serverMemory, clientRegistration, serverRegistration.window()),
                (peers.server, "client", serverMemory, clientMemory, serverRegistration, clientRegistration.window()),
            ] {
                source.fillPattern(seed: UInt64(round * 2 + (target == "server" ? 0 : 1)), offset: offset, length: length)
                let id = UInt64(round + 1)
                try expectNoError("post a \(length)-byte write to the \(target)") {
                    try writer.postWrite(registration.slice(offset: offset, length: length),
                                         to: window.slice(offset: UInt64(offset), length: length), id: id, signaled: true)
                }
                try expectCompletion(try completions(1, on: writer, "a \(length)-byte write to the \(target)")[0], id: id,
                                     kind: .write, "a \(length)-byte write to the \(target)")
                // Checked at once: the completion promises the bytes are in place.
                try destination.expectEqual(offset, source, offset, length: length,
                                            "the \(target)'s memory right after a \(length)-byte write at offset \(offset) completed")
            }
        }
    }

    static func immediateArrivesAfterAllPrecedingWrites(_ environment: ConformanceEnvironment) throws {
        let peers = try ConformancePeers(environment)
        let piece = 8 << 10
        let writes = max(1, min(120, environment.options.sendQueueDepth - 1))
        let source = peers.memory((writes + 1) * piece)
        source.fillPattern(seed: 42)
        let target = peers.memory((writes + 1) * piece)
        let local = try peers.register(source, on: peers.client, access: .localWrite)
        let window = try peers.register(target, on: peers.server, access: [.localWrite, .remoteWrite]).window()
        let receives = try peers.register(peers.memory(64), on: peers.server, access: .localWrite)
        try expectNoError("post a receive") { try peers.server.postReceive(receives.wholeSlice, id: 77) }
        for index in 0..<writes {
            try expectNoError("post write \(index)") {
                try peers.client.postWrite(local.slice(offset: index * piece, length: piece),
                                           to: window.slice(offset: UInt64(index * piece), length: piece),
                                           id: UInt64(index), signaled: false)
            }
        }
        let last = writes * piece
        try expectNoError("post the write with immediate") {
            try peers.client.postWrite(local.slice(offset: last, length: piece), to: window.slice(offset: UInt64(last), length: piece),
                                       id: 999, signaled: true, immediate: 0xC0FF_EE42)
        }
        let arrived = try completions(1, on: peers.server, "the write with immediate")[0]
        try expectCompletion(arrived, id: 77, kind: .receivedWriteWithImmediate, "the write with immediate on the receiver")
        try expect(arrived.immediate == 0xC0FF_EE42 && arrived.byteCount == piece,
                   "the write with immediate delivered immediate \(String(describing: arrived.immediate)) and \(arrived.byteCount) bytes, "
                   + "expected 0xc0ffee42 and \(piece)")
        // Checked at once: every write posted before the immediate must be visible now.
        try target.expectEqual(0, source, 0, length: (writes + 1) * piece,
                               "the receiver's memory when the immediate of write \(writes + 1) of \(writes + 1) arrived")
        let sent = try completions(1, on: peers.client, "the writer's completions")[0]
        try expectCompletion(sent, id: 999, kind: .write, "only the signalled write completes on the writer")
        try expectNoCompletion(on: peers.client, "unsignalled writes")

        // A zero-length write with immediate is a pure notification.
        try expectNoError("post a receive") { try peers.server.postReceive(receives.wholeSlice, id: 78) }
        try expectNoError("post a zero-length write with immediate") {
            try peers.client.postWrite(local.slice(offset: 0, length: 0), to: window.slice(offset: 0, length: 0),
                                       id: 1000, signaled: true, immediate: 7)
        }
        let notification = try completions(1, on: peers.server, "a zero-length write with immediate")[0]
        try expectCompletion(notification, id: 78, kind: .receivedWriteWithImmediate, "a zero-length write with immediate")
        try expect(notification.immediate == 7 && notification.byteCount == 0,
                   "a zero-length write with immediate 7 delivered \(String(describing: notification.immediate)), \(notification.byteCount) bytes")
        try expectCompletion(try completions(1, on: peers.client, "a zero-length write with immediate")[0], id: 1000, kind: .write,
                             "a zero-length write with immediate on the writer")
    }

    /// Sizes from one byte to hundreds of KiB, back to back: tiny frames next to large ones,
    /// lengths just around the tcp backend's 16 KiB direct-read threshold and its 64 KiB
    /// staging buffer, so that headers and payloads straddle every boundary a backend may have.
    static func writesOfMixedSizesArriveWholeAndInOrder(_ environment: ConformanceEnvironment) throws {
        let peers = try ConformancePeers(environment)
        let pattern = [1, 31, 4096, 100, 16383, 16384, 16385, 65535, 3, 200_000, 4096, 7, 65536, 65537, 12, 300_001]
        let rounds = 3
        let perRound = max(1, min(pattern.count, environment.options.sendQueueDepth - 2))
        let sizes = (0..<(rounds * perRound)).map { pattern[$0 % pattern.count] }
        let total = sizes.reduce(0, +)
        let source = peers.memory(total)
        source.fillPattern(seed: 99)
        let target = peers.memory(total)
        let local = try peers.register(source, on: peers.client, access: .localWrite)
        let window = try peers.register(target, on: peers.server, access: [.localWrite, .remoteWrite]).window()
        let receives = try peers.register(peers.memory(64), on: peers.server, access: .localWrite)
        var offset = 0
        for round in 0..<rounds {
            try expectNoError("post a receive") { try peers.server.postReceive(receives.wholeSlice, id: UInt64(500 + round)) }
            let first = round * perRound
            for index in first..<(first + perRound) {
                let size = sizes[index]
                let isLast = index == first + perRound - 1
                try expectNoError("post write \(index) of \(size) bytes") {
                    try peers.client.postWrite(local.slice(offset: offset, length: size),
                                               to: window.slice(offset: UInt64(offset), length: size),
                                               id: UInt64(index), signaled: isLast, immediate: isLast ? UInt32(round) : nil)
                }
                offset += size
            }
            let arrived = try completions(1, on: peers.server, "round \(round)'s write with immediate")[0]
            try expectCompletion(arrived, id: UInt64(500 + round), kind: .receivedWriteWithImmediate, "round \(round)'s write with immediate")
            try expect(arrived.immediate == UInt32(round) && arrived.byteCount == sizes[first + perRound - 1],
                       "round \(round) delivered immediate \(String(describing: arrived.immediate)) and \(arrived.byteCount) bytes, "
                       + "expected \(round) and \(sizes[first + perRound - 1])")
            // Every write of the round (and of the rounds before) is visible with its immediate.
            try target.expectEqual(0, source, 0, length: offset, "the receiver's memory after round \(round) of \(rounds)")
            try expectCompletion(try completions(1, on: peers.client, "round \(round) on the writer")[0], id: UInt64(first + perRound - 1),
                                 kind: .write, "round \(round)'s signalled write on the writer")
        }
        try expectNoCompletion(on: peers.client, "unsignalled writes")
    }

    static func largeTransferArrivesByteForByte(_ environment: ConformanceEnvironment) throws {
        let peers = try ConformancePeers(environment)
        // Whole MiBs, at least 4: three quarters as 1 MiB writes, the rest as one single write.
        let mebibytes = max(4, environment.largeTransferBytes >> 20)
        let total = mebibytes << 20
        let source = peers.memory(total)
        source.fillPattern(seed: 64)
        let target = peers.memory(total)
        let local = try peers.register(source, on: peers.client, access: .localWrite)
        let window = try peers.register(target, on: peers.server, access: [.localWrite, .remoteWrite]).window()
        let small = mebibytes * 3 / 4
        var pieces: [(offset: Int, length: Int)] = (0..<small).map { ($0 << 20, 1 << 20) }
        pieces.append((small << 20, (mebibytes - small) << 20))
        var signalled: [UInt64] = []
        for (index, piece) in pieces.enumerated() {
            let signal = index % 16 == 15 || index == pieces.count - 1
            if signal { signalled.append(UInt64(index)) }
            try expectNoError("post write \(index)") {
                try peers.client.postWrite(local.slice(offset: piece.offset, length: piece.length),
                                           to: window.slice(offset: UInt64(piece.offset), length: piece.length),
                                           id: UInt64(index), signaled: signal)
            }
        }
        let done = try completions(signalled.count, on: peers.client, "\(mebibytes) MiB of writes")
        for (completion, id) in zip(done, signalled) {
            try expectCompletion(completion, id: id, kind: .write, "signalled write \(id) of the \(mebibytes) MiB transfer")
        }
        try target.expectEqual(0, source, 0, length: total, "\(mebibytes) MiB written")
    }

    static func manyWritesInFlightWithSelectiveSignalling(_ environment: ConformanceEnvironment) throws {
        let peers = try ConformancePeers(environment)
        let depth = environment.options.sendQueueDepth
        let interval = environment.options.effectiveSignalInterval
        let piece = 1024
        let total = 4 * depth + interval / 2
        let source = peers.memory(total * piece)
        source.fillPattern(seed: 128)
        let target = peers.memory(total * piece)
        let local = try peers.register(source, on: peers.client, access: .localWrite)
        let window = try peers.register(target, on: peers.server, access: [.localWrite, .remoteWrite]).window()

        // WR i is signalled when i+1 is a multiple of the interval, when it fills the queue,
        // and when it is the last: the perftest pattern, with the queue kept full.
        func post(_ index: Int, signaled: Bool) throws {
            try peers.client.postWrite(local.slice(offset: index * piece, length: piece),
                                       to: window.slice(offset: UInt64(index * piece), length: piece),
                                       id: UInt64(index), signaled: signaled)
        }
        var posted = 0
        var freedThrough = -1  // WRs up to this index have completed (a signalled completion frees all before it).
        var expectedSignalled: [Int] = []
        var checkedFullQueue = false
        let buffer = UnsafeMutableBufferPointer<Completion>.allocate(capacity: 16)
        defer { buffer.deallocate() }
        while freedThrough < total - 1 {
            while posted < total && posted - freedThrough - 1 < depth {
                let fillsQueue = posted - freedThrough == depth
                let signaled = (posted + 1) % interval == 0 || fillsQueue || posted == total - 1
                try expectNoError("post write \(posted) with \(posted - freedThrough - 1) outstanding") { try post(posted, signaled: signaled) }
                if signaled { expectedSignalled.append(posted) }
                posted += 1
            }
            if !checkedFullQueue && posted < total {
                // The queue holds `depth` WRs and nothing was polled: one more must be refused.
                try expectTransportError("posting beyond the send queue depth \(depth)", matches: {
                    if case .queueFull(_, let reported) = $0 { return reported == depth }
                    return false
                }) { try post(posted, signaled: true) }
                checkedFullQueue = true
            }
            let count = peers.client.waitForCompletions(into: buffer, timeout: ConformancePeers.guardTime)
            try expect(count > 0, "no completion within \(ConformancePeers.guardTime) with \(posted - freedThrough - 1) writes outstanding "
                       + "(failure: \(String(describing: peers.client.failure)))")
            for completion in buffer.prefix(count) {
                guard let expected = expectedSignalled.first else {
                    throw ConformanceFailure("completion \(completion) for an unsignalled write")
                }
                try expectCompletion(completion, id: UInt64(expected), kind: .write, "signalled write \(expected), in order")
                expectedSignalled.removeFirst()
                freedThrough = expected
            }
        }
        try expect(checkedFullQueue, "the queue was never full")
        try expectNoCompletion(on: peers.client, "after the last signalled write")
        try target.expectEqual(0, source, 0, length: total * piece, "\(total) writes of \(piece) bytes")
    }

    static func sendAndReceiveCarryControlMessages(_ environment: ConformanceEnvironment) throws {
        let peers = try ConformancePeers(environment)
        let slot = 256
        let sizes = [1, 17, 100, 256, 0]
        let clientMemory = peers.memory(sizes.count * slot)
        let serverMemory = peers.memory(sizes.count * slot)
        let clientRegistration = try peers.register(clientMemory, on: peers.client, access: .localWrite)
        let serverRegistration = try peers.register(serverMemory, on: peers.server, access: .localWrite)

        for (sender, receiver, source, destination, sendRegistration, receiveRegistration, direction) in [
            (peers.client, peers.server, clientMemory, serverMemory, clientRegistration, serverRegistration, "client to server"),
            (peers.server, peers.client, serverMemory, clientMemory, serverRegistration, clientRegistration, "server to client"),
        ] {
            source.fillPattern(seed: 5)
            destination.fill(0)
            for index in sizes.indices {
                try expectNoError("post a receive") {
                    try receiver.postReceive(receiveRegistration.slice(offset: index * slot, length: slot), id: UInt64(100 + index))
                }
            }
            for (index, size) in sizes.enumerated() {
                try expectNoError("post a \(size)-byte SEND") {
                    try sender.postSend(sendRegistration.slice(offset: index * slot, length: size), id: UInt64(index), signaled: true)
                }
            }
            // Receives are consumed in the order posted, by SENDs in the order sent.
            let received = try completions(sizes.count, on: receiver, "SENDs \(direction)")
            for (index, completion) in received.enumerated() {
                try expectCompletion(completion, id: UInt64(100 + index), kind: .receive, "SEND \(index) \(direction)")
                try expect(completion.byteCount == sizes[index], "SEND \(index) \(direction) delivered \(completion.byteCount) bytes, sent \(sizes[index])")
                try destination.expectEqual(index * slot, source, index * slot, length: sizes[index], "SEND \(index) \(direction)")
            }
            let sent = try completions(sizes.count, on: sender, "SEND completions \(direction)")
            for (index, completion) in sent.enumerated() {
                try expectCompletion(completion, id: UInt64(index), kind: .send, "SEND \(index) \(direction) on the sender")
            }
        }

        // A SEND with no receive posted waits (RNR retry, rnr_retry=7) until one is posted.
        try expectNoError("post a SEND before any receive") {
            try peers.client.postSend(clientRegistration.slice(offset: 0, length: 8), id: 50, signaled: true)
        }
        let buffer = UnsafeMutableBufferPointer<Completion>.allocate(capacity: 1)
        defer { buffer.deallocate() }
        // Only evidence that nothing completes early; the case does not depend on this wait.
        try expect(peers.client.waitForCompletions(into: buffer, timeout: .milliseconds(20)) == 0,
                   "a SEND completed before the peer posted a receive: \(buffer[0])")
        try expectNoCompletion(on: peers.server, "the receiver without a posted receive")
        try expect(peers.client.failure == nil && peers.server.failure == nil, "waiting for a receive failed the connection")
        let clock = ContinuousClock()
        let posted = clock.now
        try expectNoError("post the late receive") {
            try peers.server.postReceive(serverRegistration.slice(offset: 0, length: slot), id: 51)
        }
        let late = try completions(1, on: peers.server, "the SEND waiting for a receive")[0]
        let waited = clock.now - posted
        try expectCompletion(late, id: 51, kind: .receive, "the SEND waiting for a receive")
        // Not a speed target: the bound only tells a prompt retry (well under a millisecond of
        // RNR timer on verbs, a credit advertisement on tcp) from the 655 ms a verbs QP waits
        // between retries when the RNR timer is left as rdma_cm sets it.
        try expect(waited < .milliseconds(400),
                   "the SEND waiting for a receive arrived \(waited) after the receive was posted: the sender retries too seldom "
                   + "(a verbs responder's min_rnr_timer left at 0 means 655 ms between retries)")
        try expect(late.byteCount == 8, "the late SEND delivered \(late.byteCount) bytes, sent 8")
        try expectCompletion(try completions(1, on: peers.client, "the SEND waiting for a receive")[0], id: 50, kind: .send,
                             "the SEND waiting for a receive on the sender")
    }

    /// Receives posted in groups of every size, before and after the SENDs that use them, are
    /// all used: however a backend tells the peer about posted receives (a tcp connection
    /// holds its credit advertisements back while the peer has enough), no SEND may wait for a
    /// receive that was posted. Only each group's last SEND is signalled, so no acknowledgement carries news of the
    /// receives along by chance.
    static func receivesPostedInGroupsOfEverySizeAreAllUsed(_ environment: ConformanceEnvironment) throws {
        var options = environment.options
        options.receiveQueueDepth = 16
        options.sendQueueDepth = 16
        let peers = try ConformancePeers(environment, options: options)
        let slot = 64
        let clientMemory = peers.memory(16 * slot)
        let serverMemory = peers.memory(16 * slot)
        let clientRegistration = try peers.register(clientMemory, on: peers.client, access: .localWrite)
        let serverRegistration = try peers.register(serverMemory, on: peers.server, access: .localWrite)
        clientMemory.fillPattern(seed: 9)
        var sequence: UInt64 = 0
        var posted = 0
        // Receives posted before the SENDs, in bursts a few milliseconds apart; then the SENDs;
        // then receives posted one at a time, each after the SENDs had time to wait for it.
        let groups: [(before: [Int], after: Int)] = [
            ([1], 0), ([15], 0), ([3], 0), ([], 5), ([4, 2], 0), ([4], 2), ([5], 0), ([2], 3), ([], 1),
            ([9], 4), ([1, 1, 1, 1, 1], 0), ([16], 0), ([], 16),
        ]
        for (before, after) in groups {
            let count = before.reduce(0, +) + after
            func postReceives(_ number: Int) throws {
                for _ in 0..<number {
                    let index = posted % 16
                    try expectNoError("post receive \(posted) (a group of \(count))") {
                        try peers.server.postReceive(serverRegistration.slice(offset: index * slot, length: slot), id: 1000 + UInt64(index))
                    }
                    posted += 1
                }
            }
            let first = posted
            for burst in before {
                try postReceives(burst)
                usleep(3000)
            }
            for index in 0..<count {
                try expectNoError("post SEND \(index) of a group of \(count)") {
                    try peers.client.postSend(clientRegistration.slice(offset: index * slot, length: slot), id: sequence + UInt64(index),
                                              signaled: index == count - 1)
                }
            }
            for _ in 0..<after {
                usleep(3000)
                try postReceives(1)
            }
            let received = try completions(count, on: peers.server, "a group of \(before) + \(after) receives")
            for (index, completion) in received.enumerated() {
                let slotIndex = (first + index) % 16
                try expectCompletion(completion, id: 1000 + UInt64(slotIndex), kind: .receive, "receive \(index) of a group of \(count)")
                try serverMemory.expectEqual(slotIndex * slot, clientMemory, index * slot, length: slot, "SEND \(index) of a group of \(count)")
            }
            let sent = try completions(1, on: peers.client, "the last SEND of a group of \(count)")
            try expectCompletion(sent[0], id: sequence + UInt64(count - 1), kind: .send, "the last SEND of a group of \(count)")
            sequence += UInt64(count)
        }
        try expect(peers.client.failure == nil && peers.server.failure == nil, "the connection failed")
    }
}
