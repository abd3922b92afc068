package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Modes of the UDP transport: how Broadcast reaches every node.
const (
	ModeMulticast = "multicast" // an IPv4 group on Config.Interface
	ModeBroadcast = "broadcast" // the interface's (or Config.Broadcast's) broadcast address
	ModePeers     = "peers"     // unicast to each of Config.Peers
)

// Defaults applied by New to zero fields.
const (
	DefaultMaxDatagram = 1200
	DefaultPacketQueue = 1024
	DefaultStreamQueue = 64
	// DefaultReadBuffer is the receive buffer asked for each UDP socket:
	// room for about 3,500 datagrams of 1,200 bytes, what a node takes
	// while a hundred peers answer it at once (the kernel's default, ~208
	// KiB, held under 200 at N=40 and dropped ACKs).
	DefaultReadBuffer = 4 << 20
)

// maxUDPPayload is the largest IPv4 UDP payload.
const maxUDPPayload = 65507

// keepAlive is the TCP keepalive period of streams, both directions.
const keepAlive = 15 * time.Second

// Config configures a UDP transport. Zero values take the defaults named
// on each field.
type Config struct {
	Mode      string         // ModeMulticast, ModeBroadcast or ModePeers
	Interface string         // e.g. "lo"; required for multicast, and for broadcast without Broadcast
	Group     netip.Addr     // IPv4 multicast group (multicast)
	Port      int            // shared group / broadcast port (multicast, broadcast)
	Bind      netip.AddrPort // this node's unicast UDP + TCP address; port 0: a port free for both. Default: 127.0.0.1:0, or the first IPv4 address of a non-loopback Interface
	Advertise netip.AddrPort // address peers should use, when not Bind's; port 0: the bound port
	Broadcast netip.Addr     // broadcast address (broadcast); default: the Interface's
	Peers     []netip.AddrPort
	// MaxDatagram bounds datagrams both ways: longer ones are refused by
	// Broadcast and SendTo (ErrTooLarge) and dropped on receipt. Default
	// DefaultMaxDatagram.
	MaxDatagram int
	PacketQueue int          // capacity of Packets(); default DefaultPacketQueue
	ReadBuffer  int          // each UDP socket's receive buffer, bytes; default DefaultReadBuffer
	StreamQueue int          // capacity of Streams(); default DefaultStreamQueue
	Logger      hclog.Logger // named by the caller; default: discard
}

// UDP is the Transport of real networks: datagrams over UDP (multicast,
// broadcast or a static peer list), streams over TCP. Every node has its
// own unicast UDP socket and TCP listener on one port (Addr); only the
// group or broadcast socket is shared by the nodes of a host.
type UDP struct {
	cfg  Config
	log  hclog.Logger
	tcp  string // "tcp4" or "tcp6", the family of the bound address
	addr netip.AddrPort

	uc     *net.UDPConn    // unicast socket: every send, replies
	urc    syscall.RawConn // uc's, for non-blocking sends
	shared *net.UDPConn    // group or broadcast socket on Port; nil in peers mode
	ln     *net.TCPListener
	local  netip.AddrPort   // uc's bound address
	self   []netip.AddrPort // sources that are this node
	dests  []netip.AddrPort // where Broadcast sends

	packets chan Packet
	deliver atomic.Pointer[func(Packet)] // Deliver's fn; nil: Packets
	streams chan net.Conn
	stats   Counters

	wg        sync.WaitGroup
	closing   atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

var _ Direct = (*UDP)(nil)

// New opens the sockets described by cfg and starts receiving. Close
// releases them.
func New(cfg Config) (*UDP, error) {
	cfg, ifi, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	u := &UDP{
		cfg:     cfg,
		log:     cfg.Logger,
		packets: make(chan Packet, cfg.PacketQueue),
		streams: make(chan net.Conn, cfg.StreamQueue),
	}
	if err := u.open(ifi); err != nil {
		u.closeSockets()
		return nil, err
	}
	u.sizeBuffers()
	u.wg.Add(2)
	go u.readLoop(u.uc)
	go u.acceptLoop()
	if u.shared != nil {
		u.wg.Add(1)
		go u.readLoop(u.shared)
	}
	u.log.Info("transport up", "mode", cfg.Mode, "addr", u.addr, "bind", u.local, "dests", u.dests)
	return u, nil
}

// open binds the unicast sockets, then the mode's shared socket.
func (u *UDP) open(ifi *net.Interface) error {
	var err error
	if u.uc, u.ln, err = listenUnicast(u.cfg.Bind); err != nil {
		return err
	}
	if u.urc, err = u.uc.SyscallConn(); err != nil {
		return err
	}
	u.tcp = "tcp4"
	if u.cfg.Bind.Addr().Is6() {
		u.tcp = "tcp6"
	}
	u.local = u.uc.LocalAddr().(*net.UDPAddr).AddrPort()
	if err := u.identify(ifi); err != nil {
		return err
	}
	switch u.cfg.Mode {
	case ModeMulticast:
		return u.openMulticast(ifi)
	case ModeBroadcast:
		return u.openBroadcast()
	default:
		for _, p := range u.cfg.Peers {
			if !u.isSelf(p) {
				u.dests = append(u.dests, p)
			}
		}
		return nil
	}
}

// identify works out the advertised address and the addresses that are
// this node (for dropping our own datagrams as they loop back).
func (u *UDP) identify(ifi *net.Interface) error {
	port := u.local.Port()
	u.addr = u.local
	if adv := u.cfg.Advertise; adv.IsValid() {
		if adv.Port() == 0 {
			adv = netip.AddrPortFrom(adv.Addr(), port)
		}
		u.addr = adv
	}
	u.self = []netip.AddrPort{u.local, u.addr}
	if u.local.Addr().IsUnspecified() && ifi != nil {
		addrs, err := interfaceAddrs(ifi)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			u.self = append(u.self, netip.AddrPortFrom(a, port))
		}
		if !u.cfg.Advertise.IsValid() && len(addrs) > 0 {
			u.addr = netip.AddrPortFrom(addrs[0], port)
		}
	}
	if u.addr.Addr().IsUnspecified() {
		return fmt.Errorf("advertise: required when bind %s is unspecified and no interface address is known", u.cfg.Bind)
	}
	if ifi != nil && ifi.Flags&net.FlagLoopback == 0 && u.cfg.Mode != ModePeers && u.addr.Addr().IsLoopback() {
		return fmt.Errorf("advertise: loopback address %s on non-loopback interface %s", u.addr, ifi.Name)
	}
	return nil
}

// listenUnicast binds a UDP socket and a TCP listener on the same address
// and port. With port 0 it retries until the kernel's free UDP port is
// also free for TCP.
func listenUnicast(bind netip.AddrPort) (*net.UDPConn, *net.TCPListener, error) {
	udp, tcp := "udp4", "tcp4"
	if bind.Addr().Is6() {
		udp, tcp = "udp6", "tcp6"
	}
	tries := 1
	if bind.Port() == 0 {
		tries = 32
	}
	lc := net.ListenConfig{KeepAlive: keepAlive}
	var err error
	for range tries {
		uc, uerr := net.ListenUDP(udp, net.UDPAddrFromAddrPort(bind))
		if uerr != nil {
			return nil, nil, fmt.Errorf("bind %s: %w", bind, uerr)
		}
		at := netip.AddrPortFrom(bind.Addr(), uc.LocalAddr().(*net.UDPAddr).AddrPort().Port())
		var l net.Listener
		if l, err = lc.Listen(context.Background(), tcp, at.String()); err == nil {
			return uc, l.(*net.TCPListener), nil
		}
		uc.Close()
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return nil, nil, fmt.Errorf("bind %s: tcp: %w", bind, err)
}

// Addr returns Config.Advertise, or else the bound unicast address.
func (u *UDP) Addr() netip.AddrPort { return u.addr }

// Packets implements Transport.
func (u *UDP) Packets() <-chan Packet { return u.packets }

// Deliver implements Direct: the read loops call fn themselves.
func (u *UDP) Deliver(fn func(Packet)) { u.deliver.Store(&fn) }

// Broadcast sends b to the group, the broadcast address, or every peer but
// this node. It never waits for socket buffer space: a datagram that does
// not fit is dropped and counted (Stats.SendDropped).
func (u *UDP) Broadcast(b []byte) error {
	if len(b) > u.cfg.MaxDatagram {
		return fmt.Errorf("broadcast %d bytes: %w", len(b), ErrTooLarge)
	}
	var errs []error
	for _, to := range u.dests {
		if err := u.send(to, b); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// SendTo sends b from this node's unicast socket to one node. Same
// contract as Broadcast.
func (u *UDP) SendTo(to netip.AddrPort, b []byte) error {
	if len(b) > u.cfg.MaxDatagram {
		return fmt.Errorf("send %d bytes to %s: %w", len(b), to, ErrTooLarge)
	}
	return u.send(to, b)
}

func (u *UDP) send(to netip.AddrPort, b []byte) error {
	if u.closing.Load() {
		return net.ErrClosed
	}
	sent, err := sendNoWait(u.uc, u.urc, to, b)
	switch {
	case err != nil:
		u.stats.SendErrors.Add(1)
		return fmt.Errorf("send to %s: %w", to, err)
	case !sent:
		u.stats.SendDropped.Add(1)
	default:
		u.stats.Sent.Add(1)
		u.stats.BytesSent.Add(uint64(len(b)))
	}
	return nil
}

// sizeBuffers asks for Config.ReadBuffer on each UDP socket and for the
// kernel's drop count on every read, and logs a buffer the kernel capped
// (net.core.rmem_max) below what was asked: drops are then likelier, and
// counted (Stats.DroppedKernel).
func (u *UDP) sizeBuffers() {
	for _, c := range []*net.UDPConn{u.uc, u.shared} {
		if c == nil {
			continue
		}
		got, err := prepareReceive(c, u.cfg.ReadBuffer)
		switch {
		case err != nil:
			u.log.Warn("could not size the receive buffer or count kernel drops", "local", c.LocalAddr(), "error", err)
		case got < u.cfg.ReadBuffer:
			u.log.Warn("the kernel capped the receive buffer below what was asked; raise net.core.rmem_max",
				"local", c.LocalAddr(), "asked", u.cfg.ReadBuffer, "got", got)
		default:
			u.log.Debug("receive buffer", "local", c.LocalAddr(), "bytes", got)
		}
	}
}

// readLoop moves datagrams from c to Packets until c is closed. It never
// blocks on the channel. It counts what the kernel dropped on c
// (SO_RXQ_OVFL, carried by each read) into Stats.DroppedKernel.
func (u *UDP) readLoop(c *net.UDPConn) {
	defer u.wg.Done()
	buf := make([]byte, u.cfg.MaxDatagram+1) // one spare byte reveals truncation
	oob := make([]byte, oobSize)
	var dropped uint32 // the kernel's count at the last read; it wraps
	r, err := newReader(c)
	if err != nil {
		u.log.Error("cannot read the socket", "local", c.LocalAddr(), "error", err)
		return
	}
	for {
		n, oobn, from, err := r.read(buf, oob)
		if err != nil {
			if u.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			u.log.Debug("read", "local", c.LocalAddr(), "error", err)
			time.Sleep(10 * time.Millisecond) // do not spin on a persistent error
			continue
		}
		if d, ok := rxqOverflow(oob[:oobn]); ok && d != dropped {
			u.stats.DroppedKernel.Add(uint64(d - dropped))
			dropped = d
		}
		u.receive(buf[:n], from)
	}
}

func (u *UDP) receive(b []byte, from netip.AddrPort) {
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	u.stats.Received.Add(1)
	u.stats.BytesReceived.Add(uint64(len(b)))
	switch {
	case u.isSelf(from):
		u.stats.DroppedSelf.Add(1)
		return
	case len(b) > u.cfg.MaxDatagram:
		u.stats.DroppedTooBig.Add(1)
		return
	}
	p := Packet{From: from, Buf: append([]byte(nil), b...)}
	if fn := u.deliver.Load(); fn != nil {
		(*fn)(p)
		return
	}
	select {
	case u.packets <- p:
	default:
		u.stats.DroppedQueue.Add(1)
	}
}

func (u *UDP) isSelf(a netip.AddrPort) bool {
	for _, s := range u.self {
		if a == s {
			return true
		}
	}
	return false
}

// Close stops the goroutines, closes the sockets and then both channels;
// streams still queued are closed. Safe to call twice and concurrently.
func (u *UDP) Close() error {
	u.closeOnce.Do(func() {
		u.closing.Store(true)
		u.closeErr = u.closeSockets()
		u.wg.Wait()
		close(u.packets)
		close(u.streams)
		for c := range u.streams {
			c.Close()
		}
		u.log.Debug("transport closed", "addr", u.addr)
	})
	return u.closeErr
}

func (u *UDP) closeSockets() error {
	var errs []error
	if u.ln != nil {
		errs = append(errs, u.ln.Close())
	}
	if u.uc != nil {
		errs = append(errs, u.uc.Close())
	}
	if u.shared != nil {
		errs = append(errs, u.shared.Close())
	}
	return errors.Join(errs...)
}
