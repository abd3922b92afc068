package poll

import (
	"errors"
	"testing"
	"time"
)

func TestFor(t *testing.T) {
	n := 0
	if err := For(time.Minute, time.Millisecond, func() error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || n != 3 {
		t.Fatalf("For = %v after %d calls; want nil after 3", err, n)
	}

	errLate := errors.New("late")
	start := time.Now()
	err := For(30*time.Millisecond, time.Millisecond, func() error { return errLate })
	if !errors.Is(err, errLate) || time.Since(start) < 30*time.Millisecond {
		t.Fatalf("For = %v after %v; want late, after the bound", err, time.Since(start))
	}

	errStop := errors.New("stop")
	n = 0
	err = For(time.Minute, time.Millisecond, func() error { n++; return errStop }, errStop)
	if !errors.Is(err, errStop) || n != 1 {
		t.Fatalf("For = %v after %d calls; want stop at once", err, n)
	}
}
