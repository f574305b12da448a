import ArgumentParser
import Foundation
import Logging
import RdmigMigration
import RdmigProxy
import RdmigSystem
import RdmigTransport

/// `rdmig proxy source|dest`: a byte-stream relay between a unix socket on the source host and
/// one on the destination host, each connection its own authenticated transport connection
/// (see ProxySource / ProxyDestination). No QMP, no knowledge of what the bytes are.
struct ProxyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proxy",
        abstract: "Relay unix-socket connections (e.g. QEMU's or libvirt's migration sockets) between two hosts over rdmig's transport.",
        subcommands: [ProxySourceCommand.self, ProxyDestCommand.self])
}

struct ProxySourceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "source",
        abstract: "Accept connections on a unix socket and relay each to `rdmig proxy dest` over its own transport connection.")

    @Option(name: .customLong("listen-unix"), help: "Unix socket to accept connections on (e.g. QEMU's `migrate unix:PATH`).")
    var listenUnix: String

    @Option(help: "The proxy destination, HOST:PORT (IPv6: [ADDR]:PORT).")
    var connect: TransportEndpoint

    @Flag(name: .customLong("keep-serving"), help: "Relay connections until stopped (default: stop once the first connections all ended).")
    var keepServing = false

    @OptionGroup var service: ServiceOptions

    func run() throws {
        var configuration = try service.load()
        let log = service.logger("rdmig.proxy.source")
        let key = try service.key(configuration, log: log)
        InterruptSignal.install()
        let (selection, placement) = try configuration.placeHotPath(for: connect, log: log, announceBackend: true)
        let options = ProxyCommandSupport.options(key: key, configuration: configuration, cpus: placement.cpus,
                                                  keepServing: keepServing, service: service, log: log)
        let source = ProxySource(listenPath: listenUnix, endpoint: connect, backend: selection.backend, options: options)
        let report: ProxyReport
        do {
            report = try source.run {
                FileHandle.standardError.write(Data("rdmig proxy source: listening on unix:\(listenUnix), relaying to \(connect) (\(selection.kind): \(selection.reason))\n".utf8))
            }
        } catch {
            throw RdmigCommandError("proxy source on \(listenUnix): \(error)")
        }
        try ProxyCommandSupport.finish(report, keepServing: keepServing, service: service)
    }
}

struct ProxyDestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dest",
        abstract: "Accept `rdmig proxy source` connections and relay each to a unix socket (e.g. QEMU's `-incoming unix:PATH`).")

    @Option(help: "Address to listen on, HOST:PORT (port 0 picks one and prints it).")
    var listen: TransportEndpoint

    @Option(name: .customLong("connect-unix"), help: "Unix socket each relayed connection is connected to.")
    var connectUnix: String

    @Flag(name: .customLong("keep-serving"), help: "Relay connections until stopped (default: stop once the first connections all ended).")
    var keepServing = false

    @OptionGroup var service: ServiceOptions

    func run() throws {
        var configuration = try service.load()
        let log = service.logger("rdmig.proxy.dest")
        let key = try service.key(configuration, log: log)
        InterruptSignal.install()
        let (selection, placement) = try configuration.placeHotPath(for: listen, log: log, announceBackend: false)
        let listener: any TransportListener
        do {
            listener = try selection.backend.listen(on: listen, options: configuration.transport.options)
        } catch {
            throw RdmigCommandError("cannot listen on \(listen): \(error)")
        }
        defer { listener.close() }
        FileHandle.standardError.write(Data("rdmig proxy dest: listening on \(listener.localEndpoint) (\(selection.kind): \(selection.reason)), relaying to unix:\(connectUnix)\n".utf8))
        let options = ProxyCommandSupport.options(key: key, configuration: configuration, cpus: placement.cpus,
                                                  keepServing: keepServing, service: service, log: log)
        let report: ProxyReport
        do {
            report = try ProxyDestination(connectPath: connectUnix, options: options).run(listener: listener)
        } catch {
            throw RdmigCommandError("proxy dest on \(listener.localEndpoint): \(error)")
        }
        try ProxyCommandSupport.finish(report, keepServing: keepServing, service: service)
    }
}

enum ProxyCommandSupport {
    static func options(key: PreSharedKey, configuration: ServiceConfiguration, cpus: [Int32], keepServing: Bool,
                        service: ServiceOptions, log: Logger) -> ProxyOptions {
        var options = ProxyOptions(key: key, transportOptions: configuration.transport.options)
        options.encryption = configuration.encryption
        options.peerTimeout = configuration.peerTimeout
        options.keepServing = keepServing
        options.relayCPUs = cpus
        options.logger = log
        options.stopRequested = { InterruptSignal.pending.map { ChildProcess.signalName($0) } }
        let json = service.json
        // One report per relayed connection as it ends, then the totals (see README).
        options.onConnection = { report in
            if json {
                // Unbuffered: a reader sees each connection's report when it ends.
                if let text = try? ProxyJSON.encode(report) { FileHandle.standardOutput.write(Data((text + "\n").utf8)) }
            } else {
                FileHandle.standardError.write(Data("rdmig proxy \(report.role): \(ProxyJSON.text(report))\n".utf8))
            }
        }
        return options
    }

    /// Prints the totals; exits non-zero when a connection failed or was refused (unless a
    /// keep-serving proxy was stopped by a signal, its normal end), or 128+signal for a
    /// single-shot proxy stopped before it relayed anything.
    static func finish(_ report: ProxyReport, keepServing: Bool, service: ServiceOptions) throws {
        if service.json {
            FileHandle.standardOutput.write(Data((try ProxyJSON.encode(report) + "\n").utf8))
        } else {
            FileHandle.standardError.write(Data("rdmig proxy \(report.role): \(report.text)\n".utf8))
        }
        if let signal = InterruptSignal.pending, !keepServing, report.connections == 0 { throw ExitCode(128 + signal) }
        if report.failed + report.refused > 0 && !(keepServing && InterruptSignal.pending != nil) { throw ExitCode(1) }
    }
}
