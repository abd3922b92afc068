package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudknowledge/ck/daemon/natsbridge"
	"github.com/cloudknowledge/ck/daemon/seal"
	"github.com/cloudknowledge/ck/daemon/transport"
	"github.com/cloudknowledge/ck/daemon/transport/natstransport"
	"github.com/cloudknowledge/ck/rpc"
)

// loadKeys enforces the key policy (checkSecurity) and loads the cluster
// key for the daemon's life: the config's (encrypt or keyring_file); with
// none, on loopback and not insecure, this user's default key file, made
// at the first start. Only insecure = true leaves d.ring nil: plaintext
// frames tagged with the cluster name. Each instance seals its datagrams
// with the ring and its own replay filter (openReplay).
func (d *Daemon) loadKeys() error {
	cl := d.cfg.Cluster
	if err := d.cfg.checkSecurity(); err != nil {
		return err
	}
	if cl.Insecure && cl.Encrypt == "" && cl.KeyringFile == "" {
		d.log.Warn("cluster traffic is neither encrypted nor authenticated (insecure = true): anyone on the network can read and write")
	}
	ring, source, err := loadKeyring(cl, true, d.log)
	if err != nil {
		return err
	}
	d.keySource.Store(&source)
	if ring != nil {
		d.ring = ring
		d.log.Info("cluster traffic is encrypted and authenticated", "keys", ring.String(), "key_source", source)
	}
	return nil
}

// Where a node's cluster key comes from, as status shows it.
const (
	keySourceEncrypt  = "config encrypt"
	keySourceRing     = "keyring_file "
	keySourceDefault  = "default key file "
	keySourceInsecure = "none (insecure)"
)

// loadKeyring reads the key the cluster block names and says where it came
// from. With no key and insecure unset it reads the default key file,
// creating it when create is set (at start; a reload only reads it, as a
// new key would cut the node off from the peers that read the old one).
// It returns a nil ring only for insecure = true.
func loadKeyring(cl *ClusterConfig, create bool, log hclog.Logger) (*seal.Keyring, string, error) {
	switch {
	case cl.KeyringFile != "":
		ring, err := seal.LoadKeyringFile(cl.KeyringFile)
		if err != nil {
			return nil, "", fmt.Errorf("cluster.keyring_file: %w", err)
		}
		return ring, keySourceRing + cl.KeyringFile, nil
	case cl.Encrypt != "":
		key, err := seal.ParseKey(cl.Encrypt)
		if err != nil {
			return nil, "", fmt.Errorf("cluster.encrypt: %w", err)
		}
		ring, err := seal.NewKeyring(key)
		return ring, keySourceEncrypt, err
	case cl.Insecure:
		return nil, keySourceInsecure, nil
	}
	path := rpc.DefaultKeyFile()
	var (
		ring    *seal.Keyring
		created bool
		err     error
	)
	if create {
		ring, created, err = seal.EnsureKeyFile(path)
	} else {
		ring, err = seal.LoadOwnKeyringFile(path)
	}
	if err != nil {
		return nil, "", fmt.Errorf("cluster: the default key file (no encrypt or keyring_file is set): %w", err)
	}
	if created {
		log.Info("created this user's default cluster key: every node this user starts on this host shares it; "+
			"copy it (or set encrypt) to cluster across users or hosts", "path", path)
	}
	return ring, keySourceDefault + path, nil
}

// KeySource says where the cluster key in force came from: "config
// encrypt", "keyring_file PATH", "default key file PATH" or "none
// (insecure)".
func (d *Daemon) KeySource() string {
	if s := d.keySource.Load(); s != nil {
		return *s
	}
	return ""
}

// reloadKeys puts a reloaded config's keys in force: the ring is swapped
// atomically, so frames under any key of the new ring open at once.
func (d *Daemon) reloadKeys(cfg Config) error {
	ring, source, err := loadKeyring(cfg.Cluster, false, d.log)
	if err != nil {
		return err
	}
	switch {
	case ring == nil && d.ring == nil:
		return nil
	case ring == nil || d.ring == nil:
		return errors.New("cluster: turning encryption on or off needs a restart")
	}
	d.ring.Swap(ring)
	d.keySource.Store(&source)
	d.log.Info("cluster keys reloaded", "keys", d.ring.String(), "key_source", source)
	return nil
}

// ClusterTransport is what the daemon keeps of its transport: the
// protocol's interface, and the counters for metrics.
type ClusterTransport interface {
	transport.Transport
	Stats() transport.Stats
}

var (
	_ ClusterTransport = (*transport.UDP)(nil)
	_ ClusterTransport = (*natstransport.Transport)(nil)
)

// openTransport opens the transport cluster.transport names: UDP
// (multicast, broadcast, peers) or NATS; or the one Options.Transport
// opens.
func (d *Daemon) openTransport() (ClusterTransport, error) {
	if d.opts.Transport != nil {
		tr, err := d.opts.Transport()
		if err != nil {
			return nil, fmt.Errorf("cluster transport: %w", err)
		}
		return tr, nil
	}
	if d.cfg.Cluster.Transport == "nats" {
		ncfg, err := d.cfg.natsTransportConfig(d.log.Named("transport"))
		if err != nil {
			return nil, err
		}
		tr, err := natstransport.New(ncfg)
		if err != nil {
			return nil, fmt.Errorf("cluster transport: %w", err)
		}
		return tr, nil
	}
	tcfg, err := d.cfg.transportConfig(d.log.Named("transport"))
	if err != nil {
		return nil, err
	}
	tr, err := transport.New(tcfg)
	if err != nil {
		return nil, fmt.Errorf("cluster transport: %w", err)
	}
	return tr, nil
}

// natsTransportConfig connects the cluster transport with the nats block's
// servers, credentials and TLS (Validate requires the block with transport
// "nats"), on its own connection, named "<the bridge's name>-cluster". Its
// subjects are "<subject_prefix>.cluster.<cluster name as a subject
// token>.>"; bind, advertise, peers, interface, group and port do not
// apply.
func (c *Config) natsTransportConfig(log hclog.Logger) (natstransport.Config, error) {
	cl := c.Cluster
	bc, ok := c.NATSBridge()
	if !ok {
		return natstransport.Config{}, errors.New(`nats: cluster.transport "nats" needs a nats block`)
	}
	auth, err := bc.AuthOptions()
	if err != nil {
		return natstransport.Config{}, fmt.Errorf("nats: %w", err)
	}
	name := bc.Name
	if name == "" {
		name = "ckd-" + c.NodeName
	}
	prefix := bc.Prefix
	if prefix == "" {
		prefix = natsbridge.DefaultPrefix
	}
	return natstransport.Config{
		URLs:        bc.URLs,
		Options:     auth,
		Name:        name + "-cluster",
		Subject:     prefix + ".cluster." + natsbridge.SubjectKey(cl.Name),
		MaxDatagram: cl.MaxDatagram,
		Logger:      log,
	}, nil
}

// transportConfig translates the cluster block for the UDP transport.
func (c *Config) transportConfig(log hclog.Logger) (transport.Config, error) {
	cl := c.Cluster
	tc := transport.Config{
		Mode:        cl.Transport,
		Interface:   cl.Interface,
		Port:        cl.Port,
		MaxDatagram: cl.MaxDatagram,
		Logger:      log,
	}
	tc.Group, _ = netip.ParseAddr(cl.Group)
	// Off lo, an unset bind means the interface's own address (docs/PROTOCOL.md, Transports).
	if _, set := c.ranges["cluster.bind"]; set || cl.Interface == "lo" {
		ap, err := resolveAddrPort(cl.Bind)
		if err != nil {
			return tc, fmt.Errorf("cluster.bind: %w", err)
		}
		tc.Bind = ap
	}
	if cl.Advertise != "" {
		ap, err := resolveAddrPort(cl.Advertise)
		if err != nil {
			return tc, fmt.Errorf("cluster.advertise: %w", err)
		}
		if ap.Addr().IsLoopback() && cl.Interface != "lo" {
			return tc, fmt.Errorf("cluster.advertise: %s is a loopback address, which peers on %s cannot reach", ap, cl.Interface)
		}
		tc.Advertise = ap
	}
	if cl.Broadcast != "" {
		tc.Broadcast, _ = netip.ParseAddr(cl.Broadcast)
	}
	for _, p := range cl.Peers {
		ap, err := resolveAddrPort(p)
		if err != nil {
			return tc, fmt.Errorf("cluster.peers: %w", err)
		}
		tc.Peers = append(tc.Peers, ap)
	}
	return tc, nil
}

// checkSecurity enforces the key policy of docs/PROTOCOL.md: a cluster key is required
// unless every address is loopback, unless the operator says insecure. On
// loopback a node with no key uses its user's default key file
// (loadKeyring), so that other users of the host cannot join: see
// docs/ARCHITECTURE.md, "Local trust".
func (c *Config) checkSecurity() error {
	cl := c.Cluster
	if cl.Encrypt != "" || cl.KeyringFile != "" || cl.Insecure {
		return nil
	}
	loopback := cl.Interface == "lo" && cl.Transport != "nats"
	for _, a := range append([]string{cl.Bind, cl.Advertise}, cl.Peers...) {
		if a == "" {
			continue
		}
		if ap, err := resolveAddrPort(a); err != nil || !ap.Addr().IsLoopback() {
			loopback = false
		}
	}
	if !loopback {
		return errors.New("cluster: off loopback a cluster key is required (cluster.encrypt or keyring_file), " +
			"or insecure = true to run without one")
	}
	return nil
}

// resolveAddrPort parses host:port, resolving a host name.
func resolveAddrPort(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	ua, err := net.ResolveUDPAddr("udp4", s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return ua.AddrPort(), nil
}
