package daemon

import (
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{"4096", 4096, ""},
		{"4MiB", 4 << 20, ""},
		{"4 mib", 4 << 20, ""},
		{"512KiB", 512 << 10, ""},
		{"16M", 16 << 20, ""},
		{"1GB", 1_000_000_000, ""},
		{"2kb", 2000, ""},
		{"7B", 7, ""},
		{"", 0, "not a size"},
		{"-1MiB", 0, "not a size"},
		{"1.5MiB", 0, "not a size"},
		{"4 parsecs", 0, "unknown unit"},
		{"99999999999999999999", 0, "too large"},
		{"9999999999999GiB", 0, "too large"},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseSize(%q) = %d, %v; want an error with %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

// Sizes in a config file take units, at the top level and in blocks, and
// a bad one names the file, line and key.
func TestConfigSizes(t *testing.T) {
	src := `max_value_size = "1MiB"
max_request_bytes = "16MiB"
hook_memory = 1048576
cluster {
  max_datagram = "1200B"
}
nats {
  buffer_bytes = "8MiB"
}
`
	cfg, err := ParseConfig("sizes.hcl", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxValueSize != 1<<20 || cfg.MaxRequestBytes != 16<<20 || cfg.HookMemory != 1<<20 ||
		cfg.Cluster.MaxDatagram != 1200 || cfg.NATS.BufferBytes != 8<<20 {
		t.Errorf("decoded %d %d %d %d %d", cfg.MaxValueSize, cfg.MaxRequestBytes, cfg.HookMemory, cfg.Cluster.MaxDatagram, cfg.NATS.BufferBytes)
	}
	_, err = ParseConfig("bad.hcl", []byte("cluster {\n  max_datagram = \"12 furlongs\"\n}\n"))
	if err == nil || !strings.Contains(err.Error(), "bad.hcl:2") || !strings.Contains(err.Error(), "max_datagram") {
		t.Errorf("bad size: %v; want an error naming bad.hcl:2 and max_datagram", err)
	}
}
