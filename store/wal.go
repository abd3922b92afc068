package store

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

// The write-ahead log. A commit is acknowledged once its batch is in the
// log and the log is fdatasynced: one write and one fsync, where a bbolt
// commit costs two fsyncs (data pages, then the meta page) and a dozen
// scattered page writes. The batches are then held in memory (pending.go)
// and written into the bbolt file in large transactions (flush.go), with
// bbolt's own two-fsync ordering intact, so the bbolt file is always a
// consistent state as of some batch (its meta value wal_lsn).
//
// The log is one file of a fixed size used as a ring: each batch starts on
// a walBlock boundary and is padded to whole blocks (a full-block write
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
// log file is removed: a closed store is its data file alone, to copy or
// move like before.
const (
	walBlock  = 4096
	walMagic  = 0x434b5731 // "CKW1"
	walHeader = 4 + 4 + 8 + 16 + 4
	walSize   = 32 << 20 // the ring's size (Options.walSize in tests)
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// walPath is the log's file next to the store's.
func walPath(path string) string { return path + "-wal" }

// wal is the open log. Only the committer writes it.
type wal struct {
	f      *os.File // buffered: reads, and writes without direct
	direct *os.File // O_DIRECT|O_DSYNC, or nil
	path   string
	size   int64 // the ring's size
	store  NodeID
	noSync bool

	head int64  // where the next batch goes (before wrapping)
	lsn  uint64 // the last batch written
	buf  []byte // the batch being encoded, reused
	abuf []byte // block-aligned copy for direct writes, reused
	err  error  // set when the log cannot be used any more

	// allocated: the file's blocks up to size are allocated (preallocate),
	// so a batch never needs a new block of the file system.
	allocated bool
}

// walChange is one stored change in a batch.
type walChange struct {
	index uint64 // its change-log index
	key   string
	raw   []byte // the record's canonical encoding
	ev    []byte // its change-log entry
}

// walBatch is a decoded batch.
type walBatch struct {
	lsn      uint64
	pos, end int64 // where it starts and where its blocks end
	reserved uint64
	changes  []walChange
}

// openWAL opens (creating it, and syncing its directory, if missing) the
// log at path, of the ring size size.
func openWAL(path string, size int64, store NodeID, noSync bool) (*wal, error) {
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: write-ahead log: %w", err)
	}
	if errors.Is(statErr, os.ErrNotExist) && !noSync {
		// The log's directory entry must be durable before a batch
		// written to it counts as durable.
		if err := syncDir(filepath.Dir(path)); err != nil {
			f.Close()
			return nil, fmt.Errorf("store: write-ahead log: %w", err)
		}
	}
	w := &wal{f: f, path: path, size: size, store: store, noSync: noSync}
	w.preallocate()
	if !noSync {
		if d, err := os.OpenFile(path, os.O_RDWR|syscall.O_DIRECT|syscall.O_DSYNC, 0); err == nil {
			w.direct = d
		}
	}
	return w, nil
}

// minWALSize is the smallest ring preallocate settles for on a nearly full
// disk: 64 blocks, batches of up to 16 blocks.
const minWALSize = 64 * walBlock

// preallocate allocates the ring's blocks (fallocate), so that appending a
// batch never needs space of the file system and a full disk cannot fail a
// commit (docs/ARCHITECTURE.md, "A full disk"). A new log on a disk without
// room for the whole ring gets the largest power-of-two fraction of it
// that fits, down to minWALSize; when even that fails the log stays sparse
// (writes may then fail with ENOSPC, as they did before). Allocating an
// existing log only fills its holes: the batches in it are not touched.
func (w *wal) preallocate() {
	fi, err := w.f.Stat()
	if err != nil {
		return
	}
	fresh := fi.Size() == 0
	for size := w.size; ; size /= 2 {
		err := syscall.Fallocate(int(w.f.Fd()), 0, 0, size)
		if err == nil {
			w.size, w.allocated = size, true
			return
		}
		if !fresh {
			break
		}
		if !errors.Is(err, syscall.ENOSPC) || size/2 < minWALSize {
			// A failed allocation may leave blocks allocated: a fresh log
			// gives them back.
			_ = w.f.Truncate(0)
			return
		}
	}
	// A log left by a crash that cannot grow to the ring's size keeps the
	// size it has as its ring, allocated: its batches all lie within it.
	if n := fi.Size() / walBlock * walBlock; n >= minWALSize && n < w.size {
		if syscall.Fallocate(int(w.f.Fd()), 0, 0, n) == nil {
			w.size, w.allocated = n, true
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (w *wal) close() error {
	if w.direct != nil {
		w.direct.Close()
	}
	return w.f.Close()
}

// writeSync writes b at pos durably: directly, or buffered and synced.
func (w *wal) writeSync(b []byte, pos int64) error {
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
	b := make([]byte, n+walBlock)
	off := (walBlock - int(uintptr(unsafe.Pointer(&b[0]))%walBlock)) % walBlock
	return b[off : off+n : off+n]
}

// encode lays out a batch in w.buf, padded to whole blocks, and returns it.
func (w *wal) encode(lsn, reserved uint64, changes []walChange) []byte {
	b := append(w.buf[:0], make([]byte, walHeader)...)
	b = binary.BigEndian.AppendUint64(b, reserved)
	b = binary.BigEndian.AppendUint32(b, uint32(len(changes)))
	for _, c := range changes {
		b = binary.BigEndian.AppendUint64(b, c.index)
		b = binary.BigEndian.AppendUint16(b, uint16(len(c.key)))
		b = append(b, c.key...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(c.raw)))
		b = append(b, c.raw...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(c.ev)))
		b = append(b, c.ev...)
	}
	payload := len(b) - walHeader
	binary.BigEndian.PutUint32(b[0:], walMagic)
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

func roundBlock(n int64) int64 { return (n + walBlock - 1) / walBlock * walBlock }

// maxBatch is the largest batch the log takes; a larger one is written to
// the file directly (commitDirect).
func (w *wal) maxBatch() int64 { return w.size / 4 }

// place returns where a batch of n bytes (whole blocks) goes: at the head,
// or at 0 when it does not fit before the end of the ring.
func (w *wal) place(n int64) int64 {
	if w.head+n > w.size {
		return 0
	}
	return w.head
}

// write writes a batch encoded by encode at pos and syncs it; the caller
// has checked that the space is free (fits). On error the head and the
// LSN stay, and the batch must never be replayed (its commit failed): a
// failed write has its header zeroed, synced, before the log is used
// again. A failed fsync leaves the log unusable until the store is
// reopened: after one, the kernel may have dropped the pages it could not
// write and report the next fsync clean, so nothing written since could be
// trusted (the replay at the next Open decides what is there).
func (w *wal) write(b []byte, pos int64, lsn uint64) error {
	if w.err != nil {
		return w.err
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
func (w *wal) unwrite(pos int64) error {
	fi, err := w.f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() <= pos {
		return nil
	}
	return w.writeSync(make([]byte, walBlock), pos)
}

// recover returns the batches after lsn, in order, and leaves the head
// after the last one (at 0 when there is none) and w.lsn at the last
// number. A log too short for a header, or without the batch lsn+1,
// yields none.
func (w *wal) recover(lsn uint64) ([]walBatch, error) {
	w.head, w.lsn = 0, lsn
	fi, err := w.f.Stat()
	if err != nil {
		return nil, fmt.Errorf("store: write-ahead log: %w", err)
	}
	data := make([]byte, fi.Size())
	if _, err := io.ReadFull(io.NewSectionReader(w.f, 0, int64(len(data))), data); err != nil {
		return nil, fmt.Errorf("store: write-ahead log: %w", err)
	}
	start := int64(-1)
	for pos := int64(0); pos+walHeader <= int64(len(data)); pos += walBlock {
		if b, ok := w.decode(data, pos); ok && b.lsn == lsn+1 {
			start = pos
			break
		}
	}
	var out []walBatch
	for pos := start; pos >= 0; {
		b, ok := w.decode(data, pos)
		if !ok || b.lsn != lsn+1 {
			if pos == 0 {
				break
			}
			pos = 0 // the writer wraps to 0 when a batch does not fit
			continue
		}
		out = append(out, b)
		lsn = b.lsn
		w.head, w.lsn = b.end, b.lsn
		pos = b.end
	}
	return out, nil
}

// decode reads the batch at pos, if there is a whole valid one there.
func (w *wal) decode(data []byte, pos int64) (walBatch, bool) {
	if pos+walHeader > int64(len(data)) {
		return walBatch{}, false
	}
	h := data[pos:]
	if binary.BigEndian.Uint32(h) != walMagic || [16]byte(h[16:32]) != w.store {
		return walBatch{}, false
	}
	n := int64(binary.BigEndian.Uint32(h[32:]))
	if pos+walHeader+n > int64(len(data)) {
		return walBatch{}, false
	}
	if crc32.Checksum(h[8:walHeader+n], crcTable) != binary.BigEndian.Uint32(h[4:]) {
		return walBatch{}, false
	}
	b := walBatch{lsn: binary.BigEndian.Uint64(h[8:]), pos: pos, end: pos + roundBlock(walHeader+n)}
	p := payloadReader{b: h[walHeader : walHeader+n], ok: true}
	b.reserved = p.u64()
	count := p.u32()
	for i := uint32(0); i < count && p.ok; i++ {
		var c walChange
		c.index = p.u64()
		c.key = string(p.bytes(int(p.u16())))
		c.raw = p.bytes(int(p.u32()))
		c.ev = p.bytes(int(p.u16()))
		b.changes = append(b.changes, c)
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
