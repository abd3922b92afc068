// Package simnet is a simulated network for tests: many nodes in one
// process, no sockets. It is seeded, so a failing scenario replays from its
// seed, and it uses the time package only through timers, so under
// testing/synctest it runs on virtual time: hours of heartbeats take
// milliseconds.
//
// Datagrams may be lost, delayed, duplicated and (through random delays)
// reordered; pairs of nodes may be partitioned. Streams are in-memory pipes
// that fail to open across a partition.
package simnet

import (
	"context"
	"errors"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/cloudknowledge/ck/daemon/transport"
)

// Options shape the network's faults.
type Options struct {
	Loss     float64       // probability that a datagram to one node is lost
	Dup      float64       // probability that it is delivered twice
	MinDelay time.Duration // each delivery is delayed uniformly in [MinDelay, MaxDelay]
	MaxDelay time.Duration
	Queue    int // per-node receive queue; 0: 1024. A full queue drops.
}

// Network connects Endpoints.
type Network struct {
	opts Options

	mu      sync.Mutex
	rng     *rand.Rand
	nodes   map[netip.AddrPort]*Endpoint
	cut     map[[2]netip.AddrPort]bool // ordered pairs that cannot talk
	stats   Stats
	nextOff int
}

// Stats counts what the network did with datagrams.
type Stats struct {
	Sent, Delivered, Lost, Duplicated, Dropped int
}

// ErrUnreachable is returned by Dial across a partition or to a closed node.
var ErrUnreachable = errors.New("unreachable")

// New returns a network whose random choices all come from seed.
func New(seed uint64, opts Options) *Network {
	if opts.Queue <= 0 {
		opts.Queue = 1024
	}
	if opts.MaxDelay < opts.MinDelay {
		opts.MaxDelay = opts.MinDelay
	}
	return &Network{
		opts:  opts,
		rng:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		nodes: map[netip.AddrPort]*Endpoint{},
		cut:   map[[2]netip.AddrPort]bool{},
	}
}

// SetOptions changes the faults from now on (for example, quiet after a
// storm).
func (n *Network) SetOptions(o Options) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if o.Queue <= 0 {
		o.Queue = n.opts.Queue
	}
	if o.MaxDelay < o.MinDelay {
		o.MaxDelay = o.MinDelay
	}
	n.opts = o
}

// Stats returns the counters so far.
func (n *Network) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// Endpoint attaches a node at a fresh address (10.0.0.x:7000) and returns
// its transport. Closing it detaches the node; a new Endpoint for the same
// node (a restart) gets a new address unless Rejoin is used.
func (n *Network) Endpoint() *Endpoint {
	n.mu.Lock()
	n.nextOff++
	addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(n.nextOff >> 8), byte(n.nextOff)}), 7000)
	n.mu.Unlock()
	return n.Attach(addr)
}

// Attach attaches a node at a given address (a restarted node keeps its
// address). The address must not be in use.
func (n *Network) Attach(addr netip.AddrPort) *Endpoint {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, dup := n.nodes[addr]; dup {
		panic("simnet: address in use: " + addr.String())
	}
	e := &Endpoint{
		net:     n,
		addr:    addr,
		packets: make(chan transport.Packet, n.opts.Queue),
		streams: make(chan net.Conn, 64),
	}
	n.nodes[addr] = e
	return e
}

// Partition cuts every link between a node of side a and a node of side b,
// in both directions.
func (n *Network) Partition(a, b []netip.AddrPort) {
	n.Block(a, b)
	n.Block(b, a)
}

// Block cuts the links from every node of from to every node of to, in
// that direction only: to still reaches from (a peer that hears and is
// heard as alive, but never receives what is sent to it).
func (n *Network) Block(from, to []netip.AddrPort) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, x := range from {
		for _, y := range to {
			n.cut[[2]netip.AddrPort{x, y}] = true
		}
	}
}

// Heal removes every partition.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.cut)
}

// send fans a datagram out to the given destinations (all others when to
// is invalid), applying loss, delay and duplication.
func (n *Network) send(from netip.AddrPort, to netip.AddrPort, b []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	// Visit nodes in address order, not map order: the random draws must
	// fall on the same deliveries every run of a seed.
	addrs := slices.SortedFunc(maps.Keys(n.nodes), netip.AddrPort.Compare)
	for _, addr := range addrs {
		dst := n.nodes[addr]
		if addr == from || (to.IsValid() && addr != to) || n.cut[[2]netip.AddrPort{from, addr}] {
			continue
		}
		n.stats.Sent++
		if n.rng.Float64() < n.opts.Loss {
			n.stats.Lost++
			continue
		}
		copies := 1
		if n.rng.Float64() < n.opts.Dup {
			copies = 2
			n.stats.Duplicated++
		}
		for range copies {
			buf := append([]byte(nil), b...)
			d := n.opts.MinDelay
			if span := n.opts.MaxDelay - n.opts.MinDelay; span > 0 {
				d += time.Duration(n.rng.Int64N(int64(span) + 1))
			}
			time.AfterFunc(d, func() { n.deliver(dst, transport.Packet{From: from, Buf: buf}) })
		}
	}
}

func (n *Network) deliver(dst *Endpoint, p transport.Packet) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nodes[dst.addr] != dst || n.cut[[2]netip.AddrPort{p.From, dst.addr}] {
		n.stats.Lost++ // closed, or partitioned while in flight
		return
	}
	select {
	case dst.packets <- p:
		n.stats.Delivered++
		dst.counters.Received.Add(1)
		dst.counters.BytesReceived.Add(uint64(len(p.Buf)))
	default:
		n.stats.Dropped++
		dst.counters.DroppedQueue.Add(1)
	}
}

func (n *Network) dial(from, to netip.AddrPort) (net.Conn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	dst := n.nodes[to]
	if dst == nil || n.cut[[2]netip.AddrPort{from, to}] {
		return nil, ErrUnreachable
	}
	a, b := net.Pipe()
	select {
	case dst.streams <- b:
		return a, nil
	default:
		a.Close()
		b.Close()
		return nil, ErrUnreachable
	}
}

func (n *Network) detach(e *Endpoint) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nodes[e.addr] == e {
		delete(n.nodes, e.addr)
	}
	close(e.packets)
	close(e.streams)
}

// Endpoint is one node's attachment: a transport.Transport.
type Endpoint struct {
	net     *Network
	addr    netip.AddrPort
	packets chan transport.Packet
	streams chan net.Conn
	once    sync.Once
	closed  bool
	mu      sync.Mutex

	counters transport.Counters // this endpoint's, like a real transport's
}

var _ transport.Transport = (*Endpoint)(nil)

// Addr is the node's address on the simulated network.
func (e *Endpoint) Addr() netip.AddrPort { return e.addr }

// Broadcast sends b to every other node.
func (e *Endpoint) Broadcast(b []byte) error {
	if e.isClosed() {
		return net.ErrClosed
	}
	e.counters.Sent.Add(1)
	e.counters.BytesSent.Add(uint64(len(b)))
	e.net.send(e.addr, netip.AddrPort{}, b)
	return nil
}

// SendTo sends b to one node.
func (e *Endpoint) SendTo(to netip.AddrPort, b []byte) error {
	if e.isClosed() {
		return net.ErrClosed
	}
	e.counters.Sent.Add(1)
	e.counters.BytesSent.Add(uint64(len(b)))
	e.net.send(e.addr, to, b)
	return nil
}

// Stats returns the endpoint's counters: datagrams sent (once per
// Broadcast or SendTo), delivered to it, and dropped on its full queue.
func (e *Endpoint) Stats() transport.Stats { return e.counters.Snapshot() }

// Packets delivers received datagrams.
func (e *Endpoint) Packets() <-chan transport.Packet { return e.packets }

// Dial opens an in-memory stream to another node.
func (e *Endpoint) Dial(ctx context.Context, to netip.AddrPort) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if e.isClosed() {
		return nil, net.ErrClosed
	}
	return e.net.dial(e.addr, to)
}

// Streams delivers streams other nodes opened.
func (e *Endpoint) Streams() <-chan net.Conn { return e.streams }

// Close detaches the node. Safe to call twice.
func (e *Endpoint) Close() error {
	e.once.Do(func() {
		e.mu.Lock()
		e.closed = true
		e.mu.Unlock()
		e.net.detach(e)
	})
	return nil
}

func (e *Endpoint) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}
