package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cloudknowledge/ck/store/internal/wal"
	"github.com/hashicorp/go-hclog"
)

// A full disk (docs/ARCHITECTURE.md, "A full disk"). The log's ring is
// allocated when it is created (wal.Log.Preallocate), so commits never
// need space; a flush into the bbolt file does, even one of deletes
// (copy-on-write pages). For that flush a reserve file as large as the
// ring, allocated next to the data file, is given back to the file system
// (all but an eighth, see release) the first time a flush fails with
// ENOSPC: what waits in the ring can then be flushed, as long as bbolt
// needs no more than that (flushFreeing explains why it may need more).
// The eighth left is only for writing records that free space
// (releaseKept), and only deletes and overwrites that are not larger may
// fill the ring's last eighth (ringSpare). From then on the store is
// limited:
//
//   - while flushes fail for lack of space ("full"), writes that grow the
//     store are refused with ErrDiskFull and the flusher retries with a
//     backoff; deletes and overwrites that are not larger are accepted
//     into the log, and reads are served from it. Their records are
//     written into the file ahead of the writes logged before them
//     (flushFreeing), so that writes that cannot be flushed do not keep
//     them from freeing space;
//   - once a flush succeeds without the reserve ("low"), a batch that
//     grows the store is written into the bbolt file directly, after
//     everything pending (commitDirect), and fails alone if the file has
//     no room for it: nothing that cannot be flushed waits in the log,
//     so deletes and smaller overwrites keep flushing, and the pages they
//     free take the next writes.
//
// The reserve (and a ring the disk had no room for) is allocated again
// once the file system has twice the reserve free; then the store is no
// longer limited.

// reservePath is the reserve file of the store at path.
func reservePath(path string) string { return path + "-reserve" }

// Space states, as DiskState reports them.
const (
	DiskOK   = "ok"   // the reserve is held: any write may be committed
	DiskLow  = "low"  // no reserve: writes that grow the store are admitted within the free space
	DiskFull = "full" // flushes fail for lack of space: writes that grow the store are refused
)

// space guards the store against a full disk.
type space struct {
	path string // the reserve file
	size int64  // the reserve's size
	log  hclog.Logger

	limited atomic.Bool // not DiskOK: commits check what they add

	mu    sync.Mutex
	held  bool // the whole reserve file is allocated
	kept  bool // an eighth of it is still allocated, kept for deletes
	stuck bool // the last flush failed for lack of space
}

func newSpace(path string, size int64, log hclog.Logger) *space {
	return &space{path: reservePath(path), size: size, log: log}
}

// state returns DiskOK, DiskLow or DiskFull.
func (sp *space) state() string {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.stateLocked()
}

func (sp *space) stateLocked() string {
	switch {
	case sp.stuck:
		return DiskFull
	case !sp.held:
		return DiskLow
	}
	return DiskOK
}

func (sp *space) setLocked() { sp.limited.Store(sp.stuck || !sp.held) }

// hold allocates the reserve file (at Open, and when space returns). It
// reports whether the reserve is held.
func (sp *space) hold() bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if !sp.held {
		had, err := allocateFile(sp.path, sp.size)
		if err != nil {
			sp.log.Warn("no space reserve: a full disk will limit writes", "file", sp.path, "size", sp.size, "error", err)
		}
		sp.held, sp.kept = err == nil, err == nil || had > 0
	}
	sp.setLocked()
	return sp.held
}

// release gives the reserve back to the file system, all but an eighth,
// for a flush that failed for lack of space; it reports whether there was
// any to give. The eighth is kept for releaseKept: a flush of the writes
// admitted while the reserve was held can need far more than the log held
// (bbolt copies whole leaves, see flushFreeing), and must not take the
// room that deletes need to free space.
func (sp *space) release() bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if !sp.held {
		return false
	}
	sp.held = false
	sp.setLocked()
	sp.log.Warn("disk full: space reserve released for flushing; writes that grow the store are limited until space is freed", "file", sp.path, "size", sp.size)
	return sp.removed(os.Truncate(sp.path, sp.size/reserveKept))
}

// releaseKept gives back the eighth release kept, for a transaction that
// writes only records that free space (flushFreeing), and reports whether
// there was any to give.
func (sp *space) releaseKept() bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.held || !sp.kept {
		return false
	}
	sp.kept = false
	sp.log.Warn("disk full: the last of the space reserve released for a flush of deletes", "file", sp.path)
	return sp.removed(os.Remove(sp.path))
}

// removed logs a failed release, and reports whether it succeeded.
func (sp *space) removed(err error) bool {
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		sp.log.Error("releasing the space reserve", "file", sp.path, "error", err)
		return false
	}
	return true
}

// reserveKept: the first release keeps 1/reserveKept of the reserve.
const reserveKept = 8

// flushed records a flush's outcome: stuck while flushes fail for lack of
// space.
func (sp *space) flushed(noSpace bool) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.stuck != noSpace {
		if noSpace {
			sp.log.Error("disk full: flushes fail; writes that grow the store are refused, deletes accepted", "file", sp.path)
		} else {
			sp.log.Info("flushes succeed again after the disk was full")
		}
	}
	sp.stuck = noSpace
	sp.setLocked()
}

// refresh allocates the reserve again, while the store is limited and not
// stuck, once the file system has twice its size free (and the ring
// first, if it is not allocated).
func (sp *space) refresh(w *wal.Log) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.stuck || sp.held {
		return
	}
	free, err := freeBytes(filepath.Dir(sp.path))
	if err != nil {
		sp.log.Warn("measuring free space", "error", err)
		return
	}
	if free >= 2*sp.size && w.Reallocate() {
		if _, err := allocateFile(sp.path, sp.size); err == nil {
			sp.held, sp.kept = true, true
			sp.log.Info("space reserve allocated again: writes are no longer limited", "file", sp.path)
		}
	}
	sp.setLocked()
}

// admit tells how a batch that grows the store is committed: in the log
// (nil, false) while the reserve is held, directly into the file (nil,
// true) while low, not at all while full.
func (sp *space) admit() (direct bool, err error) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	switch {
	case sp.stuck:
		return false, fmt.Errorf("%w: flushes fail for lack of space; only deletes and writes that do not grow a record are accepted", ErrDiskFull)
	case sp.held:
		return false, nil
	}
	return true, nil
}

// allocateFile creates (or completes) a file of size allocated bytes and
// returns the size it had. A failed allocation leaves it as it was (none:
// removed).
func allocateFile(path string, size int64) (had int64, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return 0, err
	}
	if fi, err := f.Stat(); err == nil {
		had = fi.Size()
	}
	err = syscall.Fallocate(int(f.Fd()), 0, 0, size)
	if errors.Is(err, syscall.EOPNOTSUPP) {
		err = writeZeros(f, size)
	}
	if err != nil && had > 0 {
		_ = f.Truncate(had)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil && had == 0 {
		os.Remove(path)
	}
	return had, err
}

// writeZeros allocates a file by writing it, where fallocate is not
// supported.
func writeZeros(f *os.File, size int64) error {
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := f.WriteAt(buf[:min(int64(len(buf)), size-off)], off); err != nil {
			return err
		}
	}
	return f.Sync()
}

// freeBytes is what the file system holding dir has free for this user.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// isNoSpace reports whether err is ENOSPC, even where bbolt wrapped it
// with %s.
func isNoSpace(err error) bool {
	return err != nil && (errors.Is(err, ErrDiskFull) || errors.Is(err, syscall.ENOSPC) ||
		strings.Contains(err.Error(), syscall.ENOSPC.Error()))
}

// DiskState returns DiskOK, DiskLow or DiskFull: whether a full disk
// limits the writes this store accepts.
func (s *Store) DiskState() string { return s.space.state() }

// ringSpare: the last 1/ringSpare of the log's ring is kept for batches
// that shrink the store (commit.go, walSpace).
const ringSpare = 8

// admit decides how a batch is committed while a full disk limits the
// store (see above): whether it shrinks the store (it may then use the
// ring's spare), goes into the file directly, or is refused. Unlimited,
// only a batch of deletes counts as shrinking: that needs no look-up.
// st's read transaction is still open.
func (s *Store) admit(st *txState) (shrinks, direct bool, err error) {
	if !s.space.limited.Load() {
		for i := range st.puts {
			if !st.puts[i].meta.Deleted {
				return false, false, nil
			}
		}
		return true, false, nil
	}
	if !st.grows() {
		return true, false, nil
	}
	direct, err = s.space.admit()
	return false, direct, err
}

// grows reports whether any record the batch stores grows: one that is
// not a tombstone and is larger than the one it replaces (or replaces
// none). Deletes and overwrites that are not larger are what frees space,
// so they are always accepted.
func (st *txState) grows() bool {
	for key, i := range st.staged {
		p := &st.puts[i]
		if p.meta.Deleted {
			continue
		}
		if old := st.before(key); old == nil || len(p.raw) > len(old) {
			return true
		}
	}
	return false
}

// before returns the raw record key had before the batch, or nil.
func (st *txState) before(key string) []byte {
	if r := st.active.Rec(key); r != nil {
		return r.Raw
	}
	if r := st.frozen.Rec(key); r != nil {
		return r.Raw
	}
	return st.kv.Get([]byte(key))
}
