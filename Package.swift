// swift-tools-version:6.1
// rdmig: an RDMA-native live-migration transport for virtual machines.
// Layers (ARCHITECTURE.md): C modules -> RdmigSystem -> RdmigMemory / RdmigTransport (+ RdmigTransportConformance)
// -> RdmigChannels / RdmigDeviceState -> RdmigMigration / RdmigQEMU -> RdmigQEMUMode / RdmigProxy -> RdmigService
// -> the `rdmig` executable.
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
]

let package = Package(
    name: "rdmig",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "rdmig", targets: ["rdmig"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // C libraries, imported as they are; each names the Debian package that provides it.
        .systemLibrary(
            name: "CRDMA", path: "Sources/CRDMA", pkgConfig: "librdmacm",
            providers: [.apt(["librdmacm-dev", "libibverbs-dev"])]),
        .systemLibrary(
            name: "CNUMA", path: "Sources/CNUMA", pkgConfig: "numa",
            providers: [.apt(["libnuma-dev"])]),
        .systemLibrary(
            name: "CHwloc", path: "Sources/CHwloc", pkgConfig: "hwloc",
            providers: [.apt(["libhwloc-dev"])]),
        .systemLibrary(
            name: "CXXHash", path: "Sources/CXXHash", pkgConfig: "libxxhash",
            providers: [.apt(["libxxhash-dev"])]),
        // Only what Swift cannot import (macros, variadic ioctls, cmsg arithmetic).
        .target(name: "CRdmigShims", path: "Sources/CRdmigShims"),
        // AES-256-GCM in place over the BoringSSL that swift-crypto builds (see its header).
        .target(
            name: "CRdmigAEAD", dependencies: [.product(name: "Crypto", package: "swift-crypto")],
            path: "Sources/CRdmigAEAD", cSettings: [.unsafeFlags(["-O2"])]),

        .target(
            name: "RdmigSystem", dependencies: ["CRdmigShims"],
            swiftSettings: swiftSettings),
        .target(
            name: "RdmigMemory", dependencies: ["RdmigSystem", "CNUMA", "CHwloc", "CRdmigShims"],
            swiftSettings: swiftSettings),
        .target(
            name: "RdmigTransport",
            dependencies: ["RdmigSystem", "CRDMA", "CRdmigShims", "CRdmigAEAD"],
            swiftSettings: swiftSettings),
        .target(
            name: "RdmigTransportConformance", dependencies: ["RdmigTransport", "RdmigSystem"],
            swiftSettings: swiftSettings),
        .target(
            name: "RdmigChannels",
            dependencies: ["RdmigTransport", "RdmigSystem", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings),
        .target(
            name: "RdmigDeviceState", dependencies: ["RdmigSystem", "CRdmigShims"],
            swiftSettings: swiftSettings),
        .target(
            name: "RdmigQEMU",
            dependencies: [
                "RdmigSystem", "CRdmigShims",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        .target(
            name: "RdmigQEMUMode",
            dependencies: [
                "RdmigQEMU", "RdmigMigration", "RdmigChannels", "RdmigDeviceState", "RdmigTransport", "RdmigSystem",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        // `rdmig proxy`: unix-socket connections relayed over authenticated transport connections.
        .target(
            name: "RdmigProxy",
            dependencies: [
                "RdmigMigration", "RdmigChannels", "RdmigTransport", "RdmigSystem",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        .target(
            name: "RdmigService",
            dependencies: [
                "RdmigProxy", "RdmigQEMUMode", "RdmigQEMU", "RdmigMigration", "RdmigDeviceState", "RdmigTransport", "RdmigTransportConformance",
                "RdmigMemory", "RdmigSystem",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ],
            swiftSettings: swiftSettings),
        .target(
            name: "RdmigMigration",
            dependencies: [
                "RdmigChannels", "RdmigTransport", "RdmigDeviceState", "RdmigMemory", "RdmigSystem", "CRdmigShims", "CXXHash",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "rdmig", dependencies: ["RdmigService", "CRdmigShims"],
            swiftSettings: swiftSettings),

        .testTarget(
            name: "RdmigSystemTests", dependencies: ["RdmigSystem"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "RdmigMemoryTests", dependencies: ["RdmigMemory", "RdmigSystem", "CNUMA"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "RdmigQEMUTests", dependencies: ["RdmigTestSupport", "RdmigQEMU", "RdmigSystem", "CRdmigShims"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "RdmigTransportTests",
            dependencies: ["RdmigTransport", "RdmigTransportConformance", "RdmigSystem"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "RdmigChannelsTests",
            dependencies: ["RdmigChannels", "RdmigTransport", "RdmigSystem"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "RdmigDeviceStateTests", dependencies: ["RdmigDeviceState", "RdmigSystem", "CRdmigShims"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "RdmigMigrationTests", dependencies: ["RdmigMigration", "RdmigMemory", "RdmigSystem"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "RdmigQEMUModeTests",
            dependencies: ["RdmigTestSupport", "rdmig", "RdmigQEMUMode", "RdmigQEMU", "RdmigChannels", "RdmigTransport", "RdmigSystem"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "RdmigServiceTests", dependencies: ["RdmigTestSupport", "rdmig", "RdmigService", "RdmigQEMU", "RdmigMigration", "RdmigChannels", "RdmigMemory", "RdmigTransport", "RdmigSystem"],
            swiftSettings: swiftSettings),
        // Boots the Soft-RoCE guest (Tests/softroce) and runs the `rdmig` binary there.
        .testTarget(
            name: "RdmigSoftRoCETests", dependencies: ["RdmigTransportConformance"],
            swiftSettings: swiftSettings),
        // Fuzz targets for every wire decoder (Tests/fuzz/README.md): the bodies, once, for
        // libFuzzer (`rdmig-fuzz`, built with libFuzzer by Tests/fuzz/run.sh) and for the short
        // run in `swift test` (RdmigFuzzTests). The normal build compiles them without libFuzzer.
        .target(
            name: "RdmigFuzzTargets",
            dependencies: [
                "RdmigChannels", "RdmigDeviceState", "RdmigTransport", "RdmigQEMU", "RdmigSystem",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Tests/fuzz/RdmigFuzzTargets",
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "rdmig-fuzz", dependencies: ["RdmigFuzzTargets"], path: "Tests/fuzz/rdmig-fuzz",
            swiftSettings: swiftSettings),
        .testTarget(
            name: "RdmigFuzzTests", dependencies: ["RdmigFuzzTargets"],
            swiftSettings: swiftSettings),
        // What the process- and QEMU-driving test targets share (a library: test targets
        // cannot import each other).
        .target(
            name: "RdmigTestSupport", dependencies: ["RdmigQEMU"], path: "Tests/RdmigTestSupport",
            swiftSettings: swiftSettings),
    ]
)
