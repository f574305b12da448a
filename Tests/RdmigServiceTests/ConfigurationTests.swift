import Foundation
import RdmigMigration
import RdmigSystem
import RdmigTransport
import Testing
@testable import RdmigService

@Suite struct ConfigurationFiles {
    static var shippedConfig: String {
        // Tests/RdmigServiceTests/ConfigurationTests.swift -> the package root.
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("conf/rdmig.toml").path
    }

    @Test func theShippedConfigDocumentsEveryKeyWithItsDefault() throws {
        let file = try ConfigurationFile(path: Self.shippedConfig)
        let loaded = try ServiceConfiguration.load(file: file)
        let defaults = ServiceConfiguration()
        #expect(loaded.transport.backend == nil)
        #expect(loaded.transport.options == defaults.transport.options)
        #expect(loaded.memory == defaults.memory)
        #expect(loaded.migration == defaults.migration)
        #expect(loaded.keyFile == nil)
        #expect(loaded.peerTimeout == defaults.peerTimeout)
        #expect(loaded.deviceSpecs.isEmpty)
        #expect(loaded.maximumGuestBytes == nil, "max-guest-size = \"auto\": what the host can pin")
        // Every [migration] setting the code knows is in the file (so none is undocumented).
        let text = try String(contentsOfFile: Self.shippedConfig, encoding: .utf8)
        for setting in MigrationConfiguration.settings {
            #expect(text.contains("\n\(setting.name) = "), "conf/rdmig.toml lacks [migration] \(setting.name)")
        }
    }

    /// queue-depth "auto": deep on tcp (long links need many 4 KiB writes in flight), perftest's
    /// 128 on verbs; a number in the file holds for both.
    @Test func queueDepthAutoDependsOnTheBackendAndANumberWins() throws {
        var automatic = try ServiceConfiguration.load(file: ConfigurationFile(text: "[transport]\nqueue-depth = \"auto\"\n", path: "a.toml"))
        var verbs = automatic
        automatic.transport.adapt(to: .tcp)
        verbs.transport.adapt(to: .verbs)
        #expect(automatic.transport.options.sendQueueDepth == 16384)
        #expect(verbs.transport.options.sendQueueDepth == 128)
        var fixed = try ServiceConfiguration.load(file: ConfigurationFile(text: "[transport]\nqueue-depth = 256\n", path: "f.toml"))
        fixed.transport.adapt(to: .tcp)
        #expect(fixed.transport.options.sendQueueDepth == 256)
    }

    @Test func valuesOverrideDefaults() throws {
        let file = try ConfigurationFile(text: """
            [transport]
            backend = "tcp"
            queue-depth = 256
            tos = 104
            tcp-buffer = "64MiB"
            [migration]
            downtime-limit = "20ms"
            hot-fraction = 0.3
            [service]
            vf = ["ib-sw:qps=10"]
            """, path: "test.toml")
        let loaded = try ServiceConfiguration.load(file: file)
        #expect(loaded.transport.backend == .tcp)
        #expect(loaded.transport.options.sendQueueDepth == 256)
        #expect(loaded.transport.options.trafficClass == 104)
        #expect(loaded.transport.options.socketBufferBytes == 64 << 20)
        #expect(loaded.migration.convergence.downtimeLimit == .milliseconds(20))
        #expect(loaded.migration.guest.hotFraction == 0.3)
        #expect(loaded.deviceSpecs == ["ib-sw:qps=10"])
    }

    @Test func badValuesNameFileSectionAndKey() {
        func error(_ text: String) -> String {
            do {
                _ = try ServiceConfiguration.load(file: try ConfigurationFile(text: text, path: "bad.toml"))
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        #expect(error("[transport]\nbackend = \"infiniband\"\n").contains("bad.toml: [transport] backend = \"infiniband\": use auto, verbs or tcp"))
        #expect(error("[transport]\nqueue-depth = \"deep\"\n").contains("[transport] queue-depth = "))
        #expect(error("[migration]\ndowntime-limit = \"soon\"\n").contains("bad.toml: [migration] downtime-limit"))
        #expect(error("[transport]\ntos = 256\n").contains("bad.toml: [transport] tos = 256 is out of range: use 0 … 255"))
        #expect(error("[transport]\ntos = -1\n").contains("[transport] tos = -1 is out of range"))
        #expect(error("[transport]\ntcp-buffer = \"4KiB\"\n").contains(
            "bad.toml: [transport] tcp-buffer = \"4KiB\": 4KiB is out of range: use 64KiB … 1GiB, or auto for sizes rdmig picks"))
        #expect(error("[transport]\ntcp-buffer = \"big\"\n").contains("bad.toml: [transport] tcp-buffer = \"big\": 'big' is not a size"))
        #expect(error("[memry]\nnode = \"0\"\n").contains("unknown section [memry]"))
        #expect(error("queue-depth = 5\n").contains("must be inside a section"))
        #expect(error("[transport\n").contains("bad.toml:1"))
        #expect(error("[service]\nmax-guest-size = \"lots\"\n").contains("bad.toml: [service] max-guest-size = \"lots\""))
        #expect(error("[service]\nmax-guest-size = \"0\"\n").contains("[service] max-guest-size = \"0\": 0 bytes; use \"auto\" or a size"))
    }
}

@Suite struct GuestSizeLimitSetting {
    @Test func maxGuestSizeTakesASizeOrAuto() throws {
        let sized = try ServiceConfiguration.load(file: try ConfigurationFile(text: "[service]\nmax-guest-size = \"48GiB\"\n", path: "test.toml"))
        #expect(sized.maximumGuestBytes == 48 << 30)
        let auto = try ServiceConfiguration.load(file: try ConfigurationFile(text: "[service]\nmax-guest-size = \"auto\"\n", path: "test.toml"))
        #expect(auto.maximumGuestBytes == nil)
    }
}

@Suite struct ServiceOptionFlags {
    @Test func tcpBufferIsAutoByDefaultAndTheFlagOverridesTheConfig() throws {
        let config = ConfigurationFiles.shippedConfig
        // The shipped default: no fixed size (auto).
        #expect(try ServiceOptions.parse(["--config", config]).load().transport.options.socketBufferBytes == nil)
        #expect(try ServiceOptions.parse(["--config", config, "--tcp-buffer", "128MiB"]).load()
            .transport.options.socketBufferBytes == 128 << 20)
        #expect(try ServiceOptions.parse(["--config", config, "--tcp-buffer", "auto"]).load()
            .transport.options.socketBufferBytes == nil)
        do {
            _ = try ServiceOptions.parse(["--config", config, "--tcp-buffer", "2GiB"])
            Issue.record("--tcp-buffer 2GiB was accepted")
        } catch {
            #expect(ServiceOptions.message(for: error).contains("out of range: use 64KiB … 1GiB"), "\(ServiceOptions.message(for: error))")
        }
    }

    @Test func tosOverridesTheConfigAndOutOfRangeValuesNameTheFlag() throws {
        let config = ConfigurationFiles.shippedConfig
        let options = try ServiceOptions.parse(["--config", config, "--tos", "104"])
        #expect(try options.load().transport.options.trafficClass == 104)
        #expect(try ServiceOptions.parse(["--config", config]).load().transport.options.trafficClass == nil)
        for bad in ["256", "-1"] {
            do {
                _ = try ServiceOptions.parse(["--config", config, "--tos=\(bad)"]).load()
                Issue.record("--tos \(bad) was accepted")
            } catch {
                #expect("\(error)".contains("--tos \(bad): use 0 … 255"), "\(error)")
            }
        }
    }
}
