package daemon

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestExampleConfigMatchesDefaults(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join("..", "config.hcl.example"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config.hcl.example does not validate: %v", err)
	}
	def := DefaultConfig()
	cfg.Dir, cfg.ranges, cfg.dur = "", nil, Durations{} // Validate resolved the durations
	if !reflect.DeepEqual(cfg, def) {
		t.Errorf("config.hcl.example differs from DefaultConfig():\n file: %+v %+v\n code: %+v %+v", cfg, *cfg.Cluster, def, *def.Cluster)
	}
	// Every key the struct knows is documented (set or commented out).
	src, _ := os.ReadFile(filepath.Join("..", "config.hcl.example"))
	for _, key := range hclKeys(reflect.TypeOf(Config{})) {
		if !strings.Contains(string(src), key+" ") {
			t.Errorf("config.hcl.example does not mention %q", key)
		}
	}
}

func hclKeys(t reflect.Type) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		tag := strings.Split(t.Field(i).Tag.Get("hcl"), ",")
		if tag[0] == "" {
			continue
		}
		keys = append(keys, tag[0])
		if len(tag) > 1 && tag[1] == "block" {
			ft := t.Field(i).Type
			for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			keys = append(keys, hclKeys(ft)...)
		}
	}
	return keys
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"syntax", "log_level = \n", "test.hcl:1,"},
		{"unknown key", "colour = \"blue\"\n", `test.hcl:1,1: Unsupported argument`},
		{"wrong type", "max_value_size = \"big\"\n", "test.hcl:1,"},
		{"bad level", "\nlog_level = \"loud\"\n", `test.hcl:2,1: log_level: must be trace, debug, info, warn or error, not "loud"`},
		{"value too big", "max_value_size = 100000000\n", "test.hcl:1,1: max_value_size: must be between 1 and 67108864"},
		{"bad port", "cluster {\n  port = 70000\n}\n", "test.hcl:2,3: cluster.port: must be between 1 and 65535"},
		{"bad transport", "cluster {\n transport = \"carrier-pigeon\"\n}\n", "cluster.transport: must be multicast, broadcast, peers or nats"},
		{"bad duration", "cluster {\n heartbeat = \"soon\"\n}\n", `test.hcl:2,2: cluster.heartbeat: want a duration like "500ms" or "1s", not "soon"`},
		{"dead too short", "cluster {\n dead_after = \"2s\"\n}\n", "cluster.dead_after: must be at least 3 heartbeats"},
		{"bad group", "cluster {\n group = \"10.0.0.1\"\n}\n", "cluster.group: must be an IPv4 multicast address"},
		{"bad bind", "cluster {\n bind = \"nowhere\"\n}\n", `cluster.bind: want host:port, not "nowhere"`},
		{"too many witnesses", "cluster {\n fresh_witnesses = 17\n}\n", "test.hcl:2,2: cluster.fresh_witnesses: must be between 0 (off) and 16, not 17"},
		{"negative witnesses", "cluster {\n fresh_witnesses = -1\n}\n", "cluster.fresh_witnesses: must be between 0 (off) and 16, not -1"},
		{"peers without list", "cluster {\n transport = \"peers\"\n}\n", "cluster.peers: transport \"peers\" needs at least one peer"},
		{"bad socket mode", "socket_mode = \"rw\"\n", `socket_mode: want an octal mode like "0660", not "rw"`},
		{"hook without script", "hook \"a/*\" {\n}\n", "test.hcl:1,"},
		{"hook bad timeout", "hook \"a/*\" {\n script = \"x.lua\"\n timeout = \"forever\"\n}\n", `test.hcl:3,2: hook["a/*"].timeout`},
		{"duplicate block", "cluster {}\ncluster {}\n", "test.hcl:2,1: Duplicate cluster block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig("test.hcl", []byte(tc.src))
			if err == nil {
				err = cfg.Validate()
			}
			if err == nil {
				t.Fatalf("no error for %q", tc.src)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestConfigOverlay(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ckd.hcl")
	os.WriteFile(path, []byte("node_name = \"alpha\"\ncluster {\n  name = \"blue\"\n}\nhook \"cfg/*\" {\n  script = \"h.lua\"\n}\n"), 0o644)
	cfg, err := LoadWithOverrides(path, Overrides{DataDir: filepath.Join(dir, "d2")})
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	def := DefaultConfig()
	if cfg.NodeName != "alpha" || cfg.Cluster.Name != "blue" || cfg.Cluster.Port != def.Cluster.Port {
		t.Errorf("overlay lost a value or a default: %+v %+v", cfg, *cfg.Cluster)
	}
	if cfg.DataDir != filepath.Join(dir, "d2") {
		t.Errorf("data dir flag not applied: %s", cfg.DataDir)
	}
	if got, want := cfg.ScriptPath(cfg.Hooks[0]), filepath.Join(dir, "h.lua"); got != want {
		t.Errorf("script path %s, want %s (relative to the config file)", got, want)
	}
}

// TestExampleNATSBlock: the nats block the example documents, uncommented,
// is exactly the defaults of an empty block.
func TestExampleNATSBlock(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "config.hcl.example"))
	if err != nil {
		t.Fatal(err)
	}
	var block []string
	in := false
	for _, line := range strings.Split(string(src), "\n") {
		if line == "# nats {" {
			in = true
		}
		if in {
			block = append(block, strings.TrimPrefix(strings.TrimPrefix(line, "#"), " "))
		}
		if in && line == "# }" {
			break
		}
	}
	if len(block) < 3 {
		t.Fatal("config.hcl.example has no commented-out nats block")
	}
	cfg, err := ParseConfig("example.hcl", []byte(strings.Join(block, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.NATS, DefaultNATSConfig()) {
		t.Errorf("example nats block %+v %+v, defaults %+v", *cfg.NATS, *cfg.NATS.TLS, *DefaultNATSConfig())
	}
}

func TestNATSBlock(t *testing.T) {
	cfg, err := ParseConfig("a.hcl", []byte("node_name = \"alpha\"\n"))
	if err != nil || cfg.NATS != nil {
		t.Fatalf("no nats block: %+v, %v; want no bridge", cfg.NATS, err)
	}
	if _, ok := cfg.NATSBridge(); ok {
		t.Error("NATSBridge without a nats block")
	}
	cfg, err = ParseConfig("b.hcl", []byte("nats {}\n"))
	if err != nil || cfg.Validate() != nil || !reflect.DeepEqual(cfg.NATS, DefaultNATSConfig()) {
		t.Fatalf("empty nats block: %+v, %v", cfg.NATS, err)
	}

	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ck.creds"), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("x"), 0o644)
	src := `node_name = "alpha"
cluster {
  name = "blue"
}
nats {
  url            = "tls://nats1.example.com:4222, tls://nats2.example.com:4222"
  creds_file     = "ck.creds"
  tls {
    ca_file = "ca.pem"
  }
  subject_prefix = "acme.ck"
  publish        = "all"
  subscribe      = true
  buffer_bytes   = 1024
}
`
	path := filepath.Join(dir, "ckd.hcl")
	os.WriteFile(path, []byte(src), 0o644)
	cfg, err = LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	bc, ok := cfg.NATSBridge()
	if !ok {
		t.Fatal("no bridge config")
	}
	if len(bc.URLs) != 2 || bc.URLs[1] != "tls://nats2.example.com:4222" || bc.NodeName != "alpha" ||
		bc.ClusterName != "blue" || bc.CredsFile != filepath.Join(dir, "ck.creds") ||
		bc.CAFile != filepath.Join(dir, "ca.pem") || bc.Prefix != "acme.ck" || bc.Publish != "all" ||
		!bc.Subscribe || bc.BufferBytes != 1024 || bc.QueueGroup != "" || bc.Name != "" {
		t.Errorf("bridge config %+v", bc)
	}
}

func TestNATSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.creds")
	os.WriteFile(open, []byte("x"), 0o644)
	for _, tc := range []struct{ name, src, want string }{
		{"bad url", "nats {\n  url = \"http://x:1\"\n}\n", "test.hcl:2,3: nats.url: URL \"http://x:1\": scheme must be"},
		{"off loopback", "nats {\n  url = \"nats://10.1.2.3:4222\"\n}\n", "nats.url: nats://10.1.2.3:4222 is not on loopback: use TLS"},
		{"one of several off loopback", "nats {\n  url = \"nats://127.0.0.1:4222,nats://h.example.com:4222\"\n}\n", "nats.url: nats://h.example.com:4222 is not on loopback"},
		{"bad publish", "nats {\n  publish = \"everything\"\n}\n", "test.hcl:2,3: nats.publish: must be off, local or all"},
		{"no buffer", "nats {\n  buffer_bytes = 0\n}\n", "nats.buffer_bytes: must be more than 0, not 0"},
		{"bad prefix", "nats {\n  subject_prefix = \"ck.>\"\n}\n", "nats.subject_prefix"},
		{"queue group", "nats {\n  queue_group = \"a b\"\n}\n", "nats.queue_group: must not contain white space"},
		{"creds readable", "nats {\n  creds_file = \"" + open + "\"\n}\n", "nats.creds_file: " + open + " is readable by other users (mode 0644)"},
		{"creds missing", "nats {\n  creds_file = \"" + filepath.Join(dir, "none") + "\"\n}\n", "nats.creds_file: stat"},
		{"cert without key", "nats {\n  tls {\n    cert_file = \"c.pem\"\n  }\n}\n", "nats.tls.cert_file: cert_file and key_file go together"},
		{"missing ca", "nats {\n  tls {\n    ca_file = \"" + filepath.Join(dir, "none.pem") + "\"\n  }\n}\n", "test.hcl:3,5: nats.tls.ca_file: stat"},
		{"unknown key", "nats {\n  colour = \"blue\"\n}\n", "test.hcl:2,3: Unsupported argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig("test.hcl", []byte(tc.src))
			if err == nil {
				err = cfg.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
	for _, ok := range []string{
		"nats {\n  url = \"nats://10.1.2.3:4222\"\n  insecure = true\n}\n",
		"nats {\n  url = \"tls://nats.example.com:4222\"\n}\n",
		"nats {\n  url = \"localhost:4222\"\n  publish = \"off\"\n  subscribe = true\n}\n",
	} {
		cfg, err := ParseConfig("test.hcl", []byte(ok))
		if err == nil {
			err = cfg.Validate()
		}
		if err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}
