package seal_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cloudknowledge/ck/daemon/seal"
)

func TestEnsureKeyFileCreates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "config", "ckd")
	path := filepath.Join(dir, "cluster.key")
	r, created, err := seal.EnsureKeyFile(path)
	if err != nil || !created {
		t.Fatalf("EnsureKeyFile = %v, created %v", err, created)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode %04o, want 0600", perm)
	}
	if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("directory: %v, %v; want mode 0700", di.Mode(), err)
	}
	// The file holds what `ckctl keygen` prints: one padded base64 key.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 1 || !strings.HasSuffix(string(b), "\n") {
		t.Fatalf("key file holds %q, want one line", b)
	}
	if _, err := seal.ParseKey(lines[0]); err != nil {
		t.Fatalf("the key does not parse: %v", err)
	}
	// Nothing else is left in the directory (no temporary file).
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("directory holds %d entries, want only the key file", len(ents))
	}
	// A second call reads the same key and creates nothing.
	r2, created, err := seal.EnsureKeyFile(path)
	if err != nil || created {
		t.Fatalf("second EnsureKeyFile = %v, created %v", err, created)
	}
	if r2.PrimaryID() != r.PrimaryID() {
		t.Errorf("second call gave key %s, first %s", seal.Fingerprint(r2.PrimaryID()), seal.Fingerprint(r.PrimaryID()))
	}
	if b2, _ := os.ReadFile(path); string(b2) != string(b) {
		t.Errorf("the file changed")
	}
}

// Many nodes starting at once must all end up with one key: exactly one
// creates the file, the others read it.
func TestEnsureKeyFileConcurrent(t *testing.T) {
	for round := range 20 {
		path := filepath.Join(t.TempDir(), "ckd", "cluster.key")
		const n = 16
		var (
			wg      sync.WaitGroup
			ids     [n]string
			created [n]bool
			errs    [n]error
			start   = make(chan struct{})
		)
		for i := range n {
			wg.Go(func() {
				<-start
				r, c, err := seal.EnsureKeyFile(path)
				errs[i], created[i] = err, c
				if err == nil {
					ids[i] = seal.Fingerprint(r.PrimaryID())
				}
			})
		}
		close(start)
		wg.Wait()
		makers := 0
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("round %d, caller %d: %v", round, i, errs[i])
			}
			if ids[i] != ids[0] {
				t.Fatalf("round %d: caller %d got key %s, caller 0 %s", round, i, ids[i], ids[0])
			}
			if created[i] {
				makers++
			}
		}
		if makers != 1 {
			t.Fatalf("round %d: %d callers say they created the file, want 1", round, makers)
		}
		if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
			t.Fatalf("round %d: directory holds %d entries, want only the key file", round, len(ents))
		}
	}
}

func TestEnsureKeyFileRefuses(t *testing.T) {
	good := seal.GenerateKey() + "\n"
	for _, c := range []struct {
		name    string
		mode    os.FileMode
		content string
		want    error
	}{
		{"group readable", 0o640, good, seal.ErrKeyFileMode},
		{"world readable", 0o604, good, seal.ErrKeyFileMode},
		{"group writable", 0o620, good, seal.ErrKeyFileMode},
		{"not a key", 0o600, "hello\n", seal.ErrBadKey},
		{"empty", 0o600, "", seal.ErrBadKey},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cluster.key")
			if err := os.WriteFile(path, []byte(c.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, c.mode); err != nil {
				t.Fatal(err)
			}
			_, _, err := seal.EnsureKeyFile(path)
			if !errors.Is(err, c.want) {
				t.Fatalf("EnsureKeyFile = %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error does not name the file: %v", err)
			}
			if b, _ := os.ReadFile(path); string(b) != c.content {
				t.Errorf("the refused file was changed to %q", b)
			}
		})
	}
	t.Run("another owner", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("only root can give a file to another user")
		}
		path := filepath.Join(t.TempDir(), "cluster.key")
		if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(path, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		_, _, err := seal.EnsureKeyFile(path)
		if !errors.Is(err, seal.ErrKeyFileOwner) {
			t.Fatalf("EnsureKeyFile = %v, want ErrKeyFileOwner", err)
		}
		if !strings.Contains(err.Error(), "uid 65534") {
			t.Errorf("error does not name the owner: %v", err)
		}
		// The plain keyring file loader does not ask who owns the file.
		if _, err := seal.LoadKeyringFile(path); err != nil {
			t.Errorf("LoadKeyringFile: %v", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "cluster.key")
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		if _, _, err := seal.EnsureKeyFile(path); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("EnsureKeyFile on a directory = %v", err)
		}
	})
}
