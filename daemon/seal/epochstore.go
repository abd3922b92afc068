package seal

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cloudknowledge/ck/internal/atomicfile"
	"github.com/cloudknowledge/ck/store"
)

// maxMarks bounds an EpochFile: past it, saving a new sender forgets the
// one with the oldest boot epoch — most likely a node long gone. (A
// forgotten sender's frames of its current epoch could be replayed after
// this node restarts; a cluster has far fewer than maxMarks nodes.) A
// variable for tests.
var maxMarks = 4096

const epochFileHeader = "# ckd replay marks: sender epoch counter (written by ckd; do not edit)\n"

// EpochFile is an EpochStore in a small text file, one sender a line,
// rewritten whole and atomically (temporary file, fsync, rename, fsync of
// the directory) on every SaveAll, however many marks it carries. Safe for
// concurrent use.
type EpochFile struct {
	path string
	mu   sync.Mutex
	m    map[store.NodeID]Mark
}

var _ EpochStore = (*EpochFile)(nil)

// OpenEpochFile loads path, which need not exist yet (its directory must).
// Errors name the file and line.
func OpenEpochFile(path string) (*EpochFile, error) {
	f := &EpochFile{path: path, m: map[store.NodeID]Mark{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return nil, fmt.Errorf("replay marks: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		id, m, err := parseMark(s)
		if err != nil {
			return nil, fmt.Errorf("replay marks %s: line %d: %w", path, line, err)
		}
		f.m[id] = m
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("replay marks %s: %w", path, err)
	}
	return f, nil
}

func parseMark(s string) (store.NodeID, Mark, error) {
	fields := strings.Fields(s)
	if len(fields) != 3 {
		return store.NodeID{}, Mark{}, fmt.Errorf("want 3 fields (sender epoch counter), have %d", len(fields))
	}
	id, err := store.ParseNodeID(fields[0])
	if err != nil {
		return store.NodeID{}, Mark{}, err
	}
	epoch, err1 := strconv.ParseUint(fields[1], 10, 64)
	counter, err2 := strconv.ParseUint(fields[2], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return store.NodeID{}, Mark{}, err
	}
	return id, Mark{Epoch: epoch, Counter: counter}, nil
}

// Load returns sender's saved mark.
func (f *EpochFile) Load(sender store.NodeID) Mark {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[sender]
}

// Len is the number of senders with a mark.
func (f *EpochFile) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.m)
}

// Save records sender's mark and rewrites the file (SaveAll of one).
func (f *EpochFile) Save(sender store.NodeID, m Mark) error {
	return f.SaveAll(map[store.NodeID]Mark{sender: m})
}

// SaveAll records every mark in marks and rewrites the file once. On
// error the file is unchanged and so is what Load returns.
func (f *EpochFile) SaveAll(marks map[store.NodeID]Mark) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	next := maps.Clone(f.m)
	for id, m := range marks {
		if _, had := next[id]; !had && len(next) >= maxMarks {
			if old, ok := oldest(next, marks); ok {
				delete(next, old)
			}
		}
		next[id] = m
	}
	if err := write(f.path, next); err != nil {
		return err
	}
	f.m = next
	return nil
}

// oldest is the sender in m, but not in keep, with the oldest boot epoch.
func oldest(m, keep map[store.NodeID]Mark) (store.NodeID, bool) {
	var id store.NodeID
	var epoch uint64
	found := false
	for k, v := range m {
		if _, kept := keep[k]; !kept && (!found || v.Epoch < epoch) {
			id, epoch, found = k, v.Epoch, true
		}
	}
	return id, found
}

func write(path string, m map[store.NodeID]Mark) error {
	ids := make([]store.NodeID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, store.NodeID.Compare)
	buf := bytes.NewBufferString(epochFileHeader)
	for _, id := range ids {
		fmt.Fprintf(buf, "%s %d %d\n", id, m[id].Epoch, m[id].Counter)
	}
	if err := atomicfile.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("replay marks: %w", err)
	}
	return nil
}

// MemoryEpochs is an EpochStore that forgets on restart: for tests, and
// for tools that read frames without keeping state.
type MemoryEpochs struct {
	mu sync.Mutex
	m  map[store.NodeID]Mark
}

var _ EpochStore = (*MemoryEpochs)(nil)

func (e *MemoryEpochs) Load(sender store.NodeID) Mark {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.m[sender]
}

func (e *MemoryEpochs) SaveAll(marks map[store.NodeID]Mark) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m == nil {
		e.m = map[store.NodeID]Mark{}
	}
	maps.Copy(e.m, marks)
	return nil
}
