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
// A second daemon on the same path must give up within 2 s (docs/PROTOCOL.md, Local API).
const probeTimeout = time.Second

// Listen opens the local API's Unix socket at path.
//
// It creates the socket's directory if it is missing: mode 0750 and, when
// group is set, that group, so the group's members can reach the socket.
// The system socket's directory (/run/ckd), when it belongs to ckd's user,
// follows group in the same way even if it already exists, since it may
// have been made before group was set. A directory other users may write
// is refused (ErrSocketDir) unless it is sticky (as /tmp is): elsewhere
// another user could replace the socket between two starts, or remove it
// and put a listener of their own in its place. In a sticky directory the
// path must be free, a stale socket this user may remove, or this user's.
//
// If a socket already exists there and a daemon answers on it, Listen
// returns an error wrapping ErrSocketInUse and leaves the file alone; if
// nothing answers, the file is stale and is replaced. The new socket gets
// mode and, when group is not empty, that group (a name or a numeric gid).
//
// Closing the listener removes the socket file, but only if it is still the
// one this listener created: a daemon that lost its socket to another does
// not delete the other's.
func Listen(path string, mode os.FileMode, group string) (net.Listener, error) {
	gid := -1
	if group != "" {
		g, err := lookupGroup(group)
		if err != nil {
			return nil, err
		}
		gid = g
	}
	if err := prepareDir(filepath.Dir(path), gid, group); err != nil {
		return nil, err
	}
	if err := removeStale(path); err != nil {
		return nil, err
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

// prepareDir makes the socket's directory, or checks the one there (see
// Listen).
func prepareDir(dir string, gid int, group string) error {
	_, err := os.Stat(dir)
	created := errors.Is(err, fs.ErrNotExist)
	if created {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("socket directory: %w", err)
		}
	}
	di, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	owner, _ := fileOwner(di)
	ours := owner == os.Geteuid()
	if gid >= 0 && ours && (created || dir == filepath.Dir(SystemSocket)) {
		if err := os.Chown(dir, -1, gid); err != nil {
			return fmt.Errorf("socket directory %s: group %q: %w", dir, group, err)
		}
		if err := os.Chmod(dir, 0o750); err != nil {
			return fmt.Errorf("socket directory %s: %w", dir, err)
		}
		return nil
	}
	return checkSocketDir(dir, di, owner)
}

// checkSocketDir refuses a socket directory other users may write that
// is not sticky.
func checkSocketDir(dir string, di fs.FileInfo, owner int) error {
	if othersMayWrite(di, owner) && di.Mode()&fs.ModeSticky == 0 {
		return fmt.Errorf("%w: %s (mode %04o, owner uid %d) may be written by other users and is not sticky: "+
			"any of them could replace ckd's socket with their own; put the socket in a directory only ckd's user can write",
			ErrSocketDir, dir, di.Mode().Perm(), owner)
	}
	return nil
}

// othersMayWrite tells whether users other than ckd's and root may create
// or remove files in the directory di.
func othersMayWrite(di fs.FileInfo, owner int) bool {
	if di.Mode().Perm()&0o022 != 0 {
		return true
	}
	return owner >= 0 && owner != os.Geteuid() && owner != 0
}

// removeStale removes a socket file nobody answers on. A live one is
// ErrSocketInUse; a path that is not a socket is left alone and refused.
// Another user's file is named as such: in a sticky directory it is
// theirs to keep (ErrSocketDir), unless it is stale and this user may
// remove it (root).
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	owner, _ := fileOwner(fi)
	foreign := owner >= 0 && owner != os.Geteuid()
	if fi.Mode().Type() != fs.ModeSocket {
		if foreign {
			return fmt.Errorf("%w: socket path %s is held by a file of uid %d, and is not a socket", ErrSocketDir, path, owner)
		}
		return fmt.Errorf("socket path %s exists and is not a socket", path)
	}
	conn, err := net.DialTimeout("unix", path, probeTimeout)
	if err == nil {
		conn.Close()
		if foreign {
			return fmt.Errorf("%w: a process answers on %s, a socket of uid %d: another user holds ckd's socket path; "+
				"choose a socket path in a directory only ckd's user can write", ErrSocketDir, path, owner)
		}
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
		if foreign {
			return fmt.Errorf("%w: stale socket %s belongs to uid %d and cannot be removed: %v", ErrSocketDir, path, owner, err)
		}
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
