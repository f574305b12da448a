import RdmigTransport

/// Cases about refused access: the remote side checks every write against what it exported.
extension TransportConformance {
    /// What a refused write must look like from both sides.
    private static func expectRefusedWrite(_ peers: ConformancePeers, refusedID: UInt64, successes: [UInt64], flushedAfter: [UInt64],
                                           serverReceiveID: UInt64, _ what: String) throws {
        var clientSaw: [Completion] = []
        try collect(on: peers.client, "the writer's completions after \(what)") { completion in
            clientSaw.append(completion)
            return completion.id != flushedAfter.last ?? refusedID
        }
        let expected = successes.map { ($0, Completion.Status.success) } + [(refusedID, .remoteAccessError)]
            + flushedAfter.map { ($0, Completion.Status.flushed) }
        try expect(clientSaw.map(\.id) == expected.map(\.0) && clientSaw.map(\.status) == expected.map(\.1),
                   "\(what): the writer saw \(clientSaw.map { "\($0.id) \($0.status)" }), expected \(expected.map { "\($0.0) \($0.1)" })")
        guard case .remoteAccessRefused? = peers.client.failure else {
            throw ConformanceFailure("\(what): the writer reports \(String(describing: peers.client.failure)), expected remoteAccessRefused")
        }
        let serverSaw = try completions(1, on: peers.server, "the target's posted receive after \(what)")[0]
        try expectCompletion(serverSaw, id: serverReceiveID, kind: .receive, status: .flushed, "\(what): the target's posted receive")
        guard case .invalidRemoteAccess? = peers.server.failure else {
            throw ConformanceFailure("\(what): the target reports \(String(describing: peers.server.failure)), expected invalidRemoteAccess")
        }
        let isClosed: (TransportError) -> Bool = { if case .connectionClosed = $0 { return true }; return false }
        try expectTransportError("\(what): posting on the writer afterwards", matches: isClosed) {
            try peers.client.postSend(LocalSlice(address: 0, length: 0, localKey: 0), id: 1, signaled: true)
        }
        try expectTransportError("\(what): posting on the target afterwards", matches: isClosed) {
            try peers.server.postSend(LocalSlice(address: 0, length: 0, localKey: 0), id: 1, signaled: true)
        }
    }

    static func writeOutsideTheWindowIsRefusedAndTearsDownTheConnection(_ environment: ConformanceEnvironment) throws {
        let peers = try ConformancePeers(environment)
        let page = 4096
        let windowLength = 4 * page
        // guard page | window | guard page, all 0xA5; only the window is registered.
        let target = peers.memory(windowLength + 2 * page, fill: 0xA5)
        let window = try peers.register(target, on: peers.server, access: [.localWrite, .remoteWrite],
                                        offset: page, length: windowLength).window()
        let receives = try peers.register(peers.memory(64), on: peers.server, access: .localWrite)
        try expectNoError("post a receive") { try peers.server.postReceive(receives.wholeSlice, id: 90) }
        let source = peers.memory(windowLength)
        source.fillPattern(seed: 11)
        let local = try peers.register(source, on: peers.client, access: .localWrite)

        try expectNoError("post a write inside the window") {
            try peers.client.postWrite(local.slice(offset: 0, length: page), to: window.slice(offset: 0, length: page), id: 1, signaled: true)
        }
        // Starts inside, ends 1 KiB past the window's end.
        let crossing = UInt64(windowLength - 3 * 1024)
        try expectNoError("post a write that crosses the window's end") {
            try peers.client.postWrite(local.slice(offset: 0, length: page), to: window.slice(offset: crossing, length: page),
                                       id: 2, signaled: true)
        }
        let thirdPosted = try postUnlessFailed("post a write after the refused one") {
            try peers.client.postWrite(local.slice(offset: page, length: page), to: window.slice(offset: UInt64(page), length: page),
                                       id: 3, signaled: true)
        }
        try expectRefusedWrite(peers, refusedID: 2, successes: [1], flushedAfter: thirdPosted ? [3] : [], serverReceiveID: 90,
                               "a write past the window's end")
        try target.expectEqual(page, source, 0, length: page, "the write before the refused one")
        try target.expectAll(0xA5, offset: 0, length: page, "the guard page before the window")
        try target.expectAll(0xA5, offset: page + windowLength, length: page, "the guard page after the window")
        try target.expectAll(0xA5, offset: page + Int(crossing), length: 3 * 1024, "the window's part of the refused write")
        try target.expectAll(0xA5, offset: 2 * page, length: page, "the target of the write after the refused one")

        // A write that starts before the window is refused the same way.
        let again = try ConformancePeers(environment)
        let target2 = again.memory(windowLength + 2 * page, fill: 0xA5)
        let window2 = try again.register(target2, on: again.server, access: [.localWrite, .remoteWrite],
                                         offset: page, length: windowLength).window()
        let receives2 = try again.register(again.memory(64), on: again.server, access: .localWrite)
        try expectNoError("post a receive") { try again.server.postReceive(receives2.wholeSlice, id: 91) }
        let local2 = try again.register(source, on: again.client, access: .localWrite)
        let before = RemoteSlice(address: window2.address - 16, remoteKey: window2.remoteKey)
        try expectNoError("post a write that starts 16 bytes before the window") {
            try again.client.postWrite(local2.slice(offset: 0, length: 64), to: before, id: 5, signaled: false)
        }
        try expectRefusedWrite(again, refusedID: 5, successes: [], flushedAfter: [], serverReceiveID: 91, "a write before the window's start")
        try target2.expectAll(0xA5, offset: 0, length: target2.count, "memory around and inside the window")
        withExtendedLifetime(source) {}
    }

    static func writeWithAnUnknownKeyIsRefused(_ environment: ConformanceEnvironment) throws {
        let peers = try ConformancePeers(environment)
        let length = 8192
        let target = peers.memory(length, fill: 0x5A)
        let window = try peers.register(target, on: peers.server, access: [.localWrite, .remoteWrite]).window()
        let receives = try peers.register(peers.memory(64), on: peers.server, access: .localWrite)
        try expectNoError("post a receive") { try peers.server.postReceive(receives.wholeSlice, id: 92) }
        let source = peers.memory(length)
        source.fillPattern(seed: 12)
        let local = try peers.register(source, on: peers.client, access: .localWrite)
        let badKey = window.remoteKey ^ 0x00A5_5A00
        try expectNoError("post a write with a key the target never exported") {
            try peers.client.postWrite(local.wholeSlice, to: RemoteSlice(address: window.address, remoteKey: badKey), id: 1, signaled: true)
        }
        let secondPosted = try postUnlessFailed("post a write after it") {
            try peers.client.postWrite(local.wholeSlice, to: window.slice(offset: 0, length: length), id: 2, signaled: true)
        }
        try expectRefusedWrite(peers, refusedID: 1, successes: [], flushedAfter: secondPosted ? [2] : [], serverReceiveID: 92,
                               "a write with an unknown key")
        try target.expectAll(0x5A, offset: 0, length: length, "the window a bad-key write aimed at")
    }

    static func writeIntoADeregisteredWindowIsRefused(_ environment: ConformanceEnvironment) throws {
        let peers = try ConformancePeers(environment)
        let length = 8192
        let target = peers.memory(length)
        let registration = try peers.register(target, on: peers.server, access: [.localWrite, .remoteWrite])
        let window = registration.window()
        let receives = try peers.register(peers.memory(64), on: peers.server, access: .localWrite)
        try expectNoError("post a receive") { try peers.server.postReceive(receives.wholeSlice, id: 93) }
        let source = peers.memory(length)
        source.fillPattern(seed: 13)
        let local = try peers.register(source, on: peers.client, access: .localWrite)
        try expectNoError("post a write into the window") {
            try peers.client.postWrite(local.wholeSlice, to: window.slice(offset: 0, length: length), id: 1, signaled: true)
        }
        try expectCompletion(try completions(1, on: peers.client, "a write before deregistration")[0], id: 1, kind: .write,
                             "a write before deregistration")
        try target.expectEqual(0, source, 0, length: length, "a write before deregistration")
        try expectNoError("deregister the window") { try peers.server.deregister(registration) }
        target.fill(0x3C)
        try expectNoError("post a write into the withdrawn window") {
            try peers.client.postWrite(local.wholeSlice, to: window.slice(offset: 0, length: length), id: 2, signaled: true)
        }
        try expectRefusedWrite(peers, refusedID: 2, successes: [], flushedAfter: [], serverReceiveID: 93, "a write into a deregistered window")
        try target.expectAll(0x3C, offset: 0, length: length, "memory whose window was deregistered")
    }

    static func sendLargerThanThePostedReceiveFailsBothSides(_ environment: ConformanceEnvironment) throws {
        let peers = try ConformancePeers(environment)
        let receives = try peers.register(peers.memory(256), on: peers.server, access: .localWrite)
        try expectNoError("post a 64-byte receive") { try peers.server.postReceive(receives.slice(offset: 0, length: 64), id: 7) }
        try expectNoError("post a second receive") { try peers.server.postReceive(receives.slice(offset: 128, length: 128), id: 8) }
        let source = peers.memory(256)
        let local = try peers.register(source, on: peers.client, access: .localWrite)
        try expectNoError("post a 100-byte SEND") { try peers.client.postSend(local.slice(offset: 0, length: 100), id: 1, signaled: true) }
        let secondPosted = try postUnlessFailed("post a SEND after it") {
            try peers.client.postSend(local.slice(offset: 0, length: 10), id: 2, signaled: true)
        }

        let serverSaw = try completions(2, on: peers.server, "the receives after an oversized SEND")
        try expectCompletion(serverSaw[0], id: 7, kind: .receive, status: .localLengthError, "the receive an oversized SEND hit")
        try expectCompletion(serverSaw[1], id: 8, kind: .receive, status: .flushed, "the receive after it")
        try expect(peers.server.failure != nil, "the receiver of an oversized SEND reports no failure")
        let clientSaw = try completions(secondPosted ? 2 : 1, on: peers.client, "the SENDs after an oversized SEND")
        try expect(clientSaw[0].id == 1 && clientSaw[0].status != .success && clientSaw[0].status != .flushed,
                   "the oversized SEND completed \(clientSaw[0].id) \(clientSaw[0].status), expected an error of its own")
        if secondPosted {
            try expectCompletion(clientSaw[1], id: 2, kind: .send, status: .flushed, "the SEND after the oversized one")
        }
        try expectNoCompletion(on: peers.client, "after the SENDs")
        try expect(peers.client.failure != nil, "the sender of an oversized SEND reports no failure")
    }
}
