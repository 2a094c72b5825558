#if canImport(Glibc)
import Glibc
#endif
import ClawjailRuntime

// Before anything can start a thread: the signals the supervisor forwards to jails are
// read from a signalfd, which needs them blocked in every thread.
SupervisorSignals.blockInAllThreads()
Trace.mark("main")
if let status = FastExec.run(CommandLine.arguments) { exit(status) }
Clawjail.main()
