package seal

import (
	"bufio"
	"bytes"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"

	"github.com/cloudknowledge/ck/daemon/wire"
)

// KeySize is the length of a cluster key: AES-256.
const KeySize = 32

// maxKeyringFile bounds what LoadKeyringFile reads: a keyring is a few
// lines; anything much larger is the wrong file.
const maxKeyringFile = 1 << 20

// ParseKey decodes a cluster key: 32 bytes in padded standard base64, as
// the encrypt setting and each line of a keyring file hold it. Surrounding
// space is ignored. Errors wrap ErrBadKey and never quote the key.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	key, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		// base64's own error quotes nothing but a position; still, say it
		// in our words.
		return nil, fmt.Errorf("%w: not padded standard base64", ErrBadKey)
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrBadKey, len(key), KeySize)
	}
	return key, nil
}

// GenerateKey returns a new random cluster key, encoded as ParseKey reads
// it.
func GenerateKey() string {
	var k [KeySize]byte
	rand.Read(k[:])
	return base64.StdEncoding.EncodeToString(k[:])
}

// Fingerprint shows a key id: 8 hex digits. It is what logs and status
// may show of a key; the id reveals nothing usable about the key.
func Fingerprint(id [4]byte) string { return hex.EncodeToString(id[:]) }

// ringKey is one key of a ring and what is derived from it once.
type ringKey struct {
	id     [4]byte
	secret []byte
	prk    []byte // HKDF-Extract(secret): every subkey is an Expand of it
}

func newRingKey(secret []byte) (*ringKey, error) {
	if len(secret) != KeySize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrBadKey, len(secret), KeySize)
	}
	s := bytes.Clone(secret)
	prk, err := hkdf.Extract(sha256.New, s, nil)
	if err != nil {
		return nil, err
	}
	return &ringKey{id: wire.KeyIDOf(s), secret: s, prk: prk}, nil
}

// ring is one immutable generation of a Keyring.
type ring struct {
	keys []*ringKey // primary first, then in the order given
	// slots indexes keys by their id's first byte. Ids are hash prefixes,
	// so a slot holds at most one key but by rare accident, and finding a
	// key — or finding that there is none — costs the same whatever the
	// ring's size (a small map would scan every key when the id is
	// unknown).
	slots [256][]*ringKey
}

func (r *ring) lookup(id [4]byte) *ringKey {
	for _, k := range r.slots[id[0]] {
		if k.id == id {
			return k
		}
	}
	return nil
}

func (r *ring) add(k *ringKey) {
	r.keys = append(r.keys, k)
	r.slots[k.id[0]] = append(r.slots[k.id[0]], k)
}

// Keyring holds the cluster keys: the primary, which seals, and others
// that are still accepted. A frame names its key by id, so opening costs
// one table lookup and at most one AEAD attempt whatever the ring's size.
//
// Rotation without downtime: add the new key to every node's ring (as an
// other); once all have it, make it primary everywhere; once all have
// switched, remove the old one. Each step is a Swap (or a reload of the
// keyring file), and every node accepts both keys throughout.
//
// A Keyring is safe for concurrent use. The keys never leave it: String,
// errors and logs show fingerprints only.
type Keyring struct {
	cur atomic.Pointer[ring]
}

// NewKeyring returns a ring sealing with primary and also opening with
// others. A key given twice counts once; two different keys sharing a key
// id (a 1 in 2^32 accident) are refused, since a frame could not say which
// it means.
func NewKeyring(primary []byte, others ...[]byte) (*Keyring, error) {
	r, err := newRing(primary, others)
	if err != nil {
		return nil, err
	}
	k := &Keyring{}
	k.cur.Store(r)
	return k, nil
}

func newRing(primary []byte, others [][]byte) (*ring, error) {
	r := &ring{}
	for i, secret := range append([][]byte{primary}, others...) {
		rk, err := newRingKey(secret)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		if have := r.lookup(rk.id); have != nil {
			if subtle.ConstantTimeCompare(have.secret, rk.secret) == 1 {
				continue
			}
			return nil, fmt.Errorf("key %d: %w: another key has the same key id %s", i+1, ErrBadKey, Fingerprint(rk.id))
		}
		r.add(rk)
	}
	return r, nil
}

// Swap replaces k's keys with from's, atomically: a frame is opened
// either with the old keys or with the new ones, never a mixture, and
// nothing is interrupted. from is not modified.
func (k *Keyring) Swap(from *Keyring) {
	n := from.cur.Load()
	for {
		old := k.cur.Load()
		r := &ring{}
		for _, nk := range n.keys {
			// Keep the old generation's object for an unchanged key, so
			// that subkeys cached under it stay valid across a reload.
			if o := old.lookup(nk.id); o != nil && subtle.ConstantTimeCompare(o.secret, nk.secret) == 1 {
				nk = o
			}
			r.add(nk)
		}
		if k.cur.CompareAndSwap(old, r) {
			return
		}
	}
}

// ReloadFile reads path as LoadKeyringFile does and, if it is valid, swaps
// its keys in. On error k keeps its keys.
func (k *Keyring) ReloadFile(path string) error {
	n, err := LoadKeyringFile(path)
	if err != nil {
		return err
	}
	k.Swap(n)
	return nil
}

// PrimaryID is the id of the key new frames are sealed with.
func (k *Keyring) PrimaryID() [4]byte { return k.cur.Load().keys[0].id }

// IDs lists the ring's key ids, primary first.
func (k *Keyring) IDs() [][4]byte {
	r := k.cur.Load()
	ids := make([][4]byte, len(r.keys))
	for i, rk := range r.keys {
		ids[i] = rk.id
	}
	return ids
}

// Len is the number of keys in the ring.
func (k *Keyring) Len() int { return len(k.cur.Load().keys) }

// String shows the ring by fingerprints, primary first: never the keys.
func (k *Keyring) String() string {
	r := k.cur.Load()
	fps := make([]string, len(r.keys))
	for i, rk := range r.keys {
		fps[i] = Fingerprint(rk.id)
	}
	return "keyring[" + strings.Join(fps, " ") + "]"
}

// GoString keeps %#v from printing the keys.
func (k *Keyring) GoString() string { return k.String() }

// lookup returns the key with id, or nil.
func (k *Keyring) lookup(id [4]byte) *ringKey { return k.cur.Load().lookup(id) }

// primary returns the sealing key.
func (k *Keyring) primary() *ringKey { return k.cur.Load().keys[0] }

// LoadKeyringFile reads a keyring file: one key a line as ParseKey reads
// it, the primary first; blank lines and lines starting with # are
// ignored. A file that group or others may read or write is refused
// (ErrKeyFileMode) before it is read: chmod 600 it. Errors name the file
// and the line, never a key.
func LoadKeyringFile(path string) (*Keyring, error) { return loadKeyringFile(path, -1) }

// loadKeyringFile is LoadKeyringFile; with owner >= 0 it also refuses a
// file owned by another uid (ErrKeyFileOwner).
func loadKeyringFile(path string, owner int) (*Keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keyring file: %w", err)
	}
	defer f.Close()
	// Stat the open file, not the path, so the mode checked is the mode of
	// what is read.
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keyring file: %w", err)
	}
	if err := checkKeyFile(path, fi, owner); err != nil {
		return nil, err
	}
	keys, err := parseKeyring(io.LimitReader(f, maxKeyringFile+1))
	if err != nil {
		return nil, fmt.Errorf("keyring file %s: %w", path, err)
	}
	r, err := NewKeyring(keys[0], keys[1:]...)
	if err != nil {
		return nil, fmt.Errorf("keyring file %s: %w", path, err)
	}
	return r, nil
}

// checkKeyFile refuses what must not be read as a keyring: not a regular
// file, open to group or others, too large, or (owner >= 0) owned by
// another uid.
func checkKeyFile(path string, fi os.FileInfo, owner int) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("keyring file %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %04o; make it private to ckd's user (chmod 600 %s)",
			ErrKeyFileMode, path, perm, path)
	}
	if owner >= 0 {
		if uid, ok := fileOwner(fi); ok && uid != owner {
			return fmt.Errorf("%w: %s belongs to uid %d, not to ckd's user (uid %d): whoever owns it chooses "+
				"the cluster this node trusts; remove it to have a new key made, or chown it", ErrKeyFileOwner, path, uid, owner)
		}
	}
	if fi.Size() > maxKeyringFile {
		return fmt.Errorf("keyring file %s: %d bytes: too large for a keyring", path, fi.Size())
	}
	return nil
}

func parseKeyring(r io.Reader) ([][]byte, error) {
	var keys [][]byte
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxKeyringFile)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		key, err := ParseKey(s)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w (one key a line; comments on lines of their own)", line, err)
		}
		keys = append(keys, key)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("after line %d: %w", line, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no keys in the file", ErrBadKey)
	}
	return keys, nil
}
