import ClawjailGuest
import ClawjailRuntime
import ClawjailSystem

// As a micro-VM's /init, the binary is the guest's PID 1 and never returns.
if GuestMode.isGuest(arguments: CommandLine.arguments) {
    GuestMode.run()
}

// Before anything can start a thread: the signals the supervisor forwards to jails are
// read from a signalfd, which needs them blocked in every thread.
SupervisorSignals.blockInAllThreads()
Trace.mark("main")
// The agent's jail inside a VM agent's guest, started by the guest's init: internal,
// so not among the commands --help lists (it refuses to run outside a guest).
if CommandLine.arguments.count == 3 && CommandLine.arguments[1] == "guest-jail" {
    ProcessInfoLite.exit(exitStatus { try GuestJail.run(specPath: CommandLine.arguments[2]) })
}
// With CLAWJAIL_EXEC_PARSER set (to argument-parser) every line goes to ArgumentParser:
// the tests run each exec option through both parsers and compare the results.
if ProcessInfoLite.environment()["CLAWJAIL_EXEC_PARSER"] == nil, let status = FastExec.run(CommandLine.arguments) {
    ProcessInfoLite.exit(status)
}
Clawjail.main()
