import Foundation
import RdmigChannels
import RdmigSystem
import RdmigTransport

/// What both services share: the channels on one connection and the HELLO/AUTH handshake.
/// `package`: QEMU mode (RdmigQEMUMode) runs the same handshake.
package final class MigrationSession {
    package let connection: any TransportConnection
    package let router: CompletionRouter
    package let control: ControlChannel
    package let role: MigrationMessage.Role
    /// What this side announces; `qemuStream` marks QEMU mode, which a native peer refuses.
    package let features: MigrationMessage.Features
    package var peerHello: MigrationMessage.Hello?

    package static let nativeFeatures: MigrationMessage.Features = [.zeroPageMarkers, .deviceState, .switchoverAck, .digests]
    package static let qemuModeFeatures: MigrationMessage.Features = [.qemuStream, .deviceState, .digests]
    package static let software = "rdmig 0.1.0"

    package init(connection: any TransportConnection, role: MigrationMessage.Role, routerConfiguration: CompletionRouter.Configuration,
                 features: MigrationMessage.Features = MigrationSession.nativeFeatures) throws(MigrationError) {
        self.connection = connection
        self.role = role
        self.features = features
        do {
            router = try CompletionRouter(connection: connection, configuration: routerConfiguration)
        } catch {
            throw MigrationError(.setup, "setting up the channels with \(connection.peerEndpoint): \(error)")
        }
        do {
            control = try ControlChannel(router: router)
        } catch {
            router.close()
            throw MigrationError(.setup, "opening the control channel: \(error)")
        }
    }

    package func close() {
        control.close()
        router.close()
        connection.close()
    }

    /// HELLO both ways, then AUTH both ways. The destination checks the source's MAC before
    /// it answers with its own, and before anything is exported.
    package func handshake(key: PreSharedKey, timeout: Duration) throws(MigrationError) {
        let nonce = PeerAuthentication.freshNonce()
        var hello = MigrationMessage.Hello(role: role, features: features, nonce: nonce, software: Self.software)
        if let version = FaultInjection.helloVersion {
            FileHandle.standardError.write(Data("rdmig fault: announcing protocol v\(version)\n".utf8))
            hello.protocolVersion = version
        }
        let peer: MigrationMessage.Hello
        do {
            try control.send(MigrationMessage.hello(hello))
            let message = try control.receive(timeout: timeout)
            guard case .hello(let received) = message else {
                throw MigrationError(.authentication, "the peer sent \(message.wireName) instead of HELLO: is it an rdmig service?")
            }
            peer = received
        } catch let error as MigrationError {
            throw error
        } catch let error as ChannelError {
            throw MigrationError.channel(error, .authentication, during: "exchanging HELLO")
        } catch {
            throw MigrationError(.authentication, "exchanging HELLO: \(error)")
        }
        do {
            try peer.checkCompatible()
        } catch {
            throw MigrationError(.authentication, "\(error) (peer: \(peer.software))")
        }
        let expectedPeerRole: MigrationMessage.Role = role == .source ? .destination : .source
        guard peer.role == expectedPeerRole else {
            throw MigrationError(.authentication, "the peer is also a \(peer.role == .source ? "source" : "destination"): start `rdmig dest` on one side and `rdmig source` on the other")
        }
        // QEMU mode carries QEMU's stream, native mode carries pages: the two cannot talk.
        let peerQEMU = peer.features.contains(.qemuStream)
        if peerQEMU != features.contains(.qemuStream) {
            let peerName = peer.role == .source ? "source" : "destination"
            throw MigrationError(.authentication, peerQEMU
                ? "the \(peerName) runs in QEMU mode (--qemu-qmp) and this side in native mode: give both sides --qemu-qmp, or neither"
                : "the \(peerName) runs in native mode and this side in QEMU mode (--qemu-qmp): give both sides --qemu-qmp, or neither")
        }
        peerHello = peer
        let sourceNonce = role == .source ? nonce : peer.nonce
        let destinationNonce = role == .source ? peer.nonce : nonce
        let ownMAC = PeerAuthentication.mac(key: key, role: role, sourceNonce: sourceNonce, destinationNonce: destinationNonce)
        do {
            if role == .source { try control.send(MigrationMessage.auth(.init(mac: ownMAC))) }
            let message = try control.receive(timeout: timeout)
            guard case .auth(let auth) = message else {
                if case .abort(let abort) = message { throw MigrationError(.authentication, "the destination refused: \(abort.reason)") }
                throw MigrationError(.authentication, "the peer sent \(message.wireName) instead of AUTH")
            }
            guard PeerAuthentication.verify(auth.mac, key: key, role: expectedPeerRole, sourceNonce: sourceNonce, destinationNonce: destinationNonce) else {
                let reason = "authentication failed: the peers do not share the pre-shared key (this side uses \(key.path))"
                if role == .destination { try? control.send(MigrationMessage.abort(.init(reason: reason))) }
                throw MigrationError(.authentication, reason)
            }
            if role == .destination { try control.send(MigrationMessage.auth(.init(mac: ownMAC))) }
        } catch let error as MigrationError {
            throw error
        } catch let error as ChannelError {
            throw MigrationError.channel(error, .authentication, during: "exchanging AUTH")
        } catch {
            throw MigrationError(.authentication, "exchanging AUTH: \(error)")
        }
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
        let message: MigrationMessage
        do {
            message = try control.receive(timeout: timeout)
        } catch {
            if case .timedOut = error { return nil }
            throw MigrationError.channel(error, phase, during: during)
        }
        switch message {
        case .abort(let abort): throw MigrationError(phase, "the peer aborted: \(abort.reason)")
        case .error(let report): throw MigrationError(phase, "the peer reported an error: \(report.message)")
        default: return message
        }
    }

    package func send(_ message: MigrationMessage, _ phase: MigrationError.Phase) throws(MigrationError) {
        do {
            try control.send(message)
        } catch {
            throw MigrationError.channel(error, phase, during: "sending \(message.wireName)")
        }
    }

    /// Best effort: tells the peer why this side gives up (it may already be gone).
    package func abort(_ reason: String) {
        try? control.send(MigrationMessage.abort(.init(reason: reason)), timeout: .seconds(1))
    }
}
