package daemon

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// checkBase is a loopback node's config in dir, with a random cluster
// name and port, plus extra.
func checkBase(dir, extra string) string {
	return fmt.Sprintf(`node_name = "n1"
data_dir = %q
socket = %q
%s
cluster {
  name = "check-%d"
  port = %d
%s
}
`, filepath.Join(dir, "data"), filepath.Join(dir, "run", "ckd.sock"), topLevel(extra),
		rand.Uint32(), 20000+rand.IntN(20000), clusterLevel(extra))
}

// A case's extra text is "top-level lines || cluster block lines".
func topLevel(extra string) string     { top, _, _ := strings.Cut(extra, "||"); return top }
func clusterLevel(extra string) string { _, cl, _ := strings.Cut(extra, "||"); return cl }

// TestCheckRefusesWhatStartRefuses: each configuration a start refuses
// for what it names on the host (not a field's syntax), Check refuses
// too, binding nothing, and New with the same message.
func TestCheckRefusesWhatStartRefuses(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir()) // the default key file
	mk := func(t *testing.T, dir, name, src string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const goodKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string) string // the extra config
		want  string
	}{
		{"off loopback without a key", func(*testing.T, string) string {
			return `|| transport = "peers"
  peers = ["192.0.2.1:7237"]`
		}, "off loopback a cluster key is required"},
		{"missing hook script", func(*testing.T, string) string {
			return "hook \"a/*\" {\n  script = \"nosuch.lua\"\n}\n||"
		}, "nosuch.lua"},
		{"hook that does not compile", func(t *testing.T, dir string) string {
			mk(t, dir, "bad.lua", "function on_set(key, value\n", 0o644)
			return fmt.Sprintf("hook \"a/*\" {\n  script = %q\n}\n||", filepath.Join(dir, "bad.lua"))
		}, "bad.lua"},
		{"missing keyring_file", func(_ *testing.T, dir string) string {
			return fmt.Sprintf("|| keyring_file = %q", filepath.Join(dir, "nosuch.keys"))
		}, "nosuch.keys"},
		{"keyring_file others may read", func(t *testing.T, dir string) string {
			return fmt.Sprintf("|| keyring_file = %q", mk(t, dir, "ring.keys", goodKey+"\n", 0o644))
		}, "ring.keys"},
		{"bad encrypt key", func(*testing.T, string) string { return `|| encrypt = "c2hvcnQ="` }, "cluster.encrypt"},
		{"data dir under a file", func(t *testing.T, dir string) string {
			return fmt.Sprintf("data_dir = %q\n||", filepath.Join(mk(t, dir, "plain", "x", 0o644), "data"))
		}, "not a directory"},
		{"socket dir others may write", func(t *testing.T, dir string) string {
			ww := filepath.Join(dir, "ww")
			if err := os.Mkdir(ww, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(ww, 0o777); err != nil {
				t.Fatal(err)
			}
			return fmt.Sprintf("socket = %q\n||", filepath.Join(ww, "ckd.sock"))
		}, "not sticky"},
		{"missing socket group", func(*testing.T, string) string {
			return "socket_group = \"no-such-group-ck\"\n||"
		}, "no-such-group-ck"},
		{"missing interface", func(*testing.T, string) string {
			return `|| interface = "nosuch0"
  insecure = true`
		}, "nosuch0"},
		{"advertise loopback off lo", func(*testing.T, string) string {
			return `|| transport = "peers"
  peers = ["192.0.2.1:7237"]
  insecure = true
  interface = "nosuch0"
  advertise = "127.0.0.1:7237"`
		}, "cluster.advertise"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := checkBase(dir, tc.setup(t, dir))
			if strings.Contains(src, "data_dir = ") && strings.Count(src, "data_dir = ") > 1 {
				src = strings.Replace(src, fmt.Sprintf("data_dir = %q\n", filepath.Join(dir, "data")), "", 1)
			}
			if strings.Count(src, "socket = ") > 1 {
				src = strings.Replace(src, fmt.Sprintf("socket = %q\n", filepath.Join(dir, "run", "ckd.sock")), "", 1)
			}
			cfg, err := ParseConfig(filepath.Join(dir, "ckd.hcl"), []byte(src))
			if err != nil {
				t.Fatalf("parse: %v\n%s", err, src)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("the case should pass Validate, the field checks, and fail only Check: %v", err)
			}
			cerr := cfg.Check()
			if cerr == nil || !strings.Contains(cerr.Error(), tc.want) {
				t.Fatalf("Check: %v, want an error containing %q", cerr, tc.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "run")); err == nil {
				t.Errorf("Check made the socket's directory: it must bind and make nothing")
			}
			d, err := New(cfg, Options{Logger: hclog.NewNullLogger()})
			if err == nil {
				d.Close()
				t.Fatalf("New started a node on a config Check refuses")
			}
			if !strings.Contains(err.Error(), cerr.Error()) {
				t.Errorf("New: %v\nCheck: %v: want the same error", err, cerr)
			}
		})
	}
}

// TestCheckPassesWhatStartAccepts: a loopback node's config passes Check,
// which makes nothing (no data dir, no socket, no default key file), and
// then starts.
func TestCheckPassesWhatStartAccepts(t *testing.T) {
	xdg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", xdg)
	dir := t.TempDir()
	cfg, err := ParseConfig(filepath.Join(dir, "ckd.hcl"), []byte(checkBase(dir, "||")))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
	for _, p := range []string{filepath.Join(dir, "data"), filepath.Join(dir, "run"), filepath.Join(xdg, "ckd")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("Check made %s", p)
		}
	}
	d, err := New(cfg, Options{Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatalf("New after Check passed: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}
