package cluster

import (
	"runtime/debug"
	"testing"
)

// A bootstrap raises a lower soft memory limit to bootstrapHeap and puts
// it back after; a higher one, or one GOMEMLIMIT set, it leaves alone.
func TestRoomToBootstrap(t *testing.T) {
	orig := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(orig) })
	for _, tc := range []struct {
		name   string
		env    string
		limit  int64
		during int64
	}{
		{name: "low", limit: 96 << 20, during: bootstrapHeap},
		{name: "high", limit: 2 * bootstrapHeap, during: 2 * bootstrapHeap},
		{name: "GOMEMLIMIT", env: "96MiB", limit: 96 << 20, during: 96 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOMEMLIMIT", tc.env)
			debug.SetMemoryLimit(tc.limit)
			restore := roomToBootstrap()
			if got := debug.SetMemoryLimit(-1); got != tc.during {
				t.Errorf("during the bootstrap: limit %d, want %d", got, tc.during)
			}
			restore()
			if got := debug.SetMemoryLimit(-1); got != tc.limit {
				t.Errorf("after: limit %d, want %d", got, tc.limit)
			}
		})
	}
}
