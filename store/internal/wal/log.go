// Package wal is the store's write-ahead log: a ring file of batches, each
// acknowledged once it is on the device, read back at open (log.go); the
// overlay of batches logged but not yet in the data file, which reads look
// at first (overlay.go); and their flush into the data file, which frees
// the ring's space (flush.go, flusher.go). It knows nothing of records: a
// change is a key and opaque bytes (the store's record and change-log
// entry), and what a flush writes is the store's (Sink).
package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"unsafe"
)

// A commit is acknowledged once its batch is in the
// log and the log is fdatasynced: one write and one fsync, where a bbolt
// commit costs two fsyncs (data pages, then the meta page) and a dozen
// scattered page writes. The batches are then held in memory (Overlay)
// and written into the bbolt file in large transactions (Overlay.Flush,
// through the store's Sink), with
// bbolt's own two-fsync ordering intact, so the bbolt file is always a
// consistent state as of some batch (its meta value wal_lsn).
//
// The log is one file of a fixed size used as a ring: each batch starts on
// a Block boundary and is padded to whole blocks (a full-block write
// needs no read of the old block, and a batch is found by looking at block
// starts only). A batch goes at the head, or at offset 0 when it does not
// fit before the end; the space of batches is reused only once a flush
// that covers them is durable in the bbolt file.
//
// A batch is a header — magic, CRC-32C of everything after the CRC, its
// LSN (batch number, consecutive), the store id, the payload length — and
// the payload: the reservation, then each change (change-log index, key,
// the record's canonical bytes, the change-log entry). Opening the store
// looks for the batch numbered wal_lsn+1 at every block start, then
// follows the chain (the next batch at the next block, else at offset 0)
// while the numbers run on and the CRCs hold, and replays what it found
// into the bbolt file. A batch torn by a crash fails its CRC; it was never
// acknowledged, and nothing after it was written (the committer waits for
// each batch's fsync before writing the next). A stale batch left from an
// earlier lap has a smaller number. The store id keeps another store's log
// from being replayed here.
//
// Batches are written with O_DIRECT|O_DSYNC where the file system allows
// it: the write returns once the data is on the device (FUA or a cache
// flush), as fdatasync would make it, with a fifth less CPU time and
// latency than a buffered write and fdatasync (docs/BENCHMARKS.md);
// elsewhere (tmpfs) with a buffered write and fdatasync.
//
// Once the store is closed cleanly everything is in the bbolt file and the
// log holds nothing it needs: a closed store is its data file alone, to
// copy or move like before. The log stays beside it all the same, its
// first block overwritten with a closed mark (CloseClean), so that the
// next open writes its batches into blocks already written rather than
// into a new ring's unwritten extents (zero.go). At open a closed mark of
// this store saves reading the ring: every batch in it is numbered at most
// the mark's number, so when the data file's wal_lsn is at least that,
// none is replayed and none can be mistaken for a later one. A mark beyond
// wal_lsn means an older copy of the data file beside the log of a later
// state: the ring is emptied, as its batches would otherwise pass for the
// ones to come.
const (
	Block       = 4096
	magic       = 0x434b5731 // "CKW1"
	closedMagic = 0x434b5743 // "CKWC": the log of a cleanly closed store
	header      = 4 + 4 + 8 + 16 + 4
	DefaultSize = 32 << 20 // the ring's size (tests make it smaller)
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Log is the open log. Only the store's committer writes it.
type Log struct {
	f      *os.File // buffered: reads, and writes without direct
	direct *os.File // O_DIRECT|O_DSYNC, or nil
	path   string
	size   int64 // the ring's size
	store  [16]byte
	noSync bool

	head int64  // where the next batch goes (before wrapping)
	lsn  uint64 // the last batch written
	buf  []byte // the batch being encoded, reused
	abuf []byte // block-aligned copy for direct writes, reused
	err  error  // set when the log cannot be used any more

	// zero fills a fresh ring with zeros in the background (zero.go), or
	// is nil.
	zero *zeroer

	// allocated: the file's blocks up to size are allocated (preallocate),
	// so a batch never needs a new block of the file system.
	allocated bool
	// empty: the file had no bytes when it was opened, so recover has
	// nothing to read (and must not read the allocated ring: 32 MiB of
	// zeros, held live until the next collection, set the heap's goal).
	empty bool
}

// Change is one stored change in a batch.
type Change struct {
	Index uint64 // its change-log index
	Key   string
	Raw   []byte // the record's canonical encoding
	Ev    []byte // its change-log entry
}

// Batch is a decoded batch.
type Batch struct {
	LSN      uint64
	Pos, End int64 // where it starts and where its blocks end
	Reserved uint64
	Changes  []Change
}

// Open opens (creating it, and syncing its directory, if missing) the
// log at path, of the ring size size.
func Open(path string, size int64, store [16]byte, noSync bool) (*Log, error) {
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("write-ahead log: %w", err)
	}
	if errors.Is(statErr, os.ErrNotExist) && !noSync {
		// The log's directory entry must be durable before a batch
		// written to it counts as durable.
		if err := syncDir(filepath.Dir(path)); err != nil {
			f.Close()
			return nil, fmt.Errorf("write-ahead log: %w", err)
		}
	}
	w := &Log{f: f, path: path, size: size, store: store, noSync: noSync}
	w.Preallocate()
	if !noSync {
		if d, err := os.OpenFile(path, os.O_RDWR|syscall.O_DIRECT|syscall.O_DSYNC, 0); err == nil {
			w.direct = d
		}
	}
	w.startZeroer()
	return w, nil
}

// MinSize is the smallest ring Preallocate settles for on a nearly full
// disk: 64 blocks, batches of up to 16 blocks.
const MinSize = 64 * Block

// Preallocate allocates the ring's blocks (fallocate), so that appending a
// batch never needs space of the file system and a full disk cannot fail a
// commit (docs/ARCHITECTURE.md, "A full disk"). A new log on a disk without
// room for the whole ring gets the largest power-of-two fraction of it
// that fits, down to MinSize; when even that fails the log stays sparse
// (writes may then fail with ENOSPC, as they did before). Allocating an
// existing log only fills its holes: the batches in it are not touched.
func (w *Log) Preallocate() {
	fi, err := w.f.Stat()
	if err != nil {
		return
	}
	fresh := fi.Size() == 0
	w.empty = fresh
	for size := w.size; ; size /= 2 {
		err := syscall.Fallocate(int(w.f.Fd()), 0, 0, size)
		if err == nil {
			w.size, w.allocated = size, true
			return
		}
		if !fresh {
			break
		}
		if !errors.Is(err, syscall.ENOSPC) || size/2 < MinSize {
			// A failed allocation may leave blocks allocated: a fresh log
			// gives them back.
			_ = w.f.Truncate(0)
			return
		}
	}
	// A log left by a crash that cannot grow to the ring's size keeps the
	// size it has as its ring, allocated: its batches all lie within it.
	if n := fi.Size() / Block * Block; n >= MinSize && n < w.size {
		if syscall.Fallocate(int(w.f.Fd()), 0, 0, n) == nil {
			w.size, w.allocated = n, true
		}
	}
}

// Path is the log's file.
func (w *Log) Path() string { return w.path }

// Size is the ring's size: what Open asked for, or less on a full disk.
func (w *Log) Size() int64 { return w.size }

// Head is where the next batch goes (before wrapping).
func (w *Log) Head() int64 { return w.head }

// LSN is the number of the last batch written (or recovered).
func (w *Log) LSN() uint64 { return w.lsn }

// Allocated reports whether the ring's blocks are allocated.
func (w *Log) Allocated() bool { return w.allocated }

// Reallocate allocates the ring of a log Preallocate could not allocate,
// now that there is space. It reports whether the ring is allocated.
func (w *Log) Reallocate() bool {
	if !w.allocated && syscall.Fallocate(int(w.f.Fd()), 0, 0, w.size) == nil {
		w.allocated = true
	}
	return w.allocated
}

// Fits reports whether n bytes written at pos (the head, or 0 after a
// wrap) stay clear of the batches not yet flushed, which occupy the ring
// from tail up to head.
func Fits(pos, n, head, tail int64) bool {
	switch {
	case tail < head:
		return pos == head || pos+n <= tail
	case tail > head:
		return pos == head && pos+n <= tail
	}
	return false // tail == head: the ring is full
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (w *Log) Close() error {
	if w.zero != nil {
		w.zero.halt()
	}
	if w.direct != nil {
		w.direct.Close()
	}
	return w.f.Close()
}

// writeSync writes b at pos durably: directly, or buffered and synced.
func (w *Log) writeSync(b []byte, pos int64) error {
	if w.direct != nil {
		if cap(w.abuf) < len(b) {
			w.abuf = alignedBlocks(len(b))
		}
		ab := w.abuf[:len(b)]
		copy(ab, b)
		_, err := w.direct.WriteAt(ab, pos)
		return err
	}
	if _, err := w.f.WriteAt(b, pos); err != nil {
		return err
	}
	if w.noSync {
		return nil
	}
	if err := syscall.Fdatasync(int(w.f.Fd())); err != nil {
		return fmt.Errorf("fdatasync: %w", errSyncFailed{err})
	}
	return nil
}

// errSyncFailed marks a failed fsync (see write).
type errSyncFailed struct{ error }

func (e errSyncFailed) Unwrap() error { return e.error }

// alignedBlocks returns n bytes (whole blocks) starting on a block
// boundary, as O_DIRECT wants them.
func alignedBlocks(n int) []byte {
	b := make([]byte, n+Block)
	off := (Block - int(uintptr(unsafe.Pointer(&b[0]))%Block)) % Block
	return b[off : off+n : off+n]
}

// Encode lays out a batch in w.buf, padded to whole blocks, and returns it.
func (w *Log) Encode(lsn, reserved uint64, changes []Change) []byte {
	b := append(w.buf[:0], make([]byte, header)...)
	b = binary.BigEndian.AppendUint64(b, reserved)
	b = binary.BigEndian.AppendUint32(b, uint32(len(changes)))
	for _, c := range changes {
		b = binary.BigEndian.AppendUint64(b, c.Index)
		b = binary.BigEndian.AppendUint16(b, uint16(len(c.Key)))
		b = append(b, c.Key...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(c.Raw)))
		b = append(b, c.Raw...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(c.Ev)))
		b = append(b, c.Ev...)
	}
	payload := len(b) - header
	binary.BigEndian.PutUint32(b[0:], magic)
	binary.BigEndian.PutUint64(b[8:], lsn)
	copy(b[16:32], w.store[:])
	binary.BigEndian.PutUint32(b[32:], uint32(payload))
	binary.BigEndian.PutUint32(b[4:], crc32.Checksum(b[8:], crcTable))
	if pad := roundBlock(int64(len(b))) - int64(len(b)); pad > 0 {
		b = append(b, make([]byte, pad)...)
	}
	w.buf = b
	return b
}

func roundBlock(n int64) int64 { return (n + Block - 1) / Block * Block }

// MaxBatch is the largest batch the log takes; a larger one is written to
// the file directly (commitDirect).
func (w *Log) MaxBatch() int64 { return w.size / 4 }

// Place returns where a batch of n bytes (whole blocks) goes: at the head,
// or at 0 when it does not fit before the end of the ring.
func (w *Log) Place(n int64) int64 {
	if w.head+n > w.size {
		return 0
	}
	return w.head
}

// Write writes a batch encoded by Encode at pos and syncs it; the caller
// has checked that the space is free (fits). On error the head and the
// LSN stay, and the batch must never be replayed (its commit failed): a
// failed write has its header zeroed, synced, before the log is used
// again. A failed fsync leaves the log unusable until the store is
// reopened: after one, the kernel may have dropped the pages it could not
// write and report the next fsync clean, so nothing written since could be
// trusted (the replay at the next Open decides what is there).
func (w *Log) Write(b []byte, pos int64, lsn uint64) error {
	if w.err != nil {
		return w.err
	}
	if w.zero != nil {
		w.zero.claim(pos, pos+int64(len(b)), pos < w.head)
	}
	if err := w.writeSync(b, pos); err != nil {
		var failed errSyncFailed
		switch {
		case errors.As(err, &failed) || w.direct != nil && !errors.Is(err, syscall.ENOSPC):
			// A direct write's error may be its sync's.
			w.err = fmt.Errorf("write-ahead log unusable until reopened: %w", err)
		default:
			if zerr := w.unwrite(pos); zerr != nil {
				w.err = fmt.Errorf("write-ahead log unusable until reopened: %w", errors.Join(err, zerr))
			}
		}
		return fmt.Errorf("write-ahead log: %w", err)
	}
	w.head, w.lsn = pos+int64(len(b)), lsn
	return nil
}

// unwrite zeroes the header block of a batch whose write failed, as far
// as the file reaches.
func (w *Log) unwrite(pos int64) error {
	fi, err := w.f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() <= pos {
		return nil
	}
	return w.writeSync(make([]byte, Block), pos)
}

// CloseClean closes the log of a store whose batches are all in its data
// file, marking it closed; on an error the log is closed all the same but
// not marked, and the caller removes it. A log that is unusable or not
// allocated is not kept.
func (w *Log) CloseClean() error {
	if w.zero != nil {
		w.zero.halt()
	}
	err := w.err
	if err == nil && !w.allocated {
		err = errors.New("write-ahead log not allocated")
	}
	if err == nil {
		err = w.writeSync(w.closedMark(w.lsn), 0)
	}
	return errors.Join(err, w.Close())
}

// closedMark is the block CloseClean writes at the ring's start: a header
// with the closed magic, the number of the last batch written and the
// store id, and no payload.
func (w *Log) closedMark(lsn uint64) []byte {
	b := make([]byte, Block)
	binary.BigEndian.PutUint32(b[0:], closedMagic)
	binary.BigEndian.PutUint64(b[8:], lsn)
	copy(b[16:32], w.store[:])
	binary.BigEndian.PutUint32(b[4:], crc32.Checksum(b[8:header], crcTable))
	return b
}

// closedAt reads the closed mark at the ring's start: the number of the
// last batch the log held, and whether there is a mark of this store.
func (w *Log) closedAt() (uint64, bool) {
	h := make([]byte, header)
	if _, err := w.f.ReadAt(h, 0); err != nil {
		return 0, false
	}
	ok := binary.BigEndian.Uint32(h) == closedMagic && [16]byte(h[16:32]) == w.store &&
		binary.BigEndian.Uint32(h[32:]) == 0 &&
		crc32.Checksum(h[8:header], crcTable) == binary.BigEndian.Uint32(h[4:])
	return binary.BigEndian.Uint64(h[8:]), ok
}

// emptyRing empties a log whose batches must not be read: the file is cut
// and its ring allocated again, as new.
func (w *Log) emptyRing() error {
	if w.zero != nil {
		w.zero.halt()
		w.zero = nil
	}
	if err := w.f.Truncate(0); err != nil {
		return fmt.Errorf("write-ahead log: %w", err)
	}
	w.allocated = false
	w.Preallocate()
	w.startZeroer()
	return nil
}

// Recover returns the batches after lsn, in order, and leaves the head
// after the last one (at 0 when there is none) and w.lsn at the last
// number. A log too short for a header, or without the batch lsn+1,
// yields none; so does a closed log (CloseClean), without being read.
func (w *Log) Recover(lsn uint64) ([]Batch, error) {
	w.head, w.lsn = 0, lsn
	if w.empty {
		return nil, nil
	}
	if closed, ok := w.closedAt(); ok {
		if closed > lsn {
			return nil, w.emptyRing()
		}
		return nil, nil
	}
	fi, err := w.f.Stat()
	if err != nil {
		return nil, fmt.Errorf("write-ahead log: %w", err)
	}
	data := make([]byte, fi.Size())
	if _, err := io.ReadFull(io.NewSectionReader(w.f, 0, int64(len(data))), data); err != nil {
		return nil, fmt.Errorf("write-ahead log: %w", err)
	}
	start := int64(-1)
	for pos := int64(0); pos+header <= int64(len(data)); pos += Block {
		if b, ok := w.decode(data, pos); ok && b.LSN == lsn+1 {
			start = pos
			break
		}
	}
	var out []Batch
	for pos := start; pos >= 0; {
		b, ok := w.decode(data, pos)
		if !ok || b.LSN != lsn+1 {
			if pos == 0 {
				break
			}
			pos = 0 // the writer wraps to 0 when a batch does not fit
			continue
		}
		out = append(out, b)
		lsn = b.LSN
		w.head, w.lsn = b.End, b.LSN
		pos = b.End
	}
	return out, nil
}

// decode reads the batch at pos, if there is a whole valid one there.
func (w *Log) decode(data []byte, pos int64) (Batch, bool) {
	if pos+header > int64(len(data)) {
		return Batch{}, false
	}
	h := data[pos:]
	if binary.BigEndian.Uint32(h) != magic || [16]byte(h[16:32]) != w.store {
		return Batch{}, false
	}
	n := int64(binary.BigEndian.Uint32(h[32:]))
	if pos+header+n > int64(len(data)) {
		return Batch{}, false
	}
	if crc32.Checksum(h[8:header+n], crcTable) != binary.BigEndian.Uint32(h[4:]) {
		return Batch{}, false
	}
	b := Batch{LSN: binary.BigEndian.Uint64(h[8:]), Pos: pos, End: pos + roundBlock(header+n)}
	p := payloadReader{b: h[header : header+n], ok: true}
	b.Reserved = p.u64()
	count := p.u32()
	for i := uint32(0); i < count && p.ok; i++ {
		var c Change
		c.Index = p.u64()
		c.Key = string(p.bytes(int(p.u16())))
		c.Raw = p.bytes(int(p.u32()))
		c.Ev = p.bytes(int(p.u16()))
		b.Changes = append(b.Changes, c)
	}
	// A batch whose CRC holds but whose payload does not parse was not
	// written by this code: stop there rather than guess.
	return b, p.ok && len(p.b) == 0
}

// payloadReader reads big-endian fields; ok turns false at the first
// field that runs past the end.
type payloadReader struct {
	b  []byte
	ok bool
}

func (p *payloadReader) take(n int) []byte {
	if !p.ok || n > len(p.b) {
		p.ok = false
		return nil
	}
	v := p.b[:n:n]
	p.b = p.b[n:]
	return v
}

func (p *payloadReader) u64() uint64 {
	if v := p.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (p *payloadReader) u32() uint32 {
	if v := p.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (p *payloadReader) u16() uint16 {
	if v := p.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

// bytes returns a copy: the batch outlives the buffer it was read from.
func (p *payloadReader) bytes(n int) []byte {
	v := p.take(n)
	if !p.ok {
		return nil
	}
	return append(make([]byte, 0, n), v...)
}
