package seal_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudknowledge/ck/daemon/seal"
	"github.com/cloudknowledge/ck/store"
)

func TestEpochFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "marks")
	f, err := seal.OpenEpochFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := f.Load(nodeA); m != (seal.Mark{}) {
		t.Errorf("a new file knows %+v", m)
	}
	marks := map[store.NodeID]seal.Mark{nodeA: {epoch1, 17}, nodeB: {epoch1 + 1, 1 << 63}}
	for id, m := range marks {
		if err := f.Save(id, m); err != nil {
			t.Fatal(err)
		}
	}
	f.Save(nodeA, seal.Mark{epoch1, 18})
	marks[nodeA] = seal.Mark{epoch1, 18}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, %v", fi.Mode(), err)
	}
	g, err := seal.OpenEpochFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for id, m := range marks {
		if got := g.Load(id); got != m {
			t.Errorf("%s: reopened %+v, want %+v", id, got, m)
		}
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func TestEpochFileErrors(t *testing.T) {
	for name, content := range map[string]string{
		"two fields": "# header\n" + nodeA.String() + " 5\n",
		"bad id":     "zz 5 6\n",
		"bad epoch":  nodeA.String() + " -5 6\n",
	} {
		path := filepath.Join(t.TempDir(), "marks")
		os.WriteFile(path, []byte(content), 0o600)
		_, err := seal.OpenEpochFile(path)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "line ") {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A failed save changes nothing.
	dir := t.TempDir()
	f, _ := seal.OpenEpochFile(filepath.Join(dir, "sub", "marks"))
	if err := f.Save(nodeA, seal.Mark{1, 2}); err == nil {
		t.Fatal("saved into a missing directory")
	}
	if m := f.Load(nodeA); m != (seal.Mark{}) {
		t.Errorf("a failed save is remembered: %+v", m)
	}
}

// TestEpochFileBounded: past its bound the file forgets the sender with
// the oldest epoch.
func TestEpochFileBounded(t *testing.T) {
	seal.SetMaxMarks(t, 3)
	f, _ := seal.OpenEpochFile(filepath.Join(t.TempDir(), "marks"))
	f.Save(nodeA, seal.Mark{epoch1 + 5, 1})
	f.Save(nodeB, seal.Mark{epoch1, 1}) // the oldest boot
	f.Save(nodeC, seal.Mark{epoch1 + 9, 1})
	d := store.NodeID{0xd}
	f.Save(d, seal.Mark{epoch1 + 1, 1})
	if f.Len() != 3 || f.Load(nodeB) != (seal.Mark{}) || f.Load(d) == (seal.Mark{}) || f.Load(nodeA) == (seal.Mark{}) {
		t.Errorf("after overflow: len %d, B %+v, D %+v", f.Len(), f.Load(nodeB), f.Load(d))
	}
}

// TestEpochFileSaveAll: one SaveAll records many marks in one rewrite, all
// or none, and its own marks are never what the bound forgets.
func TestEpochFileSaveAll(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sub")
	os.Mkdir(dir, 0o700)
	path := filepath.Join(dir, "marks")
	f, _ := seal.OpenEpochFile(path)
	old := seal.Mark{epoch1 - 5, 9}
	f.Save(nodeC, seal.Mark{epoch1 - 5, 5})
	batch := map[store.NodeID]seal.Mark{nodeC: old}
	for i := range 100 {
		batch[store.NodeID{0x5e, byte(i)}] = seal.Mark{epoch1 + uint64(i), uint64(i) * 1000}
	}
	if err := f.SaveAll(batch); err != nil {
		t.Fatal(err)
	}
	g, err := seal.OpenEpochFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if g.Len() != 101 {
		t.Errorf("reopened with %d marks, want 101", g.Len())
	}
	for id, m := range batch {
		if got := g.Load(id); got != m {
			t.Errorf("%s: reopened %+v, want %+v", id, got, m)
		}
	}

	// All or none: a failed write leaves every mark as it was.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	err = f.SaveAll(map[store.NodeID]seal.Mark{nodeA: {epoch1, 1}, nodeC: {epoch1, 99}})
	if err == nil {
		t.Fatal("saved into a missing directory")
	}
	if f.Load(nodeA) != (seal.Mark{}) || f.Load(nodeC) != old || f.Len() != 101 {
		t.Errorf("a failed SaveAll changed marks: A %+v, C %+v, len %d", f.Load(nodeA), f.Load(nodeC), f.Len())
	}
	os.Mkdir(dir, 0o700)

	// Past the bound, the oldest epochs not in the batch are forgotten:
	// C, then the batch's first.
	seal.SetMaxMarks(t, 101)
	if err := f.SaveAll(map[store.NodeID]seal.Mark{nodeA: {epoch1 - 9, 1}, nodeB: {epoch1 + 500, 1}}); err != nil {
		t.Fatal(err)
	}
	first := store.NodeID{0x5e, 0}
	if f.Len() != 101 || f.Load(nodeA) == (seal.Mark{}) || f.Load(nodeB) == (seal.Mark{}) || f.Load(nodeC) != (seal.Mark{}) || f.Load(first) != (seal.Mark{}) {
		t.Errorf("after overflow: len %d, A %+v, B %+v, C %+v, first %+v", f.Len(), f.Load(nodeA), f.Load(nodeB), f.Load(nodeC), f.Load(first))
	}
}
