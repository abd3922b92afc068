package rpc_test

import (
	"errors"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/rpc"
)

// shortDir is a temp dir whose paths fit in a socket address.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cklis")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func listen(t *testing.T, path string) net.Listener {
	t.Helper()
	ln, err := rpc.Listen(path, 0o600, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln
}

func TestListenCreatesDirAndMode(t *testing.T) {
	path := filepath.Join(shortDir(t), "a", "b", "ckd.sock")
	ln, err := rpc.Listen(path, 0o660, "")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if got := di.Mode().Perm(); got != 0o750 {
		t.Errorf("dir mode = %v, want 0750", got)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		t.Errorf("not a socket: %v", fi.Mode())
	}
	if got := fi.Mode().Perm(); got != 0o660 {
		t.Errorf("socket mode = %v, want 0660", got)
	}
}

func TestListenLiveSocketRefused(t *testing.T) {
	path := filepath.Join(shortDir(t), "ckd.sock")
	listen(t, path)
	before, _ := os.Lstat(path)
	start := time.Now()
	ln, err := rpc.Listen(path, 0o600, "")
	if err == nil {
		ln.Close()
		t.Fatal("second Listen succeeded")
	}
	if !errors.Is(err, rpc.ErrSocketInUse) {
		t.Errorf("err = %v, want ErrSocketInUse", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v, want under 2s", d)
	}
	after, err := os.Lstat(path)
	if err != nil || !os.SameFile(before, after) {
		t.Errorf("the live socket was touched: %v", err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("the first listener no longer answers: %v", err)
	}
	c.Close()
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(shortDir(t), "ckd.sock")
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close() // a daemon that died: the file stays, nobody listens
	if _, err := os.Lstat(path); err != nil {
		t.Fatal(err)
	}
	ln := listen(t, path)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial new socket: %v", err)
	}
	c.Close()
	ln.Close()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket not removed at Close: %v", err)
	}
	if err := ln.Close(); err != nil {
		t.Logf("second Close: %v", err) // allowed to report, must not panic
	}
}

func TestListenRefusesNonSocket(t *testing.T) {
	path := filepath.Join(shortDir(t), "ckd.sock")
	if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ln, err := rpc.Listen(path, 0o600, ""); err == nil {
		ln.Close()
		t.Fatal("Listen over a regular file succeeded")
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "data" {
		t.Errorf("the file was touched: %q %v", b, err)
	}
}

func TestListenCloseKeepsAnotherSocket(t *testing.T) {
	path := filepath.Join(shortDir(t), "ckd.sock")
	a, err := rpc.Listen(path, 0o600, "")
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path) // someone took the path away from a
	b := listen(t, path)
	a.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("closing the old listener removed the new socket: %v", err)
	}
	_ = b
}

func TestListenGroup(t *testing.T) {
	gid := os.Getgid()
	groups := []string{strconv.Itoa(gid)}
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		groups = append(groups, g.Name)
	}
	for _, g := range groups {
		t.Run(g, func(t *testing.T) {
			path := filepath.Join(shortDir(t), "ckd.sock")
			ln, err := rpc.Listen(path, 0o660, g)
			if err != nil {
				t.Fatal(err)
			}
			ln.Close()
		})
	}
	t.Run("applied", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("only root may give a file to another group")
		}
		path := filepath.Join(shortDir(t), "ckd.sock")
		ln, err := rpc.Listen(path, 0o660, "4242")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if gid := fi.Sys().(*syscall.Stat_t).Gid; gid != 4242 {
			t.Errorf("gid = %d, want 4242", gid)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		path := filepath.Join(shortDir(t), "ckd.sock")
		if ln, err := rpc.Listen(path, 0o660, "no-such-group-ck"); err == nil {
			ln.Close()
			t.Fatal("unknown group accepted")
		}
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket left behind: %v", err)
		}
	})
}

// needRoot skips a test that must create files of another user.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("not root: cannot make files of another user (uid 65534) to test against")
	}
}

// A socket directory other users may write is refused unless it is sticky.
func TestListenSocketDir(t *testing.T) {
	for _, c := range []struct {
		name   string
		mode   os.FileMode
		owner  int // -1: ours
		refuse bool
	}{
		{"private", 0o700, -1, false},
		{"world writable", 0o777, -1, true},
		{"group writable", 0o770, -1, true},
		{"sticky world writable", 0o777 | os.ModeSticky, -1, false},
		{"another user's", 0o755, 65534, true},
		{"another user's, sticky", 0o777 | os.ModeSticky, 65534, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.owner >= 0 {
				needRoot(t)
			}
			dir := filepath.Join(shortDir(t), "d")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if c.owner >= 0 {
				if err := os.Chown(dir, c.owner, c.owner); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chmod(dir, c.mode); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "ckd.sock")
			ln, err := rpc.Listen(path, 0o600, "")
			if !c.refuse {
				if err != nil {
					t.Fatalf("Listen: %v", err)
				}
				ln.Close()
				return
			}
			if err == nil {
				ln.Close()
				t.Fatal("Listen succeeded")
			}
			if !errors.Is(err, rpc.ErrSocketDir) || !strings.Contains(err.Error(), dir) {
				t.Errorf("err = %v, want ErrSocketDir naming the directory", err)
			}
			if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a socket was created: %v", err)
			}
		})
	}
}

// In a sticky shared directory another user's live socket at the path is
// theirs: ckd refuses, naming the uid, and touches nothing; a stale one
// is removed when ckd may (root).
func TestListenSharedDirForeignSocket(t *testing.T) {
	needRoot(t)
	dir := filepath.Join(shortDir(t), "tmp")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ckd.sock")
	other, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	other.SetUnlinkOnClose(false)
	defer other.Close()
	if err := os.Lchown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Lstat(path)
	ln, err := rpc.Listen(path, 0o600, "")
	if err == nil {
		ln.Close()
		t.Fatal("Listen over another user's live socket succeeded")
	}
	if !errors.Is(err, rpc.ErrSocketDir) || !strings.Contains(err.Error(), "uid 65534") {
		t.Errorf("err = %v, want ErrSocketDir naming uid 65534", err)
	}
	if after, err := os.Lstat(path); err != nil || !os.SameFile(before, after) {
		t.Errorf("the other user's socket was touched: %v", err)
	}
	other.Close() // now stale: root may remove it
	ln = listen(t, path)
	// The inode number may be reused; the owner tells them apart.
	if fi, err := os.Lstat(path); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("the stale socket was not replaced by root's: %v", err)
	}
	ln.Close()
}

// With socket_group, a directory ckd creates gets the group and 0750; one
// that was there (and is not /run/ckd) is left as it is.
func TestListenGroupDir(t *testing.T) {
	needRoot(t)
	t.Run("created", func(t *testing.T) {
		dir := filepath.Join(shortDir(t), "run", "ckd")
		ln, err := rpc.Listen(filepath.Join(dir, "ckd.sock"), 0o660, "4242")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		di, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if gid := di.Sys().(*syscall.Stat_t).Gid; gid != 4242 || di.Mode().Perm() != 0o750 {
			t.Errorf("directory gid %d mode %04o, want 4242 and 0750", gid, di.Mode().Perm())
		}
	})
	t.Run("existing", func(t *testing.T) {
		dir := shortDir(t)
		ln, err := rpc.Listen(filepath.Join(dir, "ckd.sock"), 0o660, "4242")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		di, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if gid := di.Sys().(*syscall.Stat_t).Gid; gid == 4242 || di.Mode().Perm() != 0o700 {
			t.Errorf("an existing directory was changed: gid %d mode %04o", gid, di.Mode().Perm())
		}
	})
}
