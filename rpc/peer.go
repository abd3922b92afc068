package rpc

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
)

// UntrustedServerError is the error of a call whose socket is served by a
// process the client does not trust (see CheckServer). Nothing was sent.
// It matches ErrUntrustedServer with errors.Is.
type UntrustedServerError struct {
	Socket string
	UID    int // the serving process's uid
	Self   int // the client's effective uid
	Why    string
}

func (e *UntrustedServerError) Error() string {
	return fmt.Sprintf("refusing to talk to %s: the process serving it runs as uid %d, which is neither root nor you (uid %d)%s; nothing was sent",
		e.Socket, e.UID, e.Self, e.Why)
}

// Is makes errors.Is(err, ErrUntrustedServer) true.
func (e *UntrustedServerError) Is(target error) bool { return target == ErrUntrustedServer }

// CheckServer decides, before anything is sent on conn (a connection to
// the Unix socket at path), whether the process serving it may be
// trusted with what the client sends and believed in what it answers.
// It asks the kernel for the server's credentials (SO_PEERCRED: the uid
// of the process that created the listening socket, which the server
// cannot forge) and trusts:
//
//   - root, and the client's own uid: the system daemon and the user's own;
//   - the owner of the socket file, when that is also the owner (or root
//     is the owner) of its directory and nobody else may write there: a
//     daemon running as a dedicated user in its own directory.
//
// Anyone else is refused with an *UntrustedServerError naming the uid: in
// a directory others may write (/tmp), another user's listener created
// first at the path would otherwise receive what is written (a password
// put with `ckctl set`) and could answer forged reads. Where the system
// cannot tell the peer's credentials CheckServer trusts it.
func CheckServer(conn net.Conn, path string) error {
	uid, ok, err := peerUID(conn)
	if err != nil {
		return fmt.Errorf("checking who serves %s: %w", path, err)
	}
	self := os.Geteuid()
	if !ok || uid == 0 || uid == self {
		return nil
	}
	if why := ownDirectory(path, uid); why != "" {
		return &UntrustedServerError{Socket: path, UID: uid, Self: self, Why: why}
	}
	return nil
}

// ownDirectory returns "" when the socket at path belongs to uid in a
// directory only uid (or root) can change; else why not.
func ownDirectory(path string, uid int) string {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Sprintf(", and its socket cannot be checked: %v", err)
	}
	sock, err := os.Lstat(real)
	if err != nil {
		return fmt.Sprintf(", and its socket cannot be checked: %v", err)
	}
	if owner, _ := fileOwner(sock); owner != uid {
		return fmt.Sprintf(", nor the owner of the socket file (uid %d)", owner)
	}
	dir := filepath.Dir(real)
	di, err := os.Stat(dir)
	if err != nil {
		return fmt.Sprintf(", and its directory cannot be checked: %v", err)
	}
	if downer, _ := fileOwner(di); (downer != uid && downer != 0) || di.Mode().Perm()&0o022 != 0 {
		return fmt.Sprintf("; it owns the socket file, but in %s (mode %04o, owner uid %d), where others may create files",
			dir, di.Mode().Perm()|stickyBits(di), downer)
	}
	return ""
}

func stickyBits(fi fs.FileInfo) fs.FileMode {
	if fi.Mode()&fs.ModeSticky != 0 {
		return 0o1000
	}
	return 0
}

// errNoCred is peerUID's error for a connection that is not a Unix
// socket's.
var errNoCred = errors.New("not a Unix socket connection")
