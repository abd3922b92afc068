package seal

import (
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"time"

	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

// MaxRecord is the most plaintext one sealed stream record carries: Write
// cuts what it is given into records of at most this much. Records are
// framed as wire.WriteFrame frames (a 4-byte length, then the sealed
// record: type byte ‖ data, encrypted, ‖ tag).
const MaxRecord = 64 << 10

// maxSealedRecord is the largest frame a reader accepts after the hello.
const maxSealedRecord = 1 + MaxRecord + TagSize

// closeTimeout bounds sending the close record in Close.
const closeTimeout = 200 * time.Millisecond

// Record types, the first plaintext byte of every sealed record.
const (
	recData  byte = 0
	recClose byte = 1 // the sender is done: a clean end, not a truncation
	recFin   byte = 2 // the handshake's last word; record 0 each way, and only there
)

// Conn is a stream after its handshake: a net.Conn whose Write seals and
// whose Read authenticates. Record n of each direction is sealed with
// that direction's key and n as nonce, so a record dropped, repeated,
// reordered or altered fails the next Read (wire.ErrKey), and a stream
// cut short ends in ErrTruncated rather than io.EOF, which Read returns
// only after the peer's Close. Errors on a direction are sticky.
//
// Read and Write may run concurrently with each other and with Close; the
// deadline methods are the underlying connection's.
type Conn struct {
	raw   net.Conn
	peer  store.NodeID
	keyID [4]byte

	rmu    sync.Mutex
	rd     cipher.AEAD
	rseq   uint64
	rnonce [nonceSize]byte
	rbuf   []byte
	plain  []byte // opened and not yet read: a slice of rbuf
	rerr   error

	wmu        sync.Mutex
	wr         cipher.AEAD
	wseq       uint64
	wnonce     [nonceSize]byte
	wbuf       []byte
	werr       error
	finPending bool // the server's finished record is yet to go, ahead of its first record

	closeOnce sync.Once
	closeErr  error
}

var _ net.Conn = (*Conn)(nil)

func newConn(raw net.Conn, k *ringKey, client, server hello, cluster string, isClient bool) (*Conn, error) {
	c2s, s2c, err := streamKeys(k, client, server, cluster)
	if err != nil {
		return nil, err
	}
	w, r := c2s, s2c
	peer := server.id
	if !isClient {
		w, r, peer = s2c, c2s, client.id
	}
	c := &Conn{raw: raw, peer: peer, keyID: k.id}
	if c.wr, err = newGCM(w); err != nil {
		return nil, err
	}
	if c.rd, err = newGCM(r); err != nil {
		return nil, err
	}
	return c, nil
}

// Peer is the node at the other end, as the handshake named it (proven on
// the server's side at once; on the client's side by the first Read).
func (c *Conn) Peer() store.NodeID { return c.peer }

// KeyID is the id of the key the connection's keys derive from.
func (c *Conn) KeyID() [4]byte { return c.keyID }

// Write seals p in records of at most MaxRecord bytes and sends them.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), MaxRecord)]
		if err := c.writeRecord(recData, chunk); err != nil {
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, c.werr
}

// writeRecord seals and sends one record, after the finished record if
// that is still pending. c.wmu is held.
func (c *Conn) writeRecord(typ byte, data []byte) error {
	if c.werr != nil {
		return c.werr
	}
	if c.finPending {
		c.finPending = false
		if err := c.writeRecord(recFin, nil); err != nil {
			return err
		}
	}
	if c.wseq == math.MaxUint64 {
		c.werr = errors.New("stream sequence exhausted")
		return c.werr
	}
	need := 1 + len(data) + TagSize
	if cap(c.wbuf) < need {
		c.wbuf = make([]byte, 0, need)
	}
	b := append(append(c.wbuf[:0], typ), data...)
	binary.BigEndian.PutUint64(c.wnonce[4:], c.wseq)
	sealed := c.wr.Seal(b[:0], c.wnonce[:], b, nil)
	c.wseq++
	if err := wire.WriteFrame(c.raw, sealed); err != nil {
		// Part of a record may be out: nothing more can follow it.
		c.werr = err
		return err
	}
	return nil
}

// Read returns data the peer wrote, authenticated and in order.
func (c *Conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	for len(c.plain) == 0 {
		if c.rerr != nil {
			return 0, c.rerr
		}
		if err := c.readRecord(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.plain)
	c.plain = c.plain[n:]
	return n, nil
}

// readRecord reads, opens and acts on one record. c.rmu is held. An error
// is sticky (c.rerr) unless it is a timeout before the record's first
// byte, after which reading may resume.
func (c *Conn) readRecord() error {
	var prefix [4]byte
	if n, err := io.ReadFull(c.raw, prefix[:]); err != nil {
		switch {
		case n == 0 && errors.Is(err, os.ErrDeadlineExceeded):
			return err
		case n == 0 && err == io.EOF:
			err = fmt.Errorf("%w after record %d: %w", ErrTruncated, c.rseq, io.ErrUnexpectedEOF)
		case err == io.ErrUnexpectedEOF:
			err = fmt.Errorf("%w inside a record: %w", ErrTruncated, err)
		}
		c.rerr = err
		return err
	}
	size := binary.BigEndian.Uint32(prefix[:])
	if size > maxSealedRecord {
		c.rerr = fmt.Errorf("%w: stream record of %d bytes, at most %d", wire.ErrTooLarge, size, maxSealedRecord)
		return c.rerr
	}
	if size < 1+TagSize {
		c.rerr = fmt.Errorf("%w: stream record %d: %d bytes is too short", wire.ErrKey, c.rseq, size)
		return c.rerr
	}
	if cap(c.rbuf) < int(size) {
		c.rbuf = make([]byte, 0, size)
	}
	b := c.rbuf[:size]
	if _, err := io.ReadFull(c.raw, b); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			err = fmt.Errorf("%w inside a record: %w", ErrTruncated, io.ErrUnexpectedEOF)
		}
		c.rerr = err
		return err
	}
	binary.BigEndian.PutUint64(c.rnonce[4:], c.rseq)
	pt, err := c.rd.Open(b[:0], c.rnonce[:], b, nil)
	if err != nil {
		c.rerr = fmt.Errorf("%w: stream record %d does not authenticate", wire.ErrKey, c.rseq)
		if c.rseq == 0 {
			c.rerr = fmt.Errorf("%w: the peer's finished record: %w", ErrHandshake, c.rerr)
		}
		return c.rerr
	}
	seq := c.rseq
	c.rseq++
	typ, data := pt[0], pt[1:]
	switch {
	case seq == 0 && (typ != recFin || len(data) != 0):
		c.rerr = fmt.Errorf("%w: the peer's first record is not its finished record", ErrHandshake)
	case seq == 0:
		// The peer derived our keys: it holds the key and saw our hello.
	case typ == recData:
		c.plain = data
	case typ == recClose:
		c.rerr = io.EOF
	default:
		c.rerr = fmt.Errorf("%w: stream record %d of type %d", wire.ErrMalformed, seq, typ)
	}
	return c.rerr
}

// Close sends the close record, unless a Write is in progress (Close must
// not wait on a peer that stopped reading), and closes the connection.
// It is safe to call more than once.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		if c.wmu.TryLock() {
			if c.werr == nil {
				c.raw.SetWriteDeadline(time.Now().Add(closeTimeout))
				c.writeRecord(recClose, nil)
			}
			c.werr = net.ErrClosed
			c.wmu.Unlock()
		}
		c.closeErr = c.raw.Close()
	})
	return c.closeErr
}

func (c *Conn) LocalAddr() net.Addr                { return c.raw.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr               { return c.raw.RemoteAddr() }
func (c *Conn) SetDeadline(t time.Time) error      { return c.raw.SetDeadline(t) }
func (c *Conn) SetReadDeadline(t time.Time) error  { return c.raw.SetReadDeadline(t) }
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.raw.SetWriteDeadline(t) }
