package seal_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cloudknowledge/ck/daemon/seal"
	"github.com/cloudknowledge/ck/daemon/wire"
)

func TestParseKey(t *testing.T) {
	good := b64(key("a"))
	for _, c := range []struct {
		name, in string
		ok       bool
	}{
		{"valid", good, true},
		{"surrounding space", "  " + good + "\n", true},
		{"generated", seal.GenerateKey(), true},
		{"empty", "", false},
		{"unpadded", strings.TrimRight(b64(key("a")[:31]), "="), false},
		{"url alphabet", strings.NewReplacer("+", "-", "/", "_").Replace(b64(make([]byte, 32))) + "x", false},
		{"16 bytes", b64(key("a")[:16]), false},
		{"33 bytes", b64(append(key("a"), 1)), false},
		{"garbage", "not a key at all!", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			k, err := seal.ParseKey(c.in)
			if c.ok != (err == nil) {
				t.Fatalf("ParseKey = %x, %v", k, err)
			}
			if err != nil {
				if !errors.Is(err, seal.ErrBadKey) {
					t.Errorf("error %v does not wrap ErrBadKey", err)
				}
				if c.in != "" && strings.Contains(err.Error(), strings.TrimSpace(c.in)) {
					t.Errorf("error quotes the key: %v", err)
				}
			}
		})
	}
}

func TestKeyringIDsAndString(t *testing.T) {
	r := ring(t, key("a"), key("b"), key("a"))
	if r.Len() != 2 {
		t.Errorf("Len = %d, want 2 (a duplicate counts once)", r.Len())
	}
	if r.PrimaryID() != wire.KeyIDOf(key("a")) {
		t.Errorf("PrimaryID = %x", r.PrimaryID())
	}
	ids := r.IDs()
	if len(ids) != 2 || ids[0] != wire.KeyIDOf(key("a")) || ids[1] != wire.KeyIDOf(key("b")) {
		t.Errorf("IDs = %x", ids)
	}
	for _, s := range []string{r.String(), fmt.Sprintf("%v %+v %#v %s", r, r, r, r)} {
		for _, k := range [][]byte{key("a"), key("b")} {
			if strings.Contains(s, b64(k)) || strings.Contains(s, fmt.Sprintf("%x", k[:8])) {
				t.Errorf("keyring shown with its key: %s", s)
			}
		}
		if !strings.Contains(s, seal.Fingerprint(wire.KeyIDOf(key("a")))) {
			t.Errorf("keyring shown without its primary's fingerprint: %s", s)
		}
	}
	if _, err := seal.NewKeyring(key("a")[:31]); !errors.Is(err, seal.ErrBadKey) {
		t.Errorf("a 31-byte key: %v", err)
	}
}

// writeFile writes a keyring file with mode.
func writeFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keyring")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadKeyringFile(t *testing.T) {
	a, b := b64(key("a")), b64(key("b"))
	for _, c := range []struct {
		name    string
		content string
		mode    os.FileMode
		primary []byte
		n       int
		err     error
		want    []string // substrings of the error
	}{
		{name: "one key", content: a + "\n", mode: 0o600, primary: key("a"), n: 1},
		{name: "no final newline", content: a, mode: 0o400, primary: key("a"), n: 1},
		{name: "comments and blanks", content: "# rotated 2024-05\n\n  " + b + "  \r\n# old one:\n" + a + "\n\n", mode: 0o600, primary: key("b"), n: 2},
		{name: "group readable", content: a, mode: 0o640, err: seal.ErrKeyFileMode, want: []string{"keyring", "0640", "chmod 600"}},
		{name: "world readable", content: a, mode: 0o644, err: seal.ErrKeyFileMode, want: []string{"0644"}},
		{name: "group writable", content: a, mode: 0o620, err: seal.ErrKeyFileMode, want: []string{"0620"}},
		{name: "bad line", content: a + "\n# x\n" + b[:20] + "\n", mode: 0o600, err: seal.ErrBadKey, want: []string{"line 3", "keyring"}},
		{name: "inline comment", content: a + " # primary\n", mode: 0o600, err: seal.ErrBadKey, want: []string{"line 1"}},
		{name: "short key", content: b + "\n" + b64(key("c")[:16]) + "\n", mode: 0o600, err: seal.ErrBadKey, want: []string{"line 2", "16 bytes"}},
		{name: "empty", content: "# nothing yet\n\n", mode: 0o600, err: seal.ErrBadKey, want: []string{"no keys"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, c.content, c.mode)
			r, err := seal.LoadKeyringFile(path)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("LoadKeyringFile = %v, %v; want %v", r, err, c.err)
				}
				for _, w := range append(c.want, path) {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				for _, k := range []string{a, b, b[:20]} {
					if strings.Contains(err.Error(), k) {
						t.Errorf("error %q quotes a key", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.PrimaryID() != wire.KeyIDOf(c.primary) || r.Len() != c.n {
				t.Errorf("ring = %v, want primary %s and %d keys", r, seal.Fingerprint(wire.KeyIDOf(c.primary)), c.n)
			}
		})
	}
	if _, err := seal.LoadKeyringFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing file loaded")
	}
}

// TestReloadFile: a reload swaps the keys in; a bad file leaves them.
func TestReloadFile(t *testing.T) {
	path := writeFile(t, b64(key("a")), 0o600)
	r, err := seal.LoadKeyringFile(path)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, []byte(b64(key("b"))+"\n"+b64(key("a"))+"\n"), 0o600)
	if err := r.ReloadFile(path); err != nil {
		t.Fatal(err)
	}
	if r.PrimaryID() != wire.KeyIDOf(key("b")) || r.Len() != 2 {
		t.Fatalf("after reload: %v", r)
	}
	os.WriteFile(path, []byte("garbage\n"), 0o600)
	if err := r.ReloadFile(path); err == nil {
		t.Fatal("a bad file reloaded")
	}
	if r.PrimaryID() != wire.KeyIDOf(key("b")) || r.Len() != 2 {
		t.Errorf("a failed reload changed the ring: %v", r)
	}
}

// TestSwapConcurrent: frames keep opening while the ring is swapped back
// and forth under them (run with -race).
func TestSwapConcurrent(t *testing.T) {
	live := ring(t, key("a"), key("b"))
	ab, ba := ring(t, key("a"), key("b")), ring(t, key("b"), key("a"))
	d := seal.NewDatagram(live, cluster, nil)
	stop := make(chan struct{})
	swapped := make(chan struct{})
	go func() {
		defer close(swapped)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				live.Swap(ab)
			} else {
				live.Swap(ba)
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for c := range uint64(500) {
				h := wire.Header{Sender: nodeA, Epoch: epoch1 + uint64(w), Counter: c + 1}
				b, err := wire.Encode(h, update(), d)
				if err == nil {
					_, _, err = decode(b, d)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	<-swapped
}
