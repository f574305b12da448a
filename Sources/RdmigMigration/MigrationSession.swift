import Foundation
import RdmigChannels
import RdmigSystem
import RdmigTransport
import Synchronization

/// What both services share: the channels on one connection and the HELLO/AUTH handshake.
/// `package`: QEMU mode (RdmigQEMUMode) runs the same handshake.
/// Sendable: every stored property is set once in `init`; the channels serialize their own users.
package final class MigrationSession: @unchecked Sendable {
    package let connection: any TransportConnection
    package let router: CompletionRouter
    package let control: ControlChannel
    package let role: MigrationMessage.Role
    /// What this side announces; `qemuStream` marks QEMU mode, which a native peer refuses.
    package let features: MigrationMessage.Features
    package let peerHello: MigrationMessage.Hello?

    package static let nativeFeatures: MigrationMessage.Features = [.zeroPageMarkers, .deviceState, .switchoverAck, .digests]
    package static let qemuModeFeatures: MigrationMessage.Features = [.qemuStream, .deviceState, .digests]
    package static let proxyModeFeatures: MigrationMessage.Features = [.proxyStream]
    package static let software = "rdmig 0.1.0"

    /// The keys this migration derived from the pre-shared key and both nonces.
    package let keys: SessionKeys
    /// Why this side must stop (a signal), asked in every wait for the peer while the session
    /// is `interruptible`; set once before the migration starts.
    package var stopReason: (@Sendable () -> String?)?
    /// Cleared once the guest has been handed over (COMMIT): from then on a signal no longer
    /// interrupts, the hand-over is finished first.
    package let interruptible = Atomic<Bool>(true)
    /// Whether the transport encrypts this session's frames (both sides agreed after AUTH).
    package let encrypted: Bool
    static let interruptCheckInterval: Duration = .milliseconds(250)

    /// Authenticates the peer on `connection` (HELLO both ways, then AUTH both ways, over a
    /// `HandshakeChannel`: before the peer proved it holds the key it gets no registered memory,
    /// no receive into registered memory and no window), then opens the channels, whose
    /// control frames carry a MAC under the session key. The whole handshake must finish
    /// within `handshakeTimeout`. On any failure the connection is closed.
    package init(connection: any TransportConnection, role: MigrationMessage.Role, key: PreSharedKey,
                 handshakeTimeout: Duration, routerConfiguration: CompletionRouter.Configuration,
                 features: MigrationMessage.Features = MigrationSession.nativeFeatures,
                 encryption: EncryptionPolicy = .auto,
                 log: @Sendable (String) -> Void = { _ in }) throws(MigrationError) {
        self.connection = connection
        self.role = role
        let wantsEncryption = encryption.wants(peer: connection.peerEndpoint)
        let features = wantsEncryption ? features.union(.encryption) : features.subtracting(.encryption)
        self.features = features
        let handshake: HandshakeChannel
        do {
            handshake = try HandshakeChannel(connection: connection, timeout: handshakeTimeout)
        } catch {
            throw MigrationError.channel(error, .authentication, during: "preparing the handshake")
        }
        let nonces: (source: [UInt8], destination: [UInt8])
        let peer: MigrationMessage.Hello
        do {
            (peer, nonces) = try Self.authenticate(handshake, role: role, features: features, key: key, log: log)
            handshake.finish()
        } catch {
            handshake.fail()
            throw error
        }
        peerHello = peer
        keys = SessionKeys(preSharedKey: key.bytes, sourceNonce: nonces.source, destinationNonce: nonces.destination)
        // Both sides decide alike from the two HELLOs, and turn it on at the same point:
        // after the last handshake frame, before the first channel frame.
        if wantsEncryption || peer.features.contains(.encryption) {
            let started: Bool
            do {
                started = try connection.startEncryption(keys.transportKeys(sending: role))
            } catch {
                connection.close()
                throw MigrationError(.authentication, "turning encryption on: \(error)")
            }
            if !started && encryption == .on {
                connection.close()
                throw MigrationError(.authentication, "--encrypt on: the \(connection.backend) backend does not encrypt (on RDMA the fabric is "
                    + "the boundary: InfiniBand partitions, RoCE VLANs, IPsec/MACsec offload); use --encrypt auto or off")
            }
            encrypted = started
        } else {
            encrypted = false
        }
        let authenticator = keys.frameAuthenticator(sending: role)
        do {
            router = try CompletionRouter(connection: connection, configuration: routerConfiguration, authenticator: authenticator)
        } catch {
            throw MigrationError(.setup, "setting up the channels with \(connection.peerEndpoint): \(error)")
        }
        do {
            control = try ControlChannel(router: router, authenticator: authenticator)
        } catch {
            router.close()
            connection.close()
            throw MigrationError(.setup, "opening the control channel: \(error)")
        }
    }

    /// Returns whether the peer acknowledged every control message this side sent.
    @discardableResult
    package func close() -> Bool {
        let delivered = control.close()
        router.close()
        connection.close()
        return delivered
    }

    /// HELLO both ways, then AUTH both ways. The source speaks first each time; the
    /// destination checks the source's MAC before it sends its own, and long before anything
    /// is registered for the peer.
    private static func authenticate(_ handshake: HandshakeChannel, role: MigrationMessage.Role, features: MigrationMessage.Features,
                                     key: PreSharedKey, log: @Sendable (String) -> Void)
        throws(MigrationError) -> (MigrationMessage.Hello, (source: [UInt8], destination: [UInt8])) {
        let nonce = PeerAuthentication.freshNonce()
        var hello = MigrationMessage.Hello(role: role, features: features, nonce: nonce, software: software)
        if let version = FaultInjection.helloVersion {
            FileHandle.standardError.write(Data("rdmig fault: announcing protocol v\(version)\n".utf8))
            hello.protocolVersion = version
        }
        let peerName = role == .source ? "destination" : "source"
        let peer: MigrationMessage.Hello
        do {
            // HELLO: the source's first; both receives are posted before anything is sent.
            let received: MigrationMessage
            try handshake.expectFrames()
            if role == .source {
                try handshake.send(.hello(hello))
                received = try handshake.receive(operation: "waiting for the destination's HELLO")
            } else {
                received = try handshake.receive(operation: "waiting for the source's HELLO")
                // Sent whatever the source announced, so that a source of another version
                // learns which version this side speaks.
                try handshake.send(.hello(hello))
            }
            switch received {
            case .hello(let value): peer = value
            case .abort(let abort): throw MigrationError(.authentication, "the \(peerName) refused: \(abort.reason)")
            default: throw MigrationError(.authentication, "the peer sent \(received.wireName) instead of HELLO: is it an rdmig service?")
            }
        } catch let error as MigrationError {
            throw error
        } catch let error as ChannelError {
            throw MigrationError.channel(error, .authentication, during: "exchanging HELLO")
        } catch {
            throw MigrationError(.authentication, "exchanging HELLO: \(error)")
        }
        if let refusal = Self.incompatibility(of: peer, role: role, features: features) {
            // Harmless to tell: which version and mode this side runs, so the source can say so.
            if role == .destination { try? handshake.send(.abort(.init(reason: refusal))) }
            throw MigrationError(.authentication, refusal)
        }
        let sourceNonce = role == .source ? nonce : peer.nonce
        let destinationNonce = role == .source ? peer.nonce : nonce
        let expectedPeerRole = peer.role
        let ownMAC = PeerAuthentication.mac(key: key, role: role, sourceNonce: sourceNonce, destinationNonce: destinationNonce)
        do {
            if role == .source { try handshake.send(.auth(.init(mac: ownMAC))) }
            let message = try handshake.receive(operation: "waiting for the \(peerName)'s AUTH")
            guard case .auth(let auth) = message else {
                if case .abort(let abort) = message {
                    throw MigrationError(.authentication, "the destination refused: \(abort.reason) (this side uses \(key.path))")
                }
                throw MigrationError(.authentication, "the peer sent \(message.wireName) instead of AUTH")
            }
            guard PeerAuthentication.verify(auth.mac, key: key, role: expectedPeerRole, sourceNonce: sourceNonce, destinationNonce: destinationNonce) else {
                // The peer is told what failed, never where this side keeps its key.
                let reason = "authentication failed: the peers do not share the pre-shared key"
                if role == .destination { try? handshake.send(.abort(.init(reason: reason + " (run `rdmig keygen` on one host and copy the key file to the other, mode 600)"))) }
                throw MigrationError(.authentication, "\(reason) (this side uses \(key.path))")
            }
            if role == .destination { try handshake.send(.auth(.init(mac: ownMAC))) }
        } catch let error as MigrationError {
            throw error
        } catch let error as ChannelError {
            throw MigrationError.channel(error, .authentication, during: "exchanging AUTH")
        } catch {
            throw MigrationError(.authentication, "exchanging AUTH: \(error)")
        }
        return (peer, (sourceNonce, destinationNonce))
    }

    /// Why this side cannot migrate with `peer` (another version, the same role, the other
    /// mode), or nil.
    private static func incompatibility(of peer: MigrationMessage.Hello, role: MigrationMessage.Role,
                                        features: MigrationMessage.Features) -> String? {
        do {
            try peer.checkCompatible()
        } catch {
            return "\(error) (peer: \(peer.software))"
        }
        let expectedPeerRole: MigrationMessage.Role = role == .source ? .destination : .source
        guard peer.role == expectedPeerRole else {
            return "the peer is also a \(peer.role == .source ? "source" : "destination"): start `rdmig dest` on one side and `rdmig source` on the other"
        }
        // Proxy mode relays bytes of any protocol, the other modes a migration: none of them
        // can talk to another.
        let peerName = role == .source ? "destination" : "source"
        let peerProxy = peer.features.contains(.proxyStream)
        guard peerProxy == features.contains(.proxyStream) else {
            return peerProxy
                ? "the \(peerName) runs in proxy mode (`rdmig proxy`) and this side migrates (`rdmig source`/`rdmig dest`): use `rdmig proxy` on both sides, or on neither"
                : "the \(peerName) migrates (`rdmig source`/`rdmig dest`) and this side runs in proxy mode (`rdmig proxy`): use `rdmig proxy` on both sides, or on neither"
        }
        // QEMU mode carries QEMU's stream, native mode carries pages: the two cannot talk.
        let peerQEMU = peer.features.contains(.qemuStream)
        guard peerQEMU == features.contains(.qemuStream) else {
            return peerQEMU
                ? "the \(peerName) runs in QEMU mode (--qemu-qmp) and this side in native mode: give both sides --qemu-qmp, or neither"
                : "the \(peerName) runs in native mode and this side in QEMU mode (--qemu-qmp): give both sides --qemu-qmp, or neither"
        }
        return nil
    }

    /// The next control message; ABORT and ERROR from the peer become errors.
    package func receive(_ phase: MigrationError.Phase, during: String, timeout: Duration) throws(MigrationError) -> MigrationMessage {
        guard let message = try receiveIfAny(phase, during: during, timeout: timeout) else {
            throw MigrationError(phase, "\(during): nothing from the peer for \(formatFixed(timeout.seconds, decimals: 1)) s")
        }
        return message
    }

    /// Like `receive`, but nil when nothing arrived within `timeout`.
    package func receiveIfAny(_ phase: MigrationError.Phase, during: String, timeout: Duration) throws(MigrationError) -> MigrationMessage? {
        let deadline = ContinuousClock.now + timeout
        var received: MigrationMessage?
        while received == nil {
            try checkInterrupted(phase)
            let left = deadline - ContinuousClock.now
            do {
                received = try control.receive(timeout: max(.zero, min(left, Self.interruptCheckInterval)))
            } catch {
                if case .timedOut = error {
                    if ContinuousClock.now >= deadline { return nil }
                    continue
                }
                throw MigrationError.channel(error, phase, during: during)
            }
        }
        let message = received!
        switch message {
        case .abort(let abort): throw MigrationError(phase, "the peer aborted: \(abort.reason)", peerGaveUp: true)
        case .error(let report): throw MigrationError(phase, "the peer reported an error: \(report.message)", peerGaveUp: true)
        default: return message
        }
    }

    /// Throws when a stop was asked for and the guest has not been handed over yet.
    package func checkInterrupted(_ phase: MigrationError.Phase) throws(MigrationError) {
        guard interruptible.load(ordering: .acquiring), let reason = stopReason?() else { return }
        throw MigrationError(phase, reason)
    }

    package func send(_ message: MigrationMessage, _ phase: MigrationError.Phase, timeout: Duration? = nil) throws(MigrationError) {
        do {
            try control.send(message, timeout: timeout)
        } catch {
            throw MigrationError.channel(error, phase, during: "sending \(message.wireName)")
        }
    }

    private let aborted = Atomic<Bool>(false)

    /// The reason in an ABORT or ERROR the peer sent that this side has not read yet (it may
    /// have been busy writing when the peer gave up, and then seen only the connection fail):
    /// the cause, where the local error is only its consequence.
    package func unreadPeerAbort() -> String? {
        for _ in 0..<64 {
            guard let message = try? control.receive(timeout: .zero) else { return nil }
            switch message {
            case .abort(let abort): return "the peer aborted: \(abort.reason)"
            case .error(let report): return "the peer reported an error: \(report.message)"
            default: continue
            }
        }
        return nil
    }

    /// Best effort: tells the peer why this side gives up (it may already be gone). Once: the
    /// first reason is the one that counts.
    package func abort(_ reason: String) {
        guard !aborted.exchange(true, ordering: .acquiringAndReleasing) else { return }
        try? control.send(MigrationMessage.abort(.init(reason: reason)), timeout: .seconds(1))
    }
}
