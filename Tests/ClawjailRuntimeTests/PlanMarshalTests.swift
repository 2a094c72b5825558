import CClawjailShims
import ClawjailPlan
import Testing
@testable import ClawjailRuntime

/// The executor's reading of a LaunchPlan agrees with the C child's own constants.
@Suite("LaunchPlan marshalling")
struct PlanMarshalTests {
    @Test func theNamespacesAreTheCloneFlagsTheChildKnows() {
        #expect(Launcher.cloneFlags(LaunchPlan.Namespace.allCases) == cj_jail_clone_flags())
        #expect(Launcher.cloneFlags([.user, .net]) == 0x1000_0000 | 0x4000_0000)
    }

    @Test func everyForwardedSignalHasANumber() {
        let numbers = LaunchPlan.forwardedSignals.compactMap(Launcher.signalNumber)
        #expect(numbers.count == LaunchPlan.forwardedSignals.count)
        #expect(Set(numbers).count == numbers.count)
    }

    @Test func mountOptionsBecomeTheKernelsFlags() {
        let all: MountOptions = [.readOnly, .noSuid, .noDev, .noExec, .recursive]
        #expect(MountExecutor.attributes(all).rawValue == 0xf)
        #expect(MountExecutor.msFlags([.noSuid, .noDev]) == 6)
        #expect(MountExecutor.msFlags([]) == 0)
    }
}
