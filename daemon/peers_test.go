package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/daemon/cluster"
	"github.com/cloudknowledge/ck/store"
)

func TestPeerFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, peersFileName)
	self, peer := store.NewNodeID(), store.NewNodeID()

	pf, ignored, err := openPeerFile(path, self)
	if err != nil || !ignored.IsZero() {
		t.Fatalf("a missing file: %v, ignored %v", err, ignored)
	}
	if recs, _ := pf.Load(); len(recs) != 0 {
		t.Errorf("a missing file loads %v", recs)
	}
	at := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)
	want := map[store.NodeID]cluster.PeerRecord{peer: {Name: "beta", LastInSync: at}}
	if err := pf.Save(want); err != nil {
		t.Fatal(err)
	}
	if err := pf.Save(want); err != nil { // replaces, leaving no temporary file
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the data dir holds %d files after two saves, want 1", len(entries))
	}

	pf, _, err = openPeerFile(path, self)
	if err != nil {
		t.Fatal(err)
	}
	recs, _ := pf.Load()
	if got := recs[peer]; got.Name != "beta" || !got.LastInSync.Equal(at) || !got.Trusted.IsZero() || len(recs) != 1 {
		t.Errorf("reloaded %+v, want %+v", recs, want)
	}
	if b, _ := os.ReadFile(path); strings.Contains(string(b), "trusted") {
		t.Errorf("a zero trust time is written: %s", b)
	}

	// The file of another node (a data dir whose store was replaced) is not
	// this node's history.
	other := store.NewNodeID()
	pf, ignored, err = openPeerFile(path, other)
	if err != nil || ignored != self {
		t.Errorf("another node's file: %v, ignored %v, want %v", err, ignored, self)
	}
	if recs, _ := pf.Load(); len(recs) != 0 {
		t.Errorf("another node's file loads %v", recs)
	}

	if err := os.WriteFile(path, []byte(`{"node": "`), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, _, err := openPeerFile(path, self); err == nil || !strings.Contains(err.Error(), "remove it") {
		t.Errorf("a damaged file: %v, want an error saying what to do", err)
	}
}

func TestMakeStaleDir(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2025, 3, 1, 12, 30, 45, 0, time.FixedZone("CET", 3600))
	a, err := makeStaleDir(dir, now)
	if err != nil || filepath.Base(a) != "stale-20250301T113045Z" {
		t.Fatalf("makeStaleDir = %q, %v", a, err)
	}
	b, err := makeStaleDir(dir, now)
	if err != nil || filepath.Base(b) != "stale-20250301T113045Z-2" {
		t.Errorf("a second in the same second = %q, %v", b, err)
	}
}
