// Package poll is the one loop the tests use to wait for what another
// goroutine, process or simulated node makes true: check, sleep, check
// again, until a bound. It is test support (under internal/, imported by
// _test.go files only).
package poll

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// For calls cond every every until it returns nil, returns an error
// wrapping one of stop, or within passes; it returns cond's last error
// (wrapped with the bound when time ran out).
func For(within, every time.Duration, cond func() error, stop ...error) error {
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		for _, s := range stop {
			if errors.Is(err, s) {
				return err
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s: %w", within, err)
		}
		time.Sleep(every)
	}
}

// Until is For that fails tb with cond's last error when within passes.
func Until(tb testing.TB, within, every time.Duration, cond func() error) {
	tb.Helper()
	if err := For(within, every, cond); err != nil {
		tb.Fatal(err)
	}
}
