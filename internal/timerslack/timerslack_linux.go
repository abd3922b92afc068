package timerslack

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Ensure makes sure the process runs with a timer slack of at least ns:
// if it has less, it sets it and executes the process's binary again with
// the same arguments and environment, and does not return. It returns
// when the slack is already wide enough, in the image it executed, and
// when anything fails (the process then runs on with what it has), with
// the reason, if any, in err.
func Ensure(ns uint64) error {
	if os.Getenv(reexecEnv) != "" {
		os.Unsetenv(reexecEnv) // not passed on to hooks' or tests' children
		return nil
	}
	cur, err := current()
	if err != nil {
		return fmt.Errorf("timer slack: %w", err)
	}
	if cur >= ns {
		return nil
	}
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(ns), 0, 0, 0); err != nil {
		return fmt.Errorf("set timer slack: %w", err)
	}
	env := append(os.Environ(), reexecEnv+"=1")
	if err := syscall.Exec("/proc/self/exe", os.Args, env); err != nil {
		return fmt.Errorf("execute again with a timer slack of %d ns: %w", ns, err)
	}
	return nil // not reached: Exec returns only on failure
}

// current is the calling thread's timer slack, in ns.
func current() (uint64, error) {
	cur, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	return uint64(cur), err
}
