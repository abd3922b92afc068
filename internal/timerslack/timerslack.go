// Package timerslack widens the kernel's timer slack of the process, so
// that the Go runtime's monitor thread (sysmon) wakes less often.
//
// sysmon sleeps 20 µs between rounds while the process is busy (and again
// after every wake from idle), so on a host where a thread wake-up is
// expensive (a virtual machine: each is a VM exit) it is one of the largest
// costs of a daemon that goes idle and busy many times a millisecond, as a
// node of a replicated write does: under 16 clients a third of a node's
// thread switches were sysmon's sleeps. A sleep ends within the thread's
// timer slack (50 µs by default); with 1 ms, sysmon's rounds are ~15×
// fewer (docs/ARCHITECTURE.md, "Timer slack"). Nothing in ckd needs a
// timer finer than that: Go's own timers wait in epoll with millisecond
// resolution already.
//
// sysmon is started before any user code runs, and a thread may change
// another's slack only with CAP_SYS_NICE, so the slack is set on the
// process's thread and the process executes itself again: every thread of
// the new image (sysmon included) inherits it. It keeps its pid, open
// descriptors and environment.
package timerslack

// Want is the timer slack ckd runs with.
const Want = 1_000_000 // ns

// reexecEnv marks the image Ensure executed, so that it never does so
// twice whatever the kernel reports.
const reexecEnv = "CKD_TIMERSLACK_REEXEC"
