import ClawjailRuntime

// Before anything can start a thread: the signals the supervisor forwards to jails are
// read from a signalfd, which needs them blocked in every thread.
SupervisorSignals.blockInAllThreads()
Clawjail.main()
