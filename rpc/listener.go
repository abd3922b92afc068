package rpc

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// probeTimeout bounds the dial that tells a live socket from a stale one.
// DESIGN §5 wants a second daemon on the same path to give up within 2 s.
const probeTimeout = time.Second

// Listen opens the local API's Unix socket at path.
//
// It creates the socket's directory (0750) if it is missing. If a socket
// already exists there and a daemon answers on it, Listen returns an error
// wrapping ErrSocketInUse and leaves the file alone; if nothing answers, the
// file is stale and is replaced. The new socket gets mode and, when group is
// not empty, that group (a name or a numeric gid).
//
// Closing the listener removes the socket file, but only if it is still the
// one this listener created: a daemon that lost its socket to another does
// not delete the other's.
func Listen(path string, mode os.FileMode, group string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	gid := -1
	if group != "" {
		g, err := lookupGroup(group)
		if err != nil {
			return nil, err
		}
		gid = g
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false) // we unlink ourselves, only if the file is still ours
	fail := func(err error) (net.Listener, error) {
		ln.Close()
		os.Remove(path)
		return nil, err
	}
	if err := os.Chmod(path, mode); err != nil {
		return fail(fmt.Errorf("socket mode: %w", err))
	}
	if gid >= 0 {
		if err := os.Lchown(path, -1, gid); err != nil {
			return fail(fmt.Errorf("socket group %q: %w", group, err))
		}
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(fmt.Errorf("socket: %w", err))
	}
	return &unixListener{UnixListener: ln, path: path, fi: fi}, nil
}

// removeStale removes a socket file nobody answers on. A live one is
// ErrSocketInUse; a path that is not a socket is left alone and refused.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("socket path %s exists and is not a socket", path)
	}
	conn, err := net.DialTimeout("unix", path, probeTimeout)
	if err == nil {
		conn.Close()
		return fmt.Errorf("%w: another ckd is serving on %s", ErrSocketInUse, path)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil // removed since the Lstat
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		// Something may hold the socket without accepting (a busy or
		// stopped daemon, a full backlog), or we may not be allowed to
		// dial it: either way it is not ours to remove.
		return fmt.Errorf("%w: %s exists and cannot be probed: %v", ErrSocketInUse, path, err)
	}
	// Refused: nobody listens; the file was left by a daemon that died.
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}

func lookupGroup(group string) (int, error) {
	if n, err := strconv.Atoi(group); err == nil && n >= 0 {
		return n, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, fmt.Errorf("socket group: %w", err)
	}
	n, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("socket group %q: gid %q is not a number", group, g.Gid)
	}
	return n, nil
}

type unixListener struct {
	*net.UnixListener
	path string
	fi   fs.FileInfo

	once sync.Once
	err  error
}

// Close stops listening and removes the socket file if it is still ours.
// It is safe to call more than once.
func (l *unixListener) Close() error {
	l.once.Do(func() {
		l.err = l.UnixListener.Close()
		if fi, err := os.Lstat(l.path); err == nil && os.SameFile(fi, l.fi) {
			os.Remove(l.path)
		}
	})
	return l.err
}
