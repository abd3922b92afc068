//go:build linux

package timerslack

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// The test binary, run as a child in helper mode (TestMain), calls
// Ensure: the child must come back executed again, with the slack asked
// for, the same arguments, and the marker gone from its environment.
func TestEnsureReexecutes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ask    uint64
		reexec bool
	}{
		{"wider", 2_000_000, true},
		{"already wide", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "TIMERSLACK_HELPER="+strconv.FormatUint(tc.ask, 10))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("helper: %v\n%s", err, out)
			}
			var slack uint64
			var runs int
			for _, line := range strings.Split(string(out), "\n") {
				if v, ok := strings.CutPrefix(line, "slack="); ok {
					slack, _ = strconv.ParseUint(v, 10, 64)
				}
				if strings.HasPrefix(line, "start") {
					runs++
				}
				if strings.HasPrefix(line, "marker=") && line != "marker=" {
					t.Errorf("the marker leaked into the environment: %s", line)
				}
			}
			if want := map[bool]int{true: 2, false: 1}[tc.reexec]; runs != want {
				t.Errorf("the helper started %d times, want %d\n%s", runs, want, out)
			}
			if slack < tc.ask {
				t.Errorf("slack %d after Ensure(%d)\n%s", slack, tc.ask, out)
			}
		})
	}
}

// TestMain is also the helper: run with TIMERSLACK_HELPER=NS, it calls
// Ensure(NS) and prints what it sees, once per start.
func TestMain(m *testing.M) {
	ask := os.Getenv("TIMERSLACK_HELPER")
	if ask == "" {
		os.Exit(m.Run())
	}
	os.Stdout.WriteString("start\n")
	n, _ := strconv.ParseUint(ask, 10, 64)
	if err := Ensure(n); err != nil {
		os.Stdout.WriteString("error=" + err.Error() + "\n")
		os.Exit(1)
	}
	cur, err := current()
	if err != nil {
		os.Stdout.WriteString("error=" + err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("slack=" + strconv.FormatUint(cur, 10) + "\nmarker=" + os.Getenv(reexecEnv) + "\n")
	os.Exit(0)
}
