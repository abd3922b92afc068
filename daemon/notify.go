package daemon

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/cloudknowledge/ck/store"
)

// The service manager protocol (sd_notify(3)): under systemd with
// Type=notify, $NOTIFY_SOCKET names a datagram socket to which the service
// sends newline-separated KEY=VALUE assignments. It is a few lines, so ckd
// speaks it itself rather than link a library for it (docs/ARCHITECTURE.md,
// "Running under systemd").

// notifySocketEnv names the service manager's socket.
const notifySocketEnv = "NOTIFY_SOCKET"

// How often announce looks at the node: often while it starts (READY is
// what a dependent unit waits for), rarely once it serves.
const (
	announceStarting = 100 * time.Millisecond
	announceServing  = time.Second
)

// startTimeoutExtension is what each progress of a bootstrap asks systemd
// to extend the start timeout by (EXTEND_TIMEOUT_USEC): a bootstrap that
// keeps receiving records may take longer than TimeoutStartSec, one that
// stalls for this long may not.
const startTimeoutExtension = 90 * time.Second

// notifier sends state to the service manager; nil when ckd was not
// started by one.
type notifier struct {
	addr *net.UnixAddr
}

// newNotifier returns the notifier for $NOTIFY_SOCKET: a filesystem path,
// or a name in the abstract namespace when it starts with "@" (Go's
// net package maps a leading "@" to the abstract namespace's NUL). Other
// forms (vsock:) are not spoken: nil, and ckd runs as without.
func newNotifier(socket string) (*notifier, error) {
	switch {
	case socket == "":
		return nil, nil
	case strings.HasPrefix(socket, "/") || strings.HasPrefix(socket, "@") && len(socket) > 1:
		return &notifier{addr: &net.UnixAddr{Name: socket, Net: "unixgram"}}, nil
	default:
		return nil, fmt.Errorf("%s=%q: not a socket path or an abstract name; not notifying", notifySocketEnv, socket)
	}
}

// send sends one datagram of assignments ("READY=1\nSTATUS=serving").
func (n *notifier) send(state string) error {
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("service manager socket: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("service manager socket: %w", err)
	}
	return nil
}

// startState is what announce reports: a STATUS line, whether the node
// still bootstraps (a rejoin counts), and the records received so far.
func (d *Daemon) startState() (status string, bootstrapping bool, received uint64) {
	if d.rejoining.Load() {
		return "rejoining the cluster", true, 0
	}
	inst, release, err := d.slot.acquire()
	if err != nil { // swapped by a rejoin, or closed
		return "rejoining the cluster", true, 0
	}
	defer release()
	st := inst.node.Sync()
	if inst.node.Bootstrapping() {
		status = fmt.Sprintf("bootstrapping: received %d", st.Received)
		if st.PeerName != "" {
			status += " from " + st.PeerName
		}
		return status, true, st.Received
	}
	status = "serving"
	if disk := inst.store.DiskState(); disk != store.DiskOK {
		status += "; disk " + disk
	}
	return status, false, st.Received
}

// announce tells the service manager how the node is doing until ctx
// ends: STATUS while it bootstraps, READY=1 once it serves and has
// bootstrapped (a full disk does not hold READY back: ckd serves reads
// and deletes on one), then STATUS when it changes (a rejoin, the disk).
// Close sends STOPPING=1.
func (d *Daemon) announce(ctx context.Context) {
	ready, last, progress := false, "", uint64(0)
	warned := false
	for {
		status, bootstrapping, received := d.startState()
		var msg []string
		if !ready && !bootstrapping {
			ready = true
			msg = append(msg, "READY=1")
		}
		if status != last {
			last = status
			msg = append(msg, "STATUS="+status)
		}
		if !ready && received > progress {
			progress = received
			msg = append(msg, fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d", startTimeoutExtension.Microseconds()))
		}
		if len(msg) > 0 {
			if err := d.notify.send(strings.Join(msg, "\n")); err != nil && !warned {
				warned = true // the manager is gone or never listened: say so once
				d.log.Warn("telling the service manager", "error", err)
			} else if err == nil {
				d.log.Debug("told the service manager", "state", strings.Join(msg, " "))
			}
		}
		every := announceStarting
		if ready {
			every = announceServing
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}
