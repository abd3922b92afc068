package seal

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

// HandshakeTimeout bounds a stream's handshake: a peer that sends nothing
// ties up a connection this long, no longer.
const HandshakeTimeout = 5 * time.Second

// handshakeTimeout is HandshakeTimeout, shortened by tests.
var handshakeTimeout = HandshakeTimeout

// streamVersion is the handshake's version. A peer of another version is
// refused (wrapping wire.ErrVersion); there is nothing to negotiate yet.
const streamVersion byte = 1

// A hello, each side's first frame, in the clear:
//
//	offset size
//	     0    3 "CKS"
//	     3    1 streamVersion
//	     4    1 role: 'C' client, 'S' server (a reflected hello is refused)
//	     5    4 key id (the client's primary; the server echoes it)
//	     9   16 node id
//	    25   32 random nonce
const (
	helloMagic = "CKS"
	helloSize  = 57
	roleClient = 'C'
	roleServer = 'S'
)

// testNonces, when set, fills handshake nonces in place of crypto/rand,
// so tests can record reproducible sessions.
var testNonces atomic.Pointer[func([]byte)]

func randRead(b []byte) {
	if f := testNonces.Load(); f != nil {
		(*f)(b)
		return
	}
	rand.Read(b)
}

type hello struct {
	role  byte
	keyID [4]byte
	id    store.NodeID
	nonce [32]byte
}

func (h hello) marshal() []byte {
	b := make([]byte, 0, helloSize)
	b = append(b, helloMagic...)
	b = append(b, streamVersion, h.role)
	b = append(b, h.keyID[:]...)
	b = append(b, h.id[:]...)
	return append(b, h.nonce[:]...)
}

func parseHello(b []byte, role byte) (hello, error) {
	if len(b) != helloSize || string(b[:3]) != helloMagic {
		return hello{}, fmt.Errorf("%w: not a ckd stream hello", ErrHandshake)
	}
	if b[3] != streamVersion {
		return hello{}, fmt.Errorf("%w: %w: stream version %d, want %d", ErrHandshake, wire.ErrVersion, b[3], streamVersion)
	}
	if b[4] != role {
		return hello{}, fmt.Errorf("%w: hello of role %q, want %q", ErrHandshake, b[4], role)
	}
	return hello{
		role:  b[4],
		keyID: [4]byte(b[5:9]),
		id:    store.NodeID(b[9:25]),
		nonce: [32]byte(b[25:57]),
	}, nil
}

// Client runs the client's side of the handshake on conn, a fresh
// connection to peer (zero: any node of the cluster), and returns conn
// wrapped: everything written is sealed, everything read authenticated.
//
// The client sends its hello under its primary key's id, reads the
// server's, and sends its finished record; it does not wait for the
// server's, which comes ahead of the server's first record and which its
// first Read checks before returning any data — so a fetch costs one
// round trip more than in the clear, not two. Nothing in the handshake
// is written unless the other side is reading it, so it works on
// synchronous connections (net.Pipe) too.
//
// The handshake runs under a HandshakeTimeout deadline, which is then
// cleared: set deadlines after it. On error the caller closes conn.
func Client(conn net.Conn, ring *Keyring, self, peer store.NodeID, cluster string) (*Conn, error) {
	conn.SetDeadline(time.Now().Add(handshakeTimeout))
	k := ring.primary()
	me := hello{role: roleClient, keyID: k.id, id: self}
	randRead(me.nonce[:])
	if err := wire.WriteFrame(conn, me.marshal()); err != nil {
		return nil, fmt.Errorf("%w: sending hello: %w", ErrHandshake, err)
	}
	b, err := wire.ReadFrame(conn, helloSize)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: %w: the peer closed the connection: it does not hold key %s, or refused us",
				ErrHandshake, wire.ErrKey, Fingerprint(k.id))
		}
		return nil, fmt.Errorf("%w: reading the peer's hello: %w", ErrHandshake, err)
	}
	them, err := parseHello(b, roleServer)
	if err != nil {
		return nil, err
	}
	if them.keyID != k.id {
		return nil, fmt.Errorf("%w: the peer answered with key %s, we offered %s", ErrHandshake, Fingerprint(them.keyID), Fingerprint(k.id))
	}
	if !peer.IsZero() && them.id != peer {
		return nil, fmt.Errorf("%w: reached node %s, expected %s", ErrHandshake, them.id, peer)
	}
	c, err := newConn(conn, k, me, them, cluster, true)
	if err != nil {
		return nil, err
	}
	c.wmu.Lock()
	err = c.writeRecord(recFin, nil)
	c.wmu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("%w: sending finished: %w", ErrHandshake, err)
	}
	conn.SetDeadline(time.Time{})
	return c, nil
}

// Server runs the server's side of the handshake on conn, a connection a
// peer opened, and returns it wrapped, with the peer's node id — proven:
// only a holder of the key named in the hello could have sent the
// finished record it checked. A client naming a key this node does not
// hold gets no answer but the connection's close, and a client that
// cannot prove it holds the key gets nothing after the server's hello.
// The server's own finished record goes out ahead of its first Write (or
// Close).
//
// Deadlines as for Client. On error the caller closes conn.
func Server(conn net.Conn, ring *Keyring, self store.NodeID, cluster string) (*Conn, store.NodeID, error) {
	conn.SetDeadline(time.Now().Add(handshakeTimeout))
	b, err := wire.ReadFrame(conn, helloSize)
	if err != nil {
		return nil, store.NodeID{}, fmt.Errorf("%w: reading the peer's hello: %w", ErrHandshake, err)
	}
	them, err := parseHello(b, roleClient)
	if err != nil {
		return nil, store.NodeID{}, err
	}
	k := ring.lookup(them.keyID)
	if k == nil {
		return nil, store.NodeID{}, fmt.Errorf("%w: %w: node %s offers key %s, not in the keyring",
			ErrHandshake, wire.ErrKey, them.id, Fingerprint(them.keyID))
	}
	me := hello{role: roleServer, keyID: k.id, id: self}
	randRead(me.nonce[:])
	if err := wire.WriteFrame(conn, me.marshal()); err != nil {
		return nil, store.NodeID{}, fmt.Errorf("%w: sending hello: %w", ErrHandshake, err)
	}
	c, err := newConn(conn, k, them, me, cluster, false)
	if err != nil {
		return nil, store.NodeID{}, err
	}
	c.rmu.Lock()
	err = c.readRecord()
	c.rmu.Unlock()
	if err != nil {
		return nil, store.NodeID{}, fmt.Errorf("%w: node %s: %w", ErrHandshake, them.id, err)
	}
	// Our finished record goes out ahead of our first record (see
	// Conn.writeRecord): writing it now would block on a synchronous
	// connection (net.Pipe, the simulated network) whose client is not
	// reading yet — it is about to write its request.
	c.finPending = true
	conn.SetDeadline(time.Time{})
	return c, them.id, nil
}

// streamKeys derives the connection's two keys, one per direction:
// HKDF-SHA256(key, "stream" ‖ client id ‖ server id ‖ client nonce ‖
// server nonce ‖ version ‖ cluster name). Everything either hello said
// (but the key id, which the key itself implies) and the cluster name are
// in it, so a peer that saw a different handshake, or belongs to another
// cluster, derives different keys and its finished record fails.
func streamKeys(k *ringKey, client, server hello, cluster string) (c2s, s2c []byte, err error) {
	info := make([]byte, 0, 6+2*16+2*32+1+len(cluster))
	info = append(info, "stream"...)
	info = append(info, client.id[:]...)
	info = append(info, server.id[:]...)
	info = append(info, client.nonce[:]...)
	info = append(info, server.nonce[:]...)
	info = append(info, streamVersion)
	info = append(info, cluster...)
	okm, err := hkdf.Expand(sha256.New, k.prk, string(info), 2*KeySize)
	if err != nil {
		return nil, nil, fmt.Errorf("deriving stream keys: %w", err)
	}
	return okm[:KeySize], okm[KeySize:], nil
}
