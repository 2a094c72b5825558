import Foundation
import Testing
@testable import ClawjailSeccomp

@Suite("Seccomp compiler")
struct SeccompCompilerTests {
    static let retUserNotif: UInt32 = 0x7FC0_0000
    static let retKillProcess: UInt32 = 0x8000_0000

    /// The k of every `ret #k` instruction.
    func returns(_ filter: CompiledFilter) -> [UInt32] {
        stride(from: 0, to: filter.bpf.count, by: 8).compactMap { i in
            let code = UInt16(filter.bpf[i]) | UInt16(filter.bpf[i + 1]) << 8
            guard code == 0x06 else { return nil }
            return UInt32(filter.bpf[i + 4]) | UInt32(filter.bpf[i + 5]) << 8
                | UInt32(filter.bpf[i + 6]) << 16 | UInt32(filter.bpf[i + 7]) << 24
        }
    }

    @Test(arguments: ["agent", "tool", "openclaw", "nanoclaw", "vmm"])
    func shippedProfilesCompile(name: String) throws {
        let profile = try SeccompFixtures.load(name)
        let filter = try SeccompCompiler.compile(profile)
        #expect(filter.bpf.count == filter.instructionCount * 8)
        #expect(filter.instructionCount > 50 && filter.instructionCount < 600)
        #expect(!filter.needsNotify)
        #expect(filter.profileHash == profile.contentHash)
        let rets = returns(filter)
        #expect(rets.contains(0x0005_0001))          // ERRNO(EPERM), the default
        #expect(rets.contains(0x0005_0026))          // ERRNO(ENOSYS) for clone3
        #expect(rets.contains(Self.retKillProcess))  // bad arch
        #expect(!rets.contains(0x0005_0FFE))         // the sentinel is gone
        #expect(!rets.contains(Self.retUserNotif))
    }

    @Test func compilingIsDeterministic() throws {
        let profile = try SeccompFixtures.load("agent")
        #expect(try SeccompCompiler.compile(profile) == (try SeccompCompiler.compile(profile)))
    }

    @Test(arguments: [ViolationMode.log, .kill])
    func notifyModesUseUserNotif(mode: ViolationMode) throws {
        let profile = try SeccompFixtures.load("agent").withViolationMode(mode)
        let filter = try SeccompCompiler.compile(profile)
        #expect(filter.needsNotify)
        let rets = returns(filter)
        #expect(rets.contains(Self.retUserNotif))
        #expect(rets.contains(0x0005_0026))           // clone3 stays ENOSYS, never a violation
        #expect(!rets.contains(0x0005_0001))          // no silent EPERM left
        #expect(rets.contains(Self.retKillProcess))   // bad arch still kills
    }

    @Test func patchReturnsOnlyTouchesRetK() {
        // ld [0]; ret #sentinel; ret #other; jeq #sentinel
        var bpf: [UInt8] = [0x20, 0, 0, 0, 0, 0, 0, 0,
                            0x06, 0, 0, 0, 0xFF, 0x0F, 0x05, 0x00,
                            0x06, 0, 0, 0, 0x01, 0x00, 0x05, 0x00,
                            0x15, 0, 1, 0, 0xFF, 0x0F, 0x05, 0x00]
        let n = SeccompCompiler.patchReturns(&bpf, from: 0x0005_0FFF, to: 0x7FC0_0000)
        #expect(n == 1)
        #expect(Array(bpf[12..<16]) == [0x00, 0x00, 0xC0, 0x7F])
        #expect(Array(bpf[28..<32]) == [0xFF, 0x0F, 0x05, 0x00])
    }

}
