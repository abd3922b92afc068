package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/cloudknowledge/ck/daemon/cluster"
	"github.com/cloudknowledge/ck/daemon/transport"
)

// startCluster opens the transport the config names and creates the
// protocol node on it. Run starts the node.
func (d *Daemon) startCluster(epoch uint64) error {
	cl := d.cfg.Cluster
	if err := d.checkSecurity(); err != nil {
		return err
	}
	tcfg, err := d.transportConfig()
	if err != nil {
		return err
	}
	tr, err := transport.New(tcfg)
	if err != nil {
		return fmt.Errorf("cluster transport: %w", err)
	}
	d.transport = tr
	hb, _ := time.ParseDuration(cl.Heartbeat)
	dead, _ := time.ParseDuration(cl.DeadAfter)
	ttl, _ := time.ParseDuration(cl.TombstoneTTL)
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
		QueryTimeout: query,
		SyncInterval: syncEvery,
		HookHash:     d.hooks.Hash,
		Logger:       d.log.Named("cluster"),
	}, tr, d.store)
	return nil
}

// transportConfig translates the cluster block for the transport.
func (d *Daemon) transportConfig() (transport.Config, error) {
	cl := d.cfg.Cluster
	if cl.Transport == "nats" {
		return transport.Config{}, errors.New(`cluster.transport "nats" is not available yet: use multicast, broadcast or peers`)
	}
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
		return errors.New("cluster.encrypt / keyring_file: encryption is not available yet in this build; remove the key (and set insecure = true off loopback)")
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
