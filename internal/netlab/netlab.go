// Package netlab builds test networks of real hosts on one machine:
// network namespaces joined by veth links to a bridge that lives in a
// namespace of its own, so nothing a test does touches the machine's own
// interfaces, and real broadcast and multicast cross between "hosts".
// Every namespace is removed in t.Cleanup, failure or not. Tests that need
// it skip, saying why, where they are not root or `ip netns` is refused.
package netlab

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Lab is a set of hosts (namespaces) on one bridge, on a random
// 10.x.y.0/24 subnet.
type Lab struct {
	t      testing.TB
	id     string
	br     string            // the bridge's namespace
	ns     map[string]string // host -> namespace
	veth   map[string]string // host -> its veth end on the bridge
	addr   map[string]string // host -> IPv4 address
	Subnet string            // "10.x.y.0/24"
}

// New creates the bridge and one namespace per host; host i gets address
// 10.x.y.(i+1)/24 on interface ck0, and lo is up.
func New(t testing.TB, hosts ...string) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: creating network namespaces needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: ip (iproute2) not found")
	}
	id := fmt.Sprintf("ck-%06x", rand.IntN(1<<24))
	l := &Lab{t: t, id: id, br: id + "-br", ns: map[string]string{}, veth: map[string]string{}, addr: map[string]string{}}
	if out, err := exec.Command("ip", "netns", "add", l.br).CombinedOutput(); err != nil {
		t.Skipf("skipping: ip netns add is not permitted here: %v: %s", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() { l.IP("netns", "del", l.br) })
	l.IP("-n", l.br, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	l.IP("-n", l.br, "link", "set", "br0", "up")
	prefix := fmt.Sprintf("10.%d.%d.", rand.IntN(256), rand.IntN(256))
	l.Subnet = prefix + "0/24"
	for i, h := range hosts {
		ns := id + "-" + h
		l.IP("netns", "add", ns)
		t.Cleanup(func() { l.IP("netns", "del", ns) })
		veth := fmt.Sprintf("v%d", i)
		l.IP("-n", l.br, "link", "add", veth, "type", "veth", "peer", "name", "ck0", "netns", ns)
		l.IP("-n", l.br, "link", "set", veth, "master", "br0", "up")
		l.addr[h] = fmt.Sprintf("%s%d", prefix, i+1)
		l.IP("-n", ns, "addr", "add", l.addr[h]+"/24", "dev", "ck0")
		l.IP("-n", ns, "link", "set", "ck0", "up")
		l.IP("-n", ns, "link", "set", "lo", "up")
		l.ns[h], l.veth[h] = ns, veth
	}
	t.Logf("netlab: namespaces %s-*, subnet %s", id, l.Subnet)
	return l
}

// NS is the namespace of a host, for `ip netns exec NS ...`.
func (l *Lab) NS(host string) string { return l.ns[host] }

// Addr is a host's IPv4 address.
func (l *Lab) Addr(host string) string { return l.addr[host] }

// Command returns a command that runs inside a host's namespace.
func (l *Lab) Command(host, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", l.ns[host], name}, args...)...)
}

// Cut takes a host's link to the bridge down: a partition.
func (l *Lab) Cut(host string) { l.IP("-n", l.br, "link", "set", l.veth[host], "down") }

// Restore brings a cut link back up.
func (l *Lab) Restore(host string) { l.IP("-n", l.br, "link", "set", l.veth[host], "up") }

// IP runs the ip command, failing the test (not stopping it) on error.
func (l *Lab) IP(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}
