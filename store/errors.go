package store

import (
	"errors"
	"fmt"
	"strconv"
)

// Errors returned by the store. Callers test for them with errors.Is; the
// returned errors wrap them with what went wrong ("key: empty segment at byte
// 4"), so the message is worth showing.
var (
	// ErrBadKey: the key breaks the key rules of docs/PROTOCOL.md (length, UTF-8,
	// control characters, empty, "." or ".." segments).
	ErrBadKey = errors.New("invalid key")
	// ErrTooLarge: the value is larger than Options.MaxValueSize.
	ErrTooLarge = errors.New("value too large")
	// ErrBadRecord: a received record cannot be stored as it is (its
	// lamport is zero or absurdly large). The sender is buggy or hostile.
	ErrBadRecord = errors.New("invalid record")
	// ErrHashMismatch: a received record does not hash to the hash it came
	// with (Applier.ApplyHashed): damaged or forged on the way.
	ErrHashMismatch = errors.New("record does not match its hash")
	// ErrClockJump: a received or imported record's lamport is more than
	// MaxClockJump above this node's clock. It wraps ErrBadRecord: the
	// record is refused and counted (Stats.Refused), the clock unchanged.
	ErrClockJump = fmt.Errorf("%w: lamport too far ahead", ErrBadRecord)
	// ErrBadTTL: a write's TTL is below MinTTL or above MaxTTL (the
	// tombstone TTL).
	ErrBadTTL = errors.New("invalid ttl")
	// ErrVersionMismatch: a conditional write (ifVersion) found another
	// version. The error is a *VersionError carrying the current version.
	ErrVersionMismatch = errors.New("version mismatch")
	// ErrChanged: a write conditional on the record the key held
	// (SetOptions.IfSame) found another record there.
	ErrChanged = errors.New("key changed")
	// ErrDiskFull: the commit failed because the file system is full
	// (ENOSPC). Nothing of the batch was stored; reads keep working and
	// writes work again once space is freed.
	ErrDiskFull = errors.New("disk full")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store closed")
	// ErrLocked: another process (or another Open in this one) holds the
	// data file's lock for longer than Options.LockTimeout.
	ErrLocked = errors.New("data file locked by another process")
	// ErrFormat: the file is not a store file, or was written by a newer
	// version of the format than this code knows.
	ErrFormat = errors.New("unsupported file format")
	// ErrCompacted: a watch asked for changes older than the change log
	// still holds, or fell so far behind that the log was trimmed past it.
	// Start again from a fresh listing (or from now).
	ErrCompacted = errors.New("change log compacted")
	// ErrCorrupt: Check found stored data or in-memory state that is not
	// consistent. The message lists what.
	ErrCorrupt = errors.New("store corrupt")
)

// VersionError is the error of a conditional write whose condition failed.
// errors.Is(err, ErrVersionMismatch) holds for it.
type VersionError struct {
	Key     string
	Want    uint64 // the version the caller expected
	Current uint64 // the version the store holds; 0 = absent or deleted
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("version mismatch: %q is at version %d, not %d", e.Key, e.Current, e.Want)
}

// Unwrap lets errors.Is match ErrVersionMismatch.
func (e *VersionError) Unwrap() error { return ErrVersionMismatch }

// keyError says what is wrong with a key and where.
type keyError struct {
	msg string
	at  int // byte offset, -1 when it has none
}

func (e *keyError) Error() string {
	if e.at < 0 {
		return "key: " + e.msg
	}
	return "key: " + e.msg + " at byte " + strconv.FormatUint(uint64(e.at), 10)
}

func (e *keyError) Unwrap() error { return ErrBadKey }
