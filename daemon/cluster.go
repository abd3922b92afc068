package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/cloudknowledge/ck/daemon/cluster"
	"github.com/cloudknowledge/ck/daemon/natsbridge"
	"github.com/cloudknowledge/ck/daemon/seal"
	"github.com/cloudknowledge/ck/daemon/transport"
	"github.com/cloudknowledge/ck/daemon/transport/natstransport"
	"github.com/cloudknowledge/ck/daemon/wire"
)

// startCluster opens the transport the config names and creates the
// protocol node on it. Run starts the node.
func (d *Daemon) startCluster(epoch uint64) error {
	cl := d.cfg.Cluster
	if err := d.checkSecurity(); err != nil {
		return err
	}
	tr, err := d.openTransport()
	if err != nil {
		return err
	}
	d.transport = tr
	ring, sealer, err := d.openKeys()
	if err != nil {
		tr.Close()
		return err
	}
	hb, _ := time.ParseDuration(cl.Heartbeat)
	dead, _ := time.ParseDuration(cl.DeadAfter)
	ttl, _ := time.ParseDuration(cl.TombstoneTTL)
	purge, _ := time.ParseDuration(cl.PurgeLogTTL)
	query, _ := time.ParseDuration(cl.QueryTimeout)
	syncEvery, _ := time.ParseDuration(cl.SyncInterval)
	d.node = cluster.New(cluster.Config{
		NodeName:     d.cfg.NodeName,
		Cluster:      cl.Name,
		Epoch:        epoch,
		Heartbeat:    hb,
		DeadAfter:    dead,
		MaxDatagram:  cl.MaxDatagram,
		TombstoneTTL: ttl,
		PurgeLogTTL:  purge,
		Peers:        d.peers,
		QueryTimeout: query,
		SyncInterval: syncEvery,
		HookHash:     d.hooks.Hash,
		Keyring:      ring,
		Sealer:       sealer,
		Logger:       d.log.Named("cluster"),
	}, tr, d.store)
	return nil
}

// openKeys loads the cluster key (encrypt) or keyring (keyring_file) and
// builds the datagram sealer with its replay filter, whose marks persist in
// the data dir. Without a key it returns nils: plaintext frames tagged with
// the cluster name.
func (d *Daemon) openKeys() (*seal.Keyring, wire.Sealer, error) {
	ring, err := loadKeyring(d.cfg.Cluster)
	if err != nil || ring == nil {
		return nil, nil, err
	}
	marks, err := seal.OpenEpochFile(filepath.Join(d.cfg.DataDir, "replay-marks"))
	if err != nil {
		return nil, nil, fmt.Errorf("replay marks: %w", err)
	}
	d.replay = seal.NewReplay(marks)
	d.ring = ring
	d.log.Info("cluster traffic is encrypted and authenticated", "keys", ring.String())
	return ring, seal.NewDatagram(ring, d.cfg.Cluster.Name, d.replay), nil
}

// loadKeyring reads the key the cluster block names, or returns nil.
func loadKeyring(cl *ClusterConfig) (*seal.Keyring, error) {
	switch {
	case cl.KeyringFile != "":
		ring, err := seal.LoadKeyringFile(cl.KeyringFile)
		if err != nil {
			return nil, fmt.Errorf("cluster.keyring_file: %w", err)
		}
		return ring, nil
	case cl.Encrypt != "":
		key, err := seal.ParseKey(cl.Encrypt)
		if err != nil {
			return nil, fmt.Errorf("cluster.encrypt: %w", err)
		}
		return seal.NewKeyring(key)
	}
	return nil, nil
}

// reloadKeys puts a reloaded config's keys in force: the ring is swapped
// atomically, so frames under any key of the new ring open at once.
func (d *Daemon) reloadKeys(cfg Config) error {
	ring, err := loadKeyring(cfg.Cluster)
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
	d.log.Info("cluster keys reloaded", "keys", d.ring.String())
	return nil
}

// clusterTransport is what the daemon keeps of its transport: the
// protocol's interface, and the counters for metrics.
type clusterTransport interface {
	transport.Transport
	Stats() transport.Stats
}

var (
	_ clusterTransport = (*transport.UDP)(nil)
	_ clusterTransport = (*natstransport.Transport)(nil)
)

// openTransport opens the transport cluster.transport names: UDP
// (multicast, broadcast, peers) or NATS.
func (d *Daemon) openTransport() (clusterTransport, error) {
	if d.cfg.Cluster.Transport == "nats" {
		ncfg, err := d.natsTransportConfig()
		if err != nil {
			return nil, err
		}
		tr, err := natstransport.New(ncfg)
		if err != nil {
			return nil, fmt.Errorf("cluster transport: %w", err)
		}
		return tr, nil
	}
	tcfg, err := d.transportConfig()
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
func (d *Daemon) natsTransportConfig() (natstransport.Config, error) {
	cl := d.cfg.Cluster
	bc, ok := d.cfg.NATSBridge()
	if !ok {
		return natstransport.Config{}, errors.New(`nats: cluster.transport "nats" needs a nats block`)
	}
	auth, err := bc.AuthOptions()
	if err != nil {
		return natstransport.Config{}, fmt.Errorf("nats: %w", err)
	}
	name := bc.Name
	if name == "" {
		name = "ckd-" + d.cfg.NodeName
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
		Logger:      d.log.Named("transport"),
	}, nil
}

// transportConfig translates the cluster block for the UDP transport.
func (d *Daemon) transportConfig() (transport.Config, error) {
	cl := d.cfg.Cluster
	tc := transport.Config{
		Mode:        cl.Transport,
		Interface:   cl.Interface,
		Port:        cl.Port,
		MaxDatagram: cl.MaxDatagram,
		Logger:      d.log.Named("transport"),
	}
	tc.Group, _ = netip.ParseAddr(cl.Group)
	// Off lo, an unset bind means the interface's own address (DESIGN §4).
	if _, set := d.cfg.ranges["cluster.bind"]; set || cl.Interface == "lo" {
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

// checkSecurity enforces DESIGN §4's policy: a cluster key is required
// unless every address is loopback, unless the operator says insecure.
func (d *Daemon) checkSecurity() error {
	cl := d.cfg.Cluster
	if cl.Encrypt != "" || cl.KeyringFile != "" {
		return nil
	}
	if cl.Insecure {
		d.log.Warn("cluster traffic is neither encrypted nor authenticated (insecure = true): anyone on the network can read and write")
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
