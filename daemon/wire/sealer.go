package wire

import "crypto/sha256"

// Sealer protects frame bodies. Encode and Decode call it for every frame,
// so the keyed implementation (AES-256-GCM, seal.Datagram) replaces Plaintext
// without changing a caller. Implementations must be safe for concurrent
// use and must not block: they run on the receive path of every datagram.
type Sealer interface {
	// KeyID names the key Seal uses, written into every header so a
	// receiver tries one key, not its whole keyring. Zero means no key.
	KeyID() [4]byte

	// ClusterTag is written into every header in the clear: ClusterTag(name)
	// without a key; zero with one, whose sealer authenticates the name
	// instead.
	ClusterTag() [8]byte

	// Overhead is how many bytes Seal adds to a body, so a sender can tell
	// whether a message fits max_datagram before encoding it.
	Overhead() int

	// Seal returns the sealed body. hdr is the encoded header, the
	// authenticated data; Seal must not modify or keep it. Seal may use
	// body's storage for its result (as cipher.AEAD.Seal(body[:0], ...)
	// does) and Encode may then reuse it, so body is Seal's to destroy.
	Seal(hdr []byte, body []byte) ([]byte, error)

	// Open checks hdr (cluster, key id) and returns the opened body, or an
	// error wrapping ErrCluster, ErrKey or — only once the body has
	// authenticated — ErrReplay. It may decrypt in place and return a slice
	// of sealed; the caller does not use sealed afterwards. Open must
	// reject before allocating anything sized from the frame.
	Open(hdr Header, sealed []byte) ([]byte, error)
}

// ClusterTag is the tag naming cluster name on the wire: the first 8 bytes
// of SHA-256("ck-cluster" ‖ name). It keeps two clusters sharing a network
// apart; it is not a secret and proves nothing.
func ClusterTag(name string) [8]byte {
	h := sha256.New()
	h.Write([]byte("ck-cluster"))
	h.Write([]byte(name))
	var tag [8]byte
	copy(tag[:], h.Sum(nil))
	return tag
}

// KeyIDOf is the key id of a cluster key: the first 4 bytes of its SHA-256.
func KeyIDOf(key []byte) [4]byte {
	sum := sha256.Sum256(key)
	return [4]byte(sum[:4])
}

// Plaintext returns the Sealer of a cluster without a key: bodies travel in
// the clear, and frames are accepted only with the cluster's tag and no
// key id. It authenticates nothing; docs/PROTOCOL.md (Encryption and
// authentication) says when that is allowed.
func Plaintext(cluster string) Sealer { return plaintext{tag: ClusterTag(cluster)} }

type plaintext struct{ tag [8]byte }

var _ Sealer = plaintext{}

func (plaintext) KeyID() [4]byte        { return [4]byte{} }
func (p plaintext) ClusterTag() [8]byte { return p.tag }
func (plaintext) Overhead() int         { return 0 }

func (plaintext) Seal(_ []byte, body []byte) ([]byte, error) { return body, nil }

func (p plaintext) Open(h Header, sealed []byte) ([]byte, error) {
	// Without the key a sealed body is noise, whatever its tag says.
	if h.KeyID != ([4]byte{}) || h.Flags&FlagSealed != 0 {
		return nil, ErrKey
	}
	if h.Cluster != p.tag {
		return nil, ErrCluster
	}
	return sealed, nil
}
