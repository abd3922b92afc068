package wal

import (
	"os"
	"sync"
	"syscall"
)

// A fresh ring is allocated (fallocate) but its blocks are unwritten
// extents: on ext4 (and XFS) the first write into each one converts it, a
// journal commit of its own, which makes a batch's synced write a third
// slower (132–152 µs against 96–107 µs for a block written before,
// docs/BENCHMARKS.md). The zeroer writes zeros over a fresh ring in the
// background, so that the committer's first lap writes into written
// blocks. It goes from the end backwards, a chunk at a time, and stops
// short of where the committer writes: it never writes where a batch is or
// may be (docs/ARCHITECTURE.md, "The store").
const (
	zeroChunk  = 1 << 20 // one direct synced write of zeros
	zeroMargin = 4 << 20 // the zeroer stays this far ahead of the committer's reach
)

type zeroer struct {
	mu    sync.Mutex
	cond  sync.Cond
	reach int64 // the end of what the committer wrote or is writing in its first lap; the ring's size once it wrapped
	floor int64 // blocks from floor to the ring's end are zeroed
	busy  int64 // the start of the chunk being zeroed, or -1
	stop  bool
	done  chan struct{}
	write func(b []byte, pos int64) error
}

// startZeroer zeroes the ring of a fresh, allocated, directly written
// log. Not elsewhere: a log with batches in it is not fresh, zeros written
// into a sparse file would need space the disk may not have, and tmpfs
// (direct or not) has no extents to convert. Writing zeros into allocated
// blocks needs no space: what an extent's conversion needs, the file
// system reserves (ext4 keeps clusters back for it), and a batch's own
// first write into the block would convert it all the same.
func (w *Log) startZeroer() {
	if !w.empty || !w.allocated || w.direct == nil || w.noSync || onTmpfs(w.f) {
		return
	}
	w.zero = w.newZeroer(func(b []byte, pos int64) error {
		_, err := w.direct.WriteAt(b, pos)
		return err
	})
	go w.zero.run(min(zeroMargin, w.MaxBatch()))
}

func (w *Log) newZeroer(write func(b []byte, pos int64) error) *zeroer {
	z := &zeroer{floor: w.size, busy: -1, done: make(chan struct{}), write: write}
	z.cond.L = &z.mu
	return z
}

// run zeroes chunks from the end down, each only if it lies wholly beyond
// the committer's reach plus margin.
func (z *zeroer) run(margin int64) {
	defer close(z.done)
	var buf []byte
	for {
		z.mu.Lock()
		pos := max(z.floor-zeroChunk, 0)
		if z.stop || pos == z.floor || pos < z.reach+margin {
			z.mu.Unlock()
			return
		}
		z.busy = pos
		z.mu.Unlock()
		if buf == nil {
			buf = alignedBlocks(zeroChunk)
		}
		err := z.write(buf[:z.floor-pos], pos)
		z.mu.Lock()
		z.busy, z.floor = -1, pos
		if err != nil {
			// Zeroing is only for speed: a failed write leaves the blocks
			// as they were (unwritten, or zeros), and the zeroer gives up.
			z.stop = true
		}
		z.cond.Broadcast()
		z.mu.Unlock()
	}
}

// claim tells the zeroer that the committer is about to write [pos, end)
// (wrapped: the ring's first lap is over), and waits while the zeroer
// writes a chunk that the write would overlap: a batch is never written
// before or during a write of zeros over its blocks, and the zeroer never
// starts a chunk below reach.
func (z *zeroer) claim(pos, end int64, wrapped bool) {
	z.mu.Lock()
	z.reach = max(z.reach, end)
	if wrapped {
		z.stop = true // what the first lap left is the committer's
	}
	for z.busy >= 0 && end > z.busy && pos < z.floor {
		z.cond.Wait()
	}
	z.mu.Unlock()
}

// halt stops the zeroer and waits for its chunk in flight.
func (z *zeroer) halt() {
	z.mu.Lock()
	z.stop = true
	z.mu.Unlock()
	<-z.done
}

// onTmpfs reports whether f is on a tmpfs, whose allocated pages are
// plain zeroed memory.
func onTmpfs(f *os.File) bool {
	const tmpfsMagic = 0x01021994
	var st syscall.Statfs_t
	return syscall.Fstatfs(int(f.Fd()), &st) == nil && st.Type == tmpfsMagic
}
