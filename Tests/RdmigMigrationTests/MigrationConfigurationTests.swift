import Testing
import RdmigSystem
@testable import RdmigMigration

@Suite struct MigrationConfigurationTests {
    @Test func defaultsAreValidAndMatchTheSettingsTable() throws {
        let configuration = MigrationConfiguration()
        try configuration.validate()
        #expect(configuration.convergence.downtimeLimit == .milliseconds(50))
        #expect(configuration.convergence.throttleInitial == 20)
        #expect(configuration.convergence.throttleIncrement == 10)
        #expect(configuration.convergence.throttleMax == 99)
        for setting in MigrationConfiguration.settings {
            #expect(configuration.value(of: setting.name) != nil, "\(setting.name) has no value")
            var parsed = MigrationConfiguration()
            try parsed.set(setting.name, to: setting.defaultValue)
            #expect(parsed == configuration, "the documented default of \(setting.name) is not the default")
        }
    }

    @Test func theIssuesSourceFlagsParse() throws {
        let configuration = try MigrationConfiguration(settings: [
            ("guest-size", "1GiB"), ("dirty-rate", "256MiB/s"), ("working-set", "256MiB"), ("pattern", "hot-cold"),
            ("downtime-limit", "50ms"), ("max-iterations", "20"), ("on-no-convergence", "force"),
            ("memory-backing", "file:/dev/shm/vm0"), ("dirty-log", "userfaultfd"), ("seed", "0xdead_beef"),
        ])
        #expect(configuration.guest.guestSize == .gibibytes(1))
        #expect(configuration.guest.dirtyRate.bytesPerSecond == 256 << 20)
        #expect(configuration.guest.workingSet == .mebibytes(256))
        #expect(configuration.guest.pattern == .hotCold)
        #expect(configuration.convergence.maxIterations == 20)
        #expect(configuration.convergence.onNoConvergence == .force)
        #expect(configuration.guest.memoryBacking == .file(path: "/dev/shm/vm0", create: true))
        #expect(configuration.dirtyLog == .userfaultfd)
        #expect(configuration.guest.seed == 0xDEAD_BEEF)
        #expect(configuration.value(of: "pattern") == "hot-cold")
        #expect(configuration.value(of: "downtime-limit") == "50ms")
    }

    @Test func badValuesNameTheSettingAndWhatWouldWork() {
        func message(_ name: String, _ value: String) -> String {
            var configuration = MigrationConfiguration()
            do {
                try configuration.set(name, to: value)
                try configuration.validate()
                return ""
            } catch {
                return error.description
            }
        }
        #expect(message("guest-size", "lots").contains("guest-size = 'lots' is not valid"))
        #expect(message("pattern", "random").contains("uniform, hot-cold, sequential"))
        #expect(message("on-no-convergence", "panic").contains("throttle, force, fail"))
        #expect(message("downtime-limit", "fast").contains("50ms"))
        #expect(message("downtime-limit", "0ms").contains("greater than 0"))
        #expect(message("max-iterations", "0").contains("at least 1"))
        #expect(message("throttle-max", "100").contains("1 to 99"))
        #expect(message("working-set", "2GiB").contains("working-set 2GiB is larger than guest-size 1GiB"))
        #expect(message("page-size", "1000").contains("power of two"))
        #expect(message("writers", "0").contains("1 to 64"))
        #expect(message("memory-backing", "disk").contains("anonymous, memfd"))
        #expect(message("colour", "blue").contains("unknown migration setting 'colour'"))
        #expect(message("colour", "blue").contains("downtime-limit"))
    }

    @Test func throttleInitialMustNotExceedTheMaximum() throws {
        var configuration = MigrationConfiguration()
        try configuration.set("throttle-max", to: "50")
        try configuration.set("throttle-initial", to: "60")
        #expect(throws: MigrationConfigurationError.self) { try configuration.validate() }
    }
}
