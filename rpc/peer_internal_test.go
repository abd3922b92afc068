package rpc

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Which socket owners a client trusts besides root and itself: the owner
// of the socket and of a directory no one else may write.
func TestOwnDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: cannot make files of another user (uid 65534) to test against")
	}
	const uid = 65534
	for _, c := range []struct {
		name      string
		dirOwner  int
		dirMode   os.FileMode
		sockOwner int
		want      string // "" trusted, else a part of the reason
	}{
		{"its own private directory", uid, 0o750, uid, ""},
		{"a root directory only root writes", 0, 0o755, uid, ""},
		{"sticky shared directory", 0, 0o777 | os.ModeSticky, uid, "others may create files"},
		{"group writable directory", uid, 0o770, uid, "others may create files"},
		{"another user's directory", 1234, 0o755, uid, "others may create files"},
		{"a socket it does not own", uid, 0o750, 0, "owner of the socket file (uid 0)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			base, err := os.MkdirTemp("", "ckpeer")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(base) })
			dir := filepath.Join(base, "d")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "ckd.sock")
			ln, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			must(t, os.Lchown(path, c.sockOwner, c.sockOwner))
			must(t, os.Chown(dir, c.dirOwner, c.dirOwner))
			must(t, os.Chmod(dir, c.dirMode))
			got := ownDirectory(path, uid)
			if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
				t.Errorf("ownDirectory = %q, want %q", got, c.want)
			}
		})
	}
}

// A server run by the client's own user is trusted (the common case).
func TestCheckServerSelf(t *testing.T) {
	dir, err := os.MkdirTemp("", "ckpeer")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	uid, ok, err := peerUID(c)
	if err != nil || !ok || uid != os.Geteuid() {
		t.Fatalf("peerUID = %d, %v, %v; want our uid %d", uid, ok, err, os.Geteuid())
	}
	if err := CheckServer(c, path); err != nil {
		t.Errorf("CheckServer: %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
