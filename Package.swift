// swift-tools-version:6.1
import PackageDescription

// One binary, `clawjail`. The release build is a fully static executable
// (scripts/build): a dynamically linked Swift binary spends ~1 ms in ld.so
// before main, which is a third of the budget of `clawjail exec`.
let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "clawjail",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "clawjail", targets: ["clawjail"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // System libraries (Debian -dev packages; scripts/setup installs them).
        .systemLibrary(name: "CSeccomp", pkgConfig: "libseccomp", providers: [.apt(["libseccomp-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CNetlink", pkgConfig: "libnl-route-3.0", providers: [.apt(["libnl-3-dev", "libnl-route-3-dev"])]),

        // C that runs between clone3 and execve (async-signal-safe only), and the jail's init.
        .target(name: "CClawjailChild"),
        // Parent-side C: the plan's builders, syscall shims glibc lacks, the proxy's tunnels.
        .target(name: "CClawjailShims", dependencies: ["CClawjailChild"]),

        // The parsers of untrusted input (TOML, IP literals, allowlist entries and host
        // names, JSON, DNS, TLS ClientHello, request targets): stdlib only, no Foundation,
        // no NIO, no syscalls, so scripts/fuzz builds them with swiftc alone (fuzz/).
        .target(name: "ClawjailParsers", swiftSettings: strict),
        // spec: pure Swift config, validation, JailSpec. No syscalls. Re-exports ClawjailParsers.
        .target(name: "ClawjailCore", dependencies: ["ClawjailParsers"], swiftSettings: strict),
        // plan: JailSpec + HostFacts -> LaunchPlan, every step the executor takes. Pure.
        // The jail's /etc templates live in skeleton/, compiled in, so the static binary
        // needs no data files next to it.
        .target(name: "ClawjailPlan", dependencies: ["ClawjailCore"], resources: [.embedInCode("skeleton")],
                swiftSettings: strict),
        // Typed syscall wrappers. Every syscall in Swift goes through here.
        .target(name: "ClawjailSystem", dependencies: ["ClawjailCore", "CClawjailChild", "CClawjailShims"], swiftSettings: strict),
        .target(name: "ClawjailCgroup", dependencies: ["ClawjailCore", "ClawjailPlan", "ClawjailSystem"], swiftSettings: strict),
        .target(name: "ClawjailSeccomp", dependencies: ["ClawjailCore", "ClawjailSystem", "CSeccomp"], swiftSettings: strict),
        .target(name: "ClawjailNetwork", dependencies: ["ClawjailCore", "ClawjailSystem", "CNetlink"], swiftSettings: strict),
        .target(name: "ClawjailStore", dependencies: ["ClawjailCore", "ClawjailSystem", "CSQLite"], swiftSettings: strict),
        .target(name: "ClawjailEgress", dependencies: ["ClawjailCore", "ClawjailSystem",
                                                       .product(name: "NIOCore", package: "swift-nio"),
                                                       .product(name: "NIOPosix", package: "swift-nio"),
                                                       .product(name: "NIOHTTP1", package: "swift-nio")], swiftSettings: strict),
        .target(name: "ClawjailRuntime", dependencies: ["ClawjailCore", "ClawjailPlan", "ClawjailSystem", "ClawjailCgroup", "ClawjailSeccomp",
                                                        "ClawjailNetwork", "ClawjailStore", "ClawjailEgress", "CClawjailChild", "CClawjailShims",
                                                        .product(name: "NIOCore", package: "swift-nio"),
                                                        .product(name: "NIOPosix", package: "swift-nio")],
                swiftSettings: strict),
        // The operator's commands (ps, stats, logs, stop, doctor, protect, audit), on top of
        // the runtime and the store.
        .target(name: "ClawjailOperator", dependencies: ["ClawjailRuntime", "ClawjailCore", "ClawjailPlan", "ClawjailSystem",
                                                         "ClawjailStore", "ClawjailCgroup", "ClawjailSeccomp", "ClawjailNetwork"],
                swiftSettings: strict),
        // Guest mode: the binary as a micro-VM's PID 1 (init, modules, the control port).
        .target(name: "ClawjailGuest", dependencies: ["ClawjailCore", "ClawjailNetwork", "ClawjailSystem"], swiftSettings: strict),
        .executableTarget(name: "clawjail", dependencies: ["ClawjailGuest", "ClawjailOperator", "ClawjailRuntime", "ClawjailCore", "ClawjailPlan", "ClawjailSystem",
                                                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          swiftSettings: strict),

        .testTarget(name: "ClawjailParsersTests", dependencies: ["ClawjailParsers"]),
        .testTarget(name: "ClawjailCoreTests", dependencies: ["ClawjailCore"]),
        .testTarget(name: "ClawjailPlanTests", dependencies: ["ClawjailPlan", "ClawjailCore"], exclude: ["Golden"]),
        .testTarget(name: "ClawjailStoreTests", dependencies: ["ClawjailStore", "ClawjailCore"]),
        .testTarget(name: "ClawjailEgressTests", dependencies: ["ClawjailEgress", "ClawjailCore",
                                                               .product(name: "NIOCore", package: "swift-nio"),
                                                               .product(name: "NIOPosix", package: "swift-nio"),
                                                               .product(name: "NIOHTTP1", package: "swift-nio"),
                                                               .product(name: "NIOEmbedded", package: "swift-nio")]),
        .testTarget(name: "ClawjailSystemTests", dependencies: ["ClawjailSystem", "ClawjailCore", "ClawjailStore"]),
        .testTarget(name: "ClawjailCgroupTests", dependencies: ["ClawjailCgroup"]),
        .testTarget(name: "ClawjailSeccompTests", dependencies: ["ClawjailSeccomp", "ClawjailCore"]),
        .testTarget(name: "ClawjailNetworkTests", dependencies: ["ClawjailNetwork", "ClawjailCore", "ClawjailSystem"]),
        .testTarget(name: "ClawjailRuntimeTests", dependencies: ["ClawjailRuntime", "ClawjailCore", "ClawjailPlan", "ClawjailSeccomp",
                                                                "CClawjailShims"]),
        .testTarget(name: "ClawjailOperatorTests", dependencies: ["ClawjailOperator", "ClawjailRuntime", "ClawjailEgress", "ClawjailStore"]),
        // Needs root and real namespaces: runs the built clawjail against the kernel.
        .testTarget(name: "ClawjailPrivilegedTests", dependencies: ["ClawjailGuest", "ClawjailOperator", "ClawjailRuntime", "ClawjailCore", "ClawjailPlan", "ClawjailCgroup",
                                                                    "ClawjailStore", "ClawjailSystem"]),
    ]
)
