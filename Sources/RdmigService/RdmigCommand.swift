import ArgumentParser

/// `rdmig`: the root command. Each subcommand is one job; see README.md.
public struct RdmigCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "rdmig",
        abstract: "RDMA-native live-migration transport for virtual machines.",
        version: rdmigVersion,
        subcommands: [SourceCommand.self, DestCommand.self, ProxyCommand.self, QEMULaunchCommand.self, ProbeCommand.self, BenchCommand.self, SelftestCommand.self, KeygenCommand.self,
                      QEMUWatchdogCommand.self])

    public init() {}
}

public let rdmigVersion = "0.1.0"
