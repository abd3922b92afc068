package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

// TagSize is what sealing adds to a body: the AES-GCM tag.
const TagSize = 16

// nonceSize is AES-GCM's standard nonce: 4 zero bytes ‖ 8-byte counter.
const nonceSize = 12

// maxSubkeys bounds the datagram subkey cache: one entry per (key,
// sender, boot epoch) heard lately. A miss costs a derivation (~2 µs).
const maxSubkeys = 1024

// testHookOpen, when set, is called before every AEAD open attempt on the
// datagram path, so tests can count them.
var testHookOpen atomic.Pointer[func()]

// Datagram is the keyed wire.Sealer (docs/PROTOCOL.md, Encryption and authentication): AES-256-GCM under a
// subkey per (key, sender, boot epoch), the header's counter as nonce,
// the header and the cluster name as authenticated data, and, if given a
// Replay, a replay filter applied to what authenticates. Safe for
// concurrent use; it never blocks except when the Replay persists a
// sender's mark (see Replay).
type Datagram struct {
	ring    *Keyring
	cluster string
	replay  *Replay
	cache   subkeyCache
	scratch sync.Pool // *scratch: per-call nonce and authenticated data
}

var _ wire.Sealer = (*Datagram)(nil)

// NewDatagram returns the sealer of a cluster's datagrams. replay may be
// nil (no replay filter: tests, benchmarks, tools that only read). The
// ring is shared, not copied: a Swap on it takes effect at once.
func NewDatagram(ring *Keyring, cluster string, replay *Replay) *Datagram {
	return &Datagram{ring: ring, cluster: cluster, replay: replay}
}

type scratch struct {
	nonce [nonceSize]byte
	ad    []byte
}

func (d *Datagram) getScratch() *scratch {
	if s, ok := d.scratch.Get().(*scratch); ok {
		return s
	}
	return &scratch{ad: make([]byte, 0, wire.HeaderSize+len(d.cluster))}
}

// String names the sealer by cluster and key fingerprints, never keys.
func (d *Datagram) String() string {
	return "seal.Datagram(" + d.cluster + ", " + d.ring.String() + ")"
}

// KeyID is the ring's primary key id: new frames are sealed with it.
func (d *Datagram) KeyID() [4]byte { return d.ring.PrimaryID() }

// ClusterTag is zero: with a key the cluster name is authenticated, not
// tagged in the clear.
func (d *Datagram) ClusterTag() [8]byte { return [8]byte{} }

// Overhead is the GCM tag.
func (d *Datagram) Overhead() int { return TagSize }

// Seal encrypts body in place (when its capacity allows) under the key
// hdr names, with hdr's counter as nonce. The counter must never repeat
// for one (sender, epoch): the sender's strictly increasing counter and
// boot epoch guarantee it.
func (d *Datagram) Seal(hdr []byte, body []byte) ([]byte, error) {
	if len(hdr) != wire.HeaderSize {
		return nil, fmt.Errorf("header of %d bytes, want %d", len(hdr), wire.HeaderSize)
	}
	h, err := wire.ParseHeader(hdr)
	if err != nil {
		return nil, err
	}
	if h.Flags&wire.FlagSealed == 0 || h.Cluster != ([8]byte{}) {
		return nil, errors.New("header not marked sealed, or carrying a cluster tag")
	}
	// The id in hdr, not the current primary: a Swap may have happened
	// since Encode asked for KeyID, and the header must name the key used.
	k := d.ring.lookup(h.KeyID)
	if k == nil {
		return nil, fmt.Errorf("%w: key %s left the keyring while sealing", wire.ErrKey, Fingerprint(h.KeyID))
	}
	aead, fresh, err := d.subkey(k, h.Sender, h.Epoch)
	if err != nil {
		return nil, err
	}
	if fresh {
		d.cache.put(d.ring, cacheKey{k, h.Sender, h.Epoch}, aead)
	}
	s := d.getScratch()
	defer d.scratch.Put(s)
	putNonce(&s.nonce, h.Counter)
	s.ad = append(append(s.ad[:0], hdr...), d.cluster...)
	return aead.Seal(body[:0], s.nonce[:], body, s.ad), nil
}

// Open authenticates and decrypts sealed in place. In order, each step
// cheaper than the next: a frame not marked sealed, or carrying a
// cluster tag, or naming a key id the ring lacks, is refused (wire.ErrKey)
// without any cryptography; otherwise exactly one AEAD open is tried, and
// only a frame that authenticates reaches the replay filter (ErrReplay).
// Nothing sized from the frame is allocated.
func (d *Datagram) Open(h wire.Header, sealed []byte) ([]byte, error) {
	if h.Flags&wire.FlagSealed == 0 || h.KeyID == ([4]byte{}) {
		return nil, errNotSealed
	}
	if h.Cluster != ([8]byte{}) {
		return nil, errTagged
	}
	k := d.ring.lookup(h.KeyID)
	if k == nil {
		return nil, errUnknownID
	}
	if len(sealed) < TagSize+1 {
		return nil, errShortTag
	}
	// Cache only what authenticates, so forged frames cannot evict the
	// subkeys of real peers.
	aead, fresh, err := d.subkey(k, h.Sender, h.Epoch)
	if err != nil {
		return nil, err
	}
	if hook := testHookOpen.Load(); hook != nil {
		(*hook)()
	}
	s := d.getScratch()
	putNonce(&s.nonce, h.Counter)
	s.ad, _ = h.AppendBinary(s.ad[:0])
	s.ad = append(s.ad, d.cluster...)
	body, err := aead.Open(sealed[:0], s.nonce[:], sealed, s.ad)
	d.scratch.Put(s)
	if err != nil {
		return nil, errAuth
	}
	if fresh {
		d.cache.put(d.ring, cacheKey{k, h.Sender, h.Epoch}, aead)
	}
	if d.replay != nil {
		if err := d.replay.Check(h.Sender, h.Epoch, h.Counter); err != nil {
			return nil, err
		}
	}
	return body, nil
}

func putNonce(n *[nonceSize]byte, counter uint64) {
	*n = [nonceSize]byte{}
	binary.BigEndian.PutUint64(n[4:], counter)
}

// subkey returns the AEAD of (k, sender, epoch), from the cache or, fresh,
// derived: HKDF-SHA256(key, info "dgram" ‖ sender ‖ epoch). The caller
// decides whether a fresh one is worth caching.
func (d *Datagram) subkey(k *ringKey, sender store.NodeID, epoch uint64) (a cipher.AEAD, fresh bool, err error) {
	if a := d.cache.get(cacheKey{k, sender, epoch}); a != nil {
		return a, false, nil
	}
	var info [len("dgram") + len(store.NodeID{}) + 8]byte
	n := copy(info[:], "dgram")
	n += copy(info[n:], sender[:])
	binary.BigEndian.PutUint64(info[n:], epoch)
	sub, err := hkdf.Expand(sha256.New, k.prk, string(info[:]), KeySize)
	if err != nil {
		return nil, false, fmt.Errorf("deriving a subkey: %w", err)
	}
	a, err = newGCM(sub)
	return a, true, err
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

type cacheKey struct {
	k      *ringKey
	sender store.NodeID
	epoch  uint64
}

// subkeyCache maps (key, sender, epoch) to its AEAD, bounded by
// maxSubkeys. Entries under keys that left the ring are swept out at the
// first insertion after the ring changed, so no subkey of a removed key
// outlives it for long.
type subkeyCache struct {
	mu    sync.RWMutex
	m     map[cacheKey]cipher.AEAD
	swept *ring // the ring generation last swept against
}

func (c *subkeyCache) get(k cacheKey) cipher.AEAD {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.m[k]
}

func (c *subkeyCache) put(kr *Keyring, k cacheKey, a cipher.AEAD) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; ok {
		return
	}
	if c.m == nil {
		c.m = make(map[cacheKey]cipher.AEAD)
	}
	if r := kr.cur.Load(); r != c.swept {
		for ck := range c.m {
			if r.lookup(ck.k.id) != ck.k {
				delete(c.m, ck)
			}
		}
		c.swept = r
	}
	if len(c.m) >= maxSubkeys {
		// Any entry will do: a miss costs only a derivation, and map
		// order spreads evictions around.
		for ck := range c.m {
			delete(c.m, ck)
			break
		}
	}
	c.m[k] = a
}
