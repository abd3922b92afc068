package store

import "testing"

// Only a batch of received records skips the wait for company: one with
// a local write waits as before (docs/ARCHITECTURE.md, "Waiting for
// company").
func TestReceivedBatch(t *testing.T) {
	for _, tc := range []struct {
		name  string
		kinds []reqKind
		want  bool
	}{
		{"one received", []reqKind{reqApply}, true},
		{"received only", []reqKind{reqApply, reqApply, reqApply}, true},
		{"a set among them", []reqKind{reqApply, reqSet, reqApply}, false},
		{"a delete", []reqKind{reqDelete}, false},
		{"a reservation after a received one", []reqKind{reqApply, reqReserve}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			batch := make([]*request, len(tc.kinds))
			for i, k := range tc.kinds {
				batch[i] = &request{kind: k}
			}
			if got := received(batch); got != tc.want {
				t.Errorf("received(%v) = %v, want %v", tc.kinds, got, tc.want)
			}
		})
	}
}
