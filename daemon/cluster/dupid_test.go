package cluster

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudknowledge/ck/internal/simnet"
)

// TestDuplicateNodeID: a node started on a copy of another's data dir
// (same node id, newer boot epoch) makes the older one stop with
// ErrDuplicateID; the older one's HELLOs, to the newer, are replays and
// are ignored.
func TestDuplicateNodeID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := simnet.New(1, simnet.Options{MinDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond})
		dir := simDir(t)
		orig := newSimNode(t, nw, dir, "orig", nil)
		peer := startSimNode(t, nw, dir, "peer", nil)
		orig.open(t)
		orig.st.Close()
		orig.st = nil
		copyFile(t, orig.path, filepath.Join(dir, "copy.db"))
		copyNode := newSimNode(t, nw, dir, "copy", nil)
		t.Cleanup(func() {
			for _, sn := range []*simNode{orig, copyNode, peer} {
				sn.stop(t)
			}
		})
		orig.start(t)
		time.Sleep(2 * simHeartbeat)
		copyNode.start(t) // a later boot: a newer epoch
		select {
		case <-orig.done:
		case <-time.After(5 * simHeartbeat):
			t.Fatal("the node whose id is in use did not stop")
		}
		if !errors.Is(orig.runErr, ErrDuplicateID) || !strings.Contains(orig.runErr.Error(), "duplicate node id") {
			t.Errorf("Run returned %v, want ErrDuplicateID", orig.runErr)
		}
		orig.cancel = nil
		time.Sleep(3 * simHeartbeat)
		select {
		case <-copyNode.done:
			t.Errorf("the newer node stopped too: %v", copyNode.runErr)
		default:
		}
		if !orig.node.Stats().DuplicateID {
			t.Error("the duplicate is not in the stats")
		}
	})
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
