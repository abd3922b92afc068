// Package store holds a node's data: versioned records, version vectors,
// the durable bbolt file, the digest tree anti-entropy compares, tombstones
// and the change log watches read. It does no networking: the daemon feeds
// it local writes (Set, Delete) and records received from peers (Apply).
//
// Every write goes through one committer goroutine that group-commits
// whatever is queued as one batch in a write-ahead log with one fsync, so
// concurrent writers share an fsync (docs/PROTOCOL.md, Costs) and a write returns only
// once it is durable. A flusher writes the logged batches into the bbolt
// file in large transactions; reads see both (internal/wal, pending.go,
// flush.go). In-memory state (clock, digest tree, key count, change index)
// changes only after a commit succeeds.
package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/cloudknowledge/ck/internal/limits"
	"github.com/cloudknowledge/ck/store/internal/wal"
)

// FormatVersion is the version of the file layout this code writes. A file
// with a larger (or unknown) version is refused with ErrFormat rather than
// misread. Version 2 added the write-ahead log (internal/wal): such a file may
// need its log to be complete, which version 1 code would not read.
// Version 3 added the tombstone index and the purge log (purge.go). Files
// of versions 1 and 2 are upgraded when opened. Version 4 added records
// with a TTL (field 10, which older code refuses) and the deadlines of
// bucket ttl (ttl.go); files of version 3 are upgraded.
const FormatVersion = 4

// The file's buckets and meta keys.
var (
	bucketMeta    = []byte("meta")
	bucketKV      = []byte("kv")      // key → record (canonical CBOR)
	bucketKeyHash = []byte("keyhash") // KeyHash(key) ‖ key → record hash: records by digest leaf
	bucketChanges = []byte("changes") // index (big endian) → event

	metaFormat   = []byte("format")
	metaNodeID   = []byte("node_id")
	metaStoreID  = []byte("store_id")
	metaReserved = []byte("lamport_reserved")
	metaLast     = []byte("last_index")
	metaWALLSN   = []byte("wal_lsn") // the last log batch the file holds
)

// Options configure Open. The zero value is a usable default.
type Options struct {
	Logger       hclog.Logger     // nil: hclog.NewNullLogger()
	Resolver     Resolver         // nil: last-writer-wins
	WatchHistory int              // change events kept; 0: 100000
	MaxValueSize int              // 0: 4 MiB; at most 64 MiB; larger values => ErrTooLarge
	NoSync       bool             // tests/benchmarks only: skip fsync
	LockTimeout  time.Duration    // how long Open waits for the file lock; 0: 1s; then ErrLocked
	Now          func() time.Time // nil: time.Now
	// TombstoneTTL: a tombstone is purged at its At + TombstoneTTL; 0:
	// never (purge.go).
	TombstoneTTL time.Duration
	// PurgeLogTTL: a purged tombstone stays in the purge log for this long
	// after it expired; 0 with a TombstoneTTL: DefaultPurgeLogTTL.
	PurgeLogTTL time.Duration

	// LogSize is the write-ahead log's ring size in bytes, and so the size
	// of the space reserve beside it (0: 32 MiB, wal.DefaultSize). A smaller
	// ring flushes more often; the simulated network's many stores use one
	// so that they fit a tmpfs. At least wal.MinSize.
	LogSize int64

	// CountHold, for tests of what a node does while it counts: when
	// set, Open counts every file without a current digest snapshot in
	// the background however small (counting.go), starting once
	// CountHold is closed (or at Close).
	CountHold <-chan struct{}

	walSize int64 // the log's ring size in force: LogSize, or a test's (WALSize)
	// countInline: a file of up to this many bytes without a current
	// digest snapshot is counted in Open, a larger one in the
	// background (counting.go); 0: countInlineSize; negative (tests,
	// CountHold): every one in the background.
	countInline int64
}

// Limits of Options.
const (
	DefaultMaxValueSize = limits.DefaultMaxValueSize
	MaxMaxValueSize     = limits.MaxMaxValueSize
	DefaultWatchHistory = 100000
	DefaultListLimit    = 1000
)

func (o Options) withDefaults() (Options, error) {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.WatchHistory == 0 {
		o.WatchHistory = DefaultWatchHistory
	}
	if o.WatchHistory < 0 {
		return o, fmt.Errorf("WatchHistory %d is negative", o.WatchHistory)
	}
	if o.MaxValueSize == 0 {
		o.MaxValueSize = DefaultMaxValueSize
	}
	if o.MaxValueSize < 0 || o.MaxValueSize > MaxMaxValueSize {
		return o, fmt.Errorf("MaxValueSize %d is not within 1..%d", o.MaxValueSize, MaxMaxValueSize)
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LogSize != 0 && o.LogSize < wal.MinSize {
		return o, fmt.Errorf("LogSize %d is below the minimum %d", o.LogSize, wal.MinSize)
	}
	if o.walSize == 0 {
		o.walSize = o.LogSize
	}
	if o.walSize == 0 {
		o.walSize = wal.DefaultSize
	}
	if o.CountHold != nil {
		o.countInline = -1
	}
	if o.countInline == 0 {
		o.countInline = countInlineSize
	}
	if o.TombstoneTTL < 0 || o.PurgeLogTTL < 0 {
		return o, fmt.Errorf("TombstoneTTL %s or PurgeLogTTL %s is negative", o.TombstoneTTL, o.PurgeLogTTL)
	}
	if o.TombstoneTTL > 0 && o.PurgeLogTTL == 0 {
		o.PurgeLogTTL = DefaultPurgeLogTTL
	}
	return o, nil
}

// Store is an open data file. Its methods are safe for concurrent use.
type Store struct {
	path    string
	opts    Options
	log     hclog.Logger
	db      *bolt.DB
	nodeID  NodeID
	storeID NodeID

	lamport atomic.Uint64 // L

	reqs      chan *request
	stop      chan struct{} // closed by Close once no caller can submit: the committer drains and exits
	done      chan struct{} // closed when the committer has exited
	closing   chan struct{} // closed when Close starts: wakes watchers
	inflight  sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
	commitMu  sync.Mutex // held over a batch, from transaction to publish; Check takes it
	company   company    // recent batches, for the next one (company.go)
	wal       *wal.Log   // written by the committer only

	pend *wal.Overlay[Event] // batches logged, not yet flushed, and their flush (flush.go); guarded by mu

	commits, requests       atomic.Uint64
	purged, dropped         atomic.Uint64 // tombstones purged; records Apply dropped (purge.go)
	expired                 atomic.Uint64 // expire events logged (ttl.go)
	refusedClock, refusedVV atomic.Uint64 // records validate refused: lamport too far ahead; bad version vector

	purger   *purger                  // purges expired tombstones (purge.go)
	lifes    *lifetimes               // deadlines of records with a TTL (ttl.go)
	epoch    atomic.Uint64            // this boot's epoch (NextEpoch), for ephemeral records
	liveness atomic.Pointer[Liveness] // whether another node's boot runs (ephemeral.go)
	diskFull atomic.Bool              // the last commit failed for lack of space (logged once)
	space    *space                   // the reserve, and what a full disk still admits (space.go)

	early atomic.Pointer[EarlyFunc] // told of local writes before their commit (commit.go)

	mu         sync.RWMutex  // guards what follows
	notify     chan struct{} // closed and replaced by every commit that logs events
	closed     bool
	reserved   uint64
	lastIndex  uint64
	firstIndex uint64 // first index in the log; lastIndex+1 when it is empty
	// keys: live (non-tombstone) records; while counting (counting.go),
	// how many more there are than in the file at Open (wrapping).
	keys uint64
	// dig: the digest tree; while counting, the changes since Open.
	dig *digest
	// fromSnapshot: Open loaded the digest from the file's snapshot
	// rather than rebuilding it (digest.go).
	fromSnapshot bool
	purgeLogN    int64    // entries in the purge log
	count        *counter // the records being counted in the background; nil once counted (counting.go)

	counted chan struct{} // closed once the digest tree and key count are complete (Counted)
}

// Open opens the store file at path, creating it (0600, and its directory,
// 0700) with a fresh node id and store id when missing. It takes the file's
// lock, waiting up to LockTimeout (then ErrLocked), checks the format
// (ErrFormat) and loads the digest tree: from the snapshot the last Close
// wrote when no write came after it, else built in the background while
// the store serves (counting.go: Counting, Counted).
func Open(path string, opts Options) (*Store, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         opts.LockTimeout,
		InitialMmapSize: countMmap(path, opts.countInline),
		// Every commit writes the freelist: without it (NoFreelistSync,
		// as etcd does) bbolt rebuilds it at open by walking every page
		// of the file, 0.3–0.7 s at a million keys after a crash, while
		// writing it cost a flush nothing measurable (docs/ARCHITECTURE.md,
		// "The digest at restart").
		FreelistType: bolt.FreelistMapType,
		NoSync:       opts.NoSync,
	})
	if err != nil {
		return nil, openError(path, err)
	}
	s := &Store{
		path:    path,
		opts:    opts,
		log:     opts.Logger.Named("store"),
		db:      db,
		reqs:    make(chan *request, 1024),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		closing: make(chan struct{}),
		notify:  make(chan struct{}),
		counted: make(chan struct{}),
		dig:     new(digest),
		purger:  newPurger(),
		lifes:   newLifetimes(opts.Now()),
		space:   newSpace(path, opts.walSize, opts.Logger.Named("store")),
	}
	s.pend = s.newOverlay()
	if err := s.start(); err != nil {
		if s.count != nil {
			_ = s.count.tx.Rollback()
		}
		if s.wal != nil {
			s.wal.Close()
		}
		db.Close()
		return nil, err
	}
	counting := s.count != nil
	if counting {
		go s.runCount(s.count)
	} else {
		close(s.counted)
	}
	go s.run()
	go s.runFlusher()
	go s.runPurger()
	go s.runExpirer()
	s.log.Debug("opened", "path", path, "node", s.nodeID, "keys", s.Keys(), "lamport", s.Lamport(), "last_index", s.lastIndex,
		"digest_snapshot", s.fromSnapshot, "counting", counting)
	return s, nil
}

// start lays out or checks the file, replays the log into it, and loads
// what is kept in memory.
func (s *Store) start() error {
	if err := s.init(); err != nil {
		return err
	}
	var err error
	if s.storeID, err = s.readStoreID(); err != nil {
		return err
	}
	if s.wal, err = wal.Open(walPath(s.path), s.opts.walSize, s.storeID, s.opts.NoSync); err != nil {
		return err
	}
	s.allocate()
	replayed, err := s.replay()
	if err != nil {
		return err
	}
	if err := s.load(replayed); err != nil {
		return err
	}
	if replayed != nil {
		s.pend.Replayed(replayed)
		s.kickFlush()
	}
	return nil
}

// allocate gives the log's ring and the space reserve their blocks, the
// ring first: a ring the disk has no room for gets the reserve's
// (docs/ARCHITECTURE.md, "A full disk").
func (s *Store) allocate() {
	if !s.wal.Allocated() {
		if err := os.Remove(s.space.path); err == nil {
			s.wal.Preallocate()
		}
	}
	if !s.wal.Allocated() {
		s.log.Warn("the write-ahead log could not be allocated: commits may fail while the disk is full", "path", s.wal.Path())
		s.space.refresh(s.wal)
		return
	}
	if !s.space.hold() {
		s.space.refresh(s.wal)
	}
}

// walPath is the log's file next to the store's.
func walPath(path string) string { return path + "-wal" }

func (s *Store) readStoreID() (id NodeID, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		id, err = metaID(tx.Bucket(bucketMeta), metaStoreID)
		return err
	})
	return id, err
}

func openError(path string, err error) error {
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("open %s: %w", path, ErrLocked)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch):
		return fmt.Errorf("open %s: %w: %w", path, ErrFormat, err)
	case errors.Is(err, berrors.ErrChecksum):
		return fmt.Errorf("open %s: %w: %w", path, ErrCorrupt, err)
	}
	return fmt.Errorf("open %s: %w", path, err)
}

// init checks the format of an existing file, or lays out a new one.
func (s *Store) init() error {
	var fresh bool
	var version uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			k, _ := tx.Cursor().First()
			fresh = k == nil
			if !fresh {
				return fmt.Errorf("%s: %w: no meta bucket, not a store file", s.path, ErrFormat)
			}
			return nil
		}
		var err error
		version, err = s.checkFormat(tx)
		return err
	})
	if err != nil {
		return err
	}
	if !fresh {
		if version == FormatVersion {
			return nil
		}
		return s.db.Update(func(tx *bolt.Tx) error {
			if err := s.upgrade(tx); err != nil {
				return err
			}
			return tx.Bucket(bucketMeta).Put(metaFormat, u64(FormatVersion))
		})
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketKV, bucketKeyHash, bucketChanges, bucketTombs, bucketPurged, bucketTTL} {
			if _, err := tx.CreateBucket(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		node, store := NewNodeID(), NewNodeID()
		return errors.Join(
			meta.Put(metaFormat, u64(FormatVersion)),
			meta.Put(metaNodeID, node[:]),
			meta.Put(metaStoreID, store[:]),
			meta.Put(metaReserved, u64(0)),
			meta.Put(metaLast, u64(0)),
		)
	})
}

// upgrade adds what versions 1 to 3 lacked: the tombstone index, the
// purge log and the deadlines.
func (s *Store) upgrade(tx *bolt.Tx) error {
	if tx.Bucket(bucketTTL) == nil {
		if _, err := tx.CreateBucket(bucketTTL); err != nil {
			return err
		}
	}
	if tx.Bucket(bucketPurged) == nil {
		if _, err := tx.CreateBucket(bucketPurged); err != nil {
			return err
		}
	}
	if tx.Bucket(bucketTombs) != nil {
		return nil
	}
	if _, err := tx.CreateBucket(bucketTombs); err != nil {
		return err
	}
	return indexTombstones(tx)
}

// checkFormat returns the file's format version: FormatVersion, or 1 or 2
// (upgraded by init).
func (s *Store) checkFormat(tx *bolt.Tx) (uint64, error) {
	v := tx.Bucket(bucketMeta).Get(metaFormat)
	if len(v) != 8 {
		return 0, fmt.Errorf("%s: %w: no format version", s.path, ErrFormat)
	}
	f := binary.BigEndian.Uint64(v)
	if f > FormatVersion || f == 0 {
		return 0, fmt.Errorf("%s: %w: format %d, this build reads up to %d", s.path, ErrFormat, f, FormatVersion)
	}
	need := [][]byte{bucketKV, bucketKeyHash, bucketChanges}
	if f >= 3 {
		need = append(need, bucketTombs, bucketPurged)
	}
	if f >= 4 {
		need = append(need, bucketTTL)
	}
	for _, name := range need {
		if tx.Bucket(name) == nil {
			return 0, fmt.Errorf("%s: %w: bucket %s missing", s.path, ErrCorrupt, name)
		}
	}
	return f, nil
}

// load reads the meta values and what is kept in memory, with the
// batches replayed from the log (nil if none) on top of the file: the
// digest tree and key count from a current snapshot, else only the
// replayed changes, and a read transaction of the file as it is now is
// left in s.count for the build that counts the rest (counting.go).
func (s *Store) load(replayed *pendingSet) error {
	tx, err := s.db.Begin(false)
	if err != nil {
		return err
	}
	if err := s.loadTx(tx, replayed); err != nil || s.count == nil {
		_ = tx.Rollback()
		s.count = nil
		return err
	}
	return nil
}

func (s *Store) loadTx(tx *bolt.Tx, replayed *pendingSet) error {
	meta := tx.Bucket(bucketMeta)
	var err error
	if s.nodeID, err = metaID(meta, metaNodeID); err != nil {
		return err
	}
	if s.storeID, err = metaID(meta, metaStoreID); err != nil {
		return err
	}
	s.reserved = metaU64(meta, metaReserved)
	s.lastIndex = metaU64(meta, metaLast)
	s.firstIndex = s.lastIndex + 1
	if k, _ := tx.Bucket(bucketChanges).Cursor().First(); k != nil {
		s.firstIndex = binary.BigEndian.Uint64(k)
	}
	s.purgeLogN = countPurgeLog(tx)
	lives := map[string]ttlHead{}
	maxL, fast, err := s.loadSnapshot(tx, lives)
	if err != nil {
		return err
	}
	s.fromSnapshot = fast
	switch {
	case fast:
	case tx.Size() <= s.opts.countInline:
		// A small file is counted here, at once (counting.go).
		maxL, err = s.rebuild(tx, s.dig, &s.keys, func(k []byte, hash Hash, h recordHead) error {
			noteLife(lives, string(k), hash, h)
			return nil
		})
		if err != nil {
			return err
		}
	default:
		// The records with a TTL whose deadline was persisted (bucket
		// ttl); the build gives the others theirs (counting.go).
		if _, err := ttlRecords(tx, lives); err != nil {
			return err
		}
		s.count = newCounter(tx)
	}
	if replayed != nil {
		l, err := s.overlay(tx, replayed, lives)
		if err != nil {
			return err
		}
		maxL = max(maxL, l)
	}
	if err := s.restoreLives(tx, lives); err != nil {
		return err
	}
	s.lamport.Store(max(s.reserved, maxL))
	return nil
}

// overlay applies the replayed batches to what load read from the file:
// the digest tree, the key count, the reservation and the change-log
// bounds. It returns the largest lamport they hold.
func (s *Store) overlay(tx *bolt.Tx, p *pendingSet, lives map[string]ttlHead) (maxL uint64, err error) {
	kv := tx.Bucket(bucketKV)
	for key, r := range p.Recs {
		h, err := decodeHead(r.Raw)
		if err != nil {
			return 0, fmt.Errorf("%w: logged record %q: %v", ErrCorrupt, key, err)
		}
		var was Hash
		if old := kv.Get([]byte(key)); old != nil {
			was = hashBytes(old)
			if oh, err := decodeHead(old); err == nil && !oh.Deleted {
				s.keys--
			}
		}
		if !h.Deleted {
			s.keys++
		}
		noteLife(lives, key, r.Hash, h)
		s.dig.update(r.KeyHash, was, r.Hash)
		maxL = max(maxL, h.Lamport)
	}
	s.dig.computeRoot()
	s.reserved = max(s.reserved, p.Reserved)
	s.lastIndex, s.firstIndex = p.Last, p.First
	return maxL, nil
}

// rebuild computes the digest tree and live key count from the kv bucket,
// and returns the largest lamport stored; each (nil: none) is called with
// every record, and an error it returns ends the walk. The build
// (counting.go) and Check use it.
func (s *Store) rebuild(tx *bolt.Tx, d *digest, keys *uint64, each func(k []byte, hash Hash, h recordHead) error) (maxL uint64, err error) {
	err = tx.Bucket(bucketKV).ForEach(func(k, v []byte) error {
		h, err := decodeHead(v)
		if err != nil {
			return fmt.Errorf("%w: record %q: %v", ErrCorrupt, k, err)
		}
		hash := hashBytes(v)
		if each != nil {
			if err := each(k, hash, h); err != nil {
				return err
			}
		}
		d.update(KeyHash(string(k)), Hash{}, hash)
		if !h.Deleted {
			*keys++
		}
		maxL = max(maxL, h.Lamport)
		return nil
	})
	d.computeRoot()
	return maxL, err
}

// Close stops the store: new calls get ErrClosed, watchers return
// ErrClosed, writes already submitted are committed, everything is
// written into the data file, and the file is closed. It is safe to call
// more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.stopCount()
		s.mu.Lock()
		s.closed = true
		close(s.closing)
		s.mu.Unlock()
		s.inflight.Wait()
		s.purger.halt()
		close(s.stop)
		<-s.done
		lerr := s.haltExpirer()
		s.pend.Stop()
		// Everything into the file; then the log holds nothing the file
		// needs (the closed store is its data file alone) and stays,
		// marked closed, so that the next open writes into blocks already
		// written (docs/ARCHITECTURE.md, "The store"). One that cannot be
		// marked goes.
		err := errors.Join(s.flushAll(), lerr)
		if err == nil && !s.Counting() {
			// The next Open loads the digest instead of reading every
			// record (digest.go); without it (or when Close cut the count
			// short), it counts again.
			if serr := s.writeSnapshot(); serr != nil {
				s.log.Warn("writing the digest snapshot; the next open rebuilds it", "error", serr)
			}
		}
		if err != nil {
			s.wal.Close()
		} else if werr := s.wal.CloseClean(); werr != nil {
			if rerr := os.Remove(s.wal.Path()); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				s.log.Warn("removing the write-ahead log", "error", errors.Join(werr, rerr))
			}
		}
		s.closeErr = errors.Join(err, s.db.Close())
	})
	return s.closeErr
}

// Path returns the file's path.
func (s *Store) Path() string { return s.path }

// FileSizes returns the sizes in bytes of the data file and of the
// write-ahead log (its ring, allocated whole), for metrics.
func (s *Store) FileSizes() (data, log int64, err error) {
	fi, err := os.Stat(s.path)
	if err != nil {
		return 0, 0, err
	}
	li, err := os.Stat(walPath(s.path))
	if err != nil {
		return fi.Size(), 0, err
	}
	return fi.Size(), li.Size(), nil
}

// NodeID returns this node's id, created with the file.
func (s *Store) NodeID() NodeID { return s.nodeID }

// StoreID returns the random id of this data file, created with it. A
// restored or rebuilt file has a new one.
func (s *Store) StoreID() NodeID { return s.storeID }

// Keys returns the number of live (non-tombstone) keys; while the store
// is Counting, those counted so far.
func (s *Store) Keys() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if c := s.count; c != nil {
		return uint64(max(0, int64(c.counted.Load())+int64(s.keys)))
	}
	return s.keys
}

// Stats are counters for metrics.
type Stats struct {
	Commits  uint64 // batches committed (or failed)
	Requests uint64 // writes, applies and reservations they carried
	Flushes  uint64 // flushes of logged batches into the data file (or failed ones)
	Purged   uint64 // expired tombstones purged
	Dropped  uint64 // received records not stored: expired tombstones, deleted values coming back
	Expired  uint64 // records whose deadline passed here (expire events logged)
	// Records refused as hostile (validate): a lamport more than
	// MaxClockJump ahead of the clock; a version vector too large or with
	// an entry above the record's lamport.
	RefusedClockJump, RefusedVV uint64
}

// Stats returns the counters since Open.
func (s *Store) Stats() Stats {
	return Stats{
		Commits: s.commits.Load(), Requests: s.requests.Load(), Flushes: s.pend.Flushes(),
		Purged: s.purged.Load(), Dropped: s.dropped.Load(), Expired: s.expired.Load(),
		RefusedClockJump: s.refusedClock.Load(), RefusedVV: s.refusedVV.Load(),
	}
}

func metaID(b *bolt.Bucket, name []byte) (NodeID, error) {
	var id NodeID
	v := b.Get(name)
	if len(v) != len(id) {
		return id, fmt.Errorf("%w: meta %s has %d bytes", ErrCorrupt, name, len(v))
	}
	copy(id[:], v)
	return id, nil
}

func metaU64(b *bolt.Bucket, name []byte) uint64 {
	v := b.Get(name)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func u64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// noteLife adds a current record with a TTL to lives (or removes the
// file's when a replayed record without one replaces it).
func noteLife(lives map[string]ttlHead, key string, hash Hash, h recordHead) {
	if h.TTL <= 0 || h.Deleted {
		delete(lives, key)
		return
	}
	lives[key] = ttlHead{hash: hash, at: h.At, ttl: h.TTL}
}
