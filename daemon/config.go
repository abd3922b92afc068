package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudknowledge/ck/daemon/cluster"
	"github.com/cloudknowledge/ck/daemon/natsbridge"
	"github.com/cloudknowledge/ck/internal/limits"
	"github.com/cloudknowledge/ck/rpc"
)

// Config is ckd's whole configuration: the keys of config.hcl.example, one struct
// with HCL tags. DefaultConfig gives the embedded default that needs no
// file; LoadConfig overlays a file on it; Validate checks it and names the
// field at fault.
type Config struct {
	NodeName     string `hcl:"node_name,optional"`
	DataDir      string `hcl:"data_dir,optional"`
	Socket       string `hcl:"socket,optional"`
	SocketMode   string `hcl:"socket_mode,optional"`
	SocketGroup  string `hcl:"socket_group,optional"`
	LogLevel     string `hcl:"log_level,optional"`
	LogJSON      bool   `hcl:"log_json,optional"`
	MaxValueSize int    `hcl:"max_value_size,optional"`
	// MaxRequestBytes and MaxConnections bound the local API
	// (docs/ARCHITECTURE.md, Bounded resources).
	MaxRequestBytes int64  `hcl:"max_request_bytes,optional"`
	MaxConnections  int    `hcl:"max_connections,optional"`
	MetricsAddr     string `hcl:"metrics_addr,optional"`
	WatchHistory    int    `hcl:"watch_history,optional"`
	HookPool        int    `hcl:"hook_pool,optional"`
	HookMemory      int64  `hcl:"hook_memory,optional"`
	HookHeapLimit   int64  `hcl:"hook_heap_limit,optional"`

	Cluster *ClusterConfig `hcl:"cluster,block"`
	Hooks   []HookConfig   `hcl:"hook,block"`
	// NATS is the nats block; nil when the file has none (no bridge).
	NATS *NATSConfig `hcl:"nats,block"`

	// Dir is the directory of the config file, against which relative
	// paths in it (hook scripts) are resolved. Not a config key.
	Dir string
	// ranges maps a field's dotted name to where the file set it, so
	// Validate's errors can name file and line.
	ranges map[string]string
	// dur holds the durations Validate resolved (Durations).
	dur Durations
}

// Durations are the config's durations as time.Duration: the file keeps
// them as strings ("500ms"), and Validate parses each once, naming the
// field if it does not parse, so that no later reader parses them again
// (and none can ignore an error doing so).
type Durations struct {
	Heartbeat    time.Duration // cluster.heartbeat
	DeadAfter    time.Duration // cluster.dead_after
	QueryTimeout time.Duration // cluster.query_timeout
	SyncInterval time.Duration // cluster.sync_interval
	TombstoneTTL time.Duration // cluster.tombstone_ttl
	PurgeLogTTL  time.Duration // cluster.purge_log_ttl
	// Hooks holds each hook block's timeout, in the order of Config.Hooks
	// (defaultHookTimeout where the block sets none).
	Hooks []time.Duration
}

// Durations are the durations Validate resolved; zero before it ran.
func (c *Config) Durations() Durations { return c.dur }

// ClusterConfig is the cluster block: how this node finds and talks to its
// peers (docs/PROTOCOL.md, Transports).
type ClusterConfig struct {
	Name         string   `hcl:"name,optional"`
	Transport    string   `hcl:"transport,optional"`
	Interface    string   `hcl:"interface,optional"`
	Group        string   `hcl:"group,optional"`
	Port         int      `hcl:"port,optional"`
	Bind         string   `hcl:"bind,optional"`
	Advertise    string   `hcl:"advertise,optional"`
	Broadcast    string   `hcl:"broadcast,optional"`
	Peers        []string `hcl:"peers,optional"`
	Encrypt      string   `hcl:"encrypt,optional"`
	KeyringFile  string   `hcl:"keyring_file,optional"`
	Insecure     bool     `hcl:"insecure,optional"`
	Heartbeat    string   `hcl:"heartbeat,optional"`
	DeadAfter    string   `hcl:"dead_after,optional"`
	QueryTimeout string   `hcl:"query_timeout,optional"`
	SyncInterval string   `hcl:"sync_interval,optional"`
	TombstoneTTL string   `hcl:"tombstone_ttl,optional"`
	PurgeLogTTL  string   `hcl:"purge_log_ttl,optional"`
	MaxDatagram  int      `hcl:"max_datagram,optional"`
	// FreshWitnesses: how many nodes witness each key for fresh reads
	// (docs/PROTOCOL.md, Fresh reads); 0: off, every fresh read asks
	// every node.
	FreshWitnesses int `hcl:"fresh_witnesses,optional"`
}

// NATSConfig is the nats block (docs/PROTOCOL.md, NATS bridge). The bridge runs only when the
// block is present; keys absent from it take DefaultNATSConfig's values.
type NATSConfig struct {
	URL           string         `hcl:"url,optional"`  // several: comma-separated
	Name          string         `hcl:"name,optional"` // "" → ckd-<node_name>
	CredsFile     string         `hcl:"creds_file,optional"`
	TLS           *NATSTLSConfig `hcl:"tls,block"`
	Insecure      bool           `hcl:"insecure,optional"` // allow a non-loopback URL without TLS
	SubjectPrefix string         `hcl:"subject_prefix,optional"`
	Publish       string         `hcl:"publish,optional"` // off | local | all
	Subscribe     bool           `hcl:"subscribe,optional"`
	QueueGroup    string         `hcl:"queue_group,optional"` // "" → <prefix>.<cluster name>
	BufferBytes   int            `hcl:"buffer_bytes,optional"`
}

// NATSTLSConfig is the nats block's tls block: files relative to the config
// file.
type NATSTLSConfig struct {
	CAFile   string `hcl:"ca_file,optional"`
	CertFile string `hcl:"cert_file,optional"`
	KeyFile  string `hcl:"key_file,optional"`
}

// DefaultNATSConfig is what an empty nats block means.
func DefaultNATSConfig() *NATSConfig {
	return &NATSConfig{
		URL:           natsbridge.DefaultURL,
		TLS:           &NATSTLSConfig{},
		SubjectPrefix: natsbridge.DefaultPrefix,
		Publish:       natsbridge.PublishLocal,
		BufferBytes:   natsbridge.DefaultBufferBytes,
	}
}

// HookConfig is one hook block: the Lua script run for keys matching Pattern.
type HookConfig struct {
	Pattern string `hcl:",label"`
	Script  string `hcl:"script"`
	Timeout string `hcl:"timeout,optional"`
}

// Limits on values (docs/PROTOCOL.md, Data model).
const (
	DefaultMaxValueSize = limits.DefaultMaxValueSize
	MaxMaxValueSize     = limits.MaxMaxValueSize
)

// DefaultConfig is the embedded default: one node on lo, data and socket in
// the user's default places. Host-dependent values (node name, data dir,
// socket) are filled in here from the environment.
func DefaultConfig() Config {
	name, err := os.Hostname()
	if err != nil || name == "" {
		name = "ckd"
	}
	dataDir := rpc.DefaultDataDir()
	return Config{
		NodeName:        name,
		DataDir:         dataDir,
		Socket:          rpc.DefaultSocket(dataDir),
		SocketMode:      "0660",
		LogLevel:        "info",
		MaxValueSize:    DefaultMaxValueSize,
		MaxRequestBytes: rpc.DefaultMaxRequestBytes,
		MaxConnections:  rpc.DefaultMaxConnections,
		WatchHistory:    100000,
		HookMemory:      16 << 20,
		HookHeapLimit:   512 << 20,
		Cluster: &ClusterConfig{
			Name:           "default",
			Transport:      "multicast",
			Interface:      "lo",
			Group:          "239.192.72.37",
			Port:           7237,
			Bind:           "127.0.0.1:0",
			Peers:          []string{},
			Heartbeat:      "1s",
			DeadAfter:      "30s",
			QueryTimeout:   "500ms",
			SyncInterval:   "1s",
			TombstoneTTL:   "168h",
			PurgeLogTTL:    "720h",
			MaxDatagram:    1200,
			FreshWitnesses: cluster.DefaultFreshWitnesses,
		},
	}
}

// FieldError is a Validate failure: the dotted name of the field and what
// is wrong with it. Where the field came from a file, Pos says where.
type FieldError struct {
	Pos   string // "file:line:col", or "" for a default or a flag
	Field string
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Pos != "" {
		return fmt.Sprintf("%s: %s: %s", e.Pos, e.Field, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Field, e.Msg)
}

// Validate checks every field and returns the first problem as a
// *FieldError naming it (and, for fields read from a file, where).
func (c *Config) Validate() error {
	for _, check := range []func() error{c.validateNode, c.validateLimits, c.validateCluster, c.validateHooks, c.validateNATS} {
		if err := check(); err != nil {
			var fe *FieldError
			if errors.As(err, &fe) && fe.Pos == "" {
				fe.Pos = c.ranges[fe.Field]
			}
			return err
		}
	}
	return nil
}

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

func (c *Config) validateNode() error {
	switch {
	case c.NodeName == "":
		return fieldErr("node_name", "must not be empty")
	case c.DataDir == "":
		return fieldErr("data_dir", "must not be empty")
	case c.Socket == "":
		return fieldErr("socket", "must not be empty")
	}
	if _, err := c.SocketFileMode(); err != nil {
		return fieldErr("socket_mode", "%v", err)
	}
	if _, err := hclogLevel(c.LogLevel); err != nil {
		return fieldErr("log_level", "%v", err)
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return fieldErr("metrics_addr", "want host:port: %v", err)
		}
	}
	return nil
}

func (c *Config) validateLimits() error {
	switch {
	case c.MaxValueSize < 1 || c.MaxValueSize > MaxMaxValueSize:
		return fieldErr("max_value_size", "must be between 1 and %d bytes, not %d", MaxMaxValueSize, c.MaxValueSize)
	case c.MaxRequestBytes < int64(c.MaxValueSize):
		return fieldErr("max_request_bytes", "must be at least max_value_size (%d bytes), not %d", c.MaxValueSize, c.MaxRequestBytes)
	case c.MaxConnections < 1:
		return fieldErr("max_connections", "must be at least 1, not %d", c.MaxConnections)
	case c.WatchHistory < 1:
		return fieldErr("watch_history", "must be at least 1, not %d", c.WatchHistory)
	case c.HookPool < 0:
		return fieldErr("hook_pool", "must be 0 (2 x CPUs) or more, not %d", c.HookPool)
	case c.HookMemory < 1<<10:
		return fieldErr("hook_memory", "must be at least 1024 bytes, not %d", c.HookMemory)
	case c.HookHeapLimit < 16<<20:
		return fieldErr("hook_heap_limit", "must be at least 16 MiB, not %d", c.HookHeapLimit)
	}
	return nil
}

func (c *Config) validateCluster() error {
	cl := c.Cluster
	if cl == nil {
		return fieldErr("cluster", "missing")
	}
	if cl.Name == "" {
		return fieldErr("cluster.name", "must not be empty")
	}
	switch cl.Transport {
	case "multicast", "broadcast", "peers", "nats":
	default:
		return fieldErr("cluster.transport", "must be multicast, broadcast, peers or nats, not %q", cl.Transport)
	}
	if cl.Interface == "" {
		return fieldErr("cluster.interface", "must not be empty")
	}
	if g, err := netip.ParseAddr(cl.Group); err != nil || !g.Is4() || !g.IsMulticast() {
		return fieldErr("cluster.group", "must be an IPv4 multicast address, not %q", cl.Group)
	}
	if cl.Port < 1 || cl.Port > 65535 {
		return fieldErr("cluster.port", "must be between 1 and 65535, not %d", cl.Port)
	}
	for field, addr := range map[string]string{"cluster.bind": cl.Bind, "cluster.advertise": cl.Advertise} {
		if err := checkAddrPort(addr, field == "cluster.bind"); err != nil {
			return fieldErr(field, "%v", err)
		}
	}
	if cl.Broadcast != "" {
		if a, err := netip.ParseAddr(cl.Broadcast); err != nil || !a.Is4() {
			return fieldErr("cluster.broadcast", "must be an IPv4 address, not %q", cl.Broadcast)
		}
	}
	for i, p := range cl.Peers {
		if err := checkAddrPort(p, false); err != nil || p == "" {
			return fieldErr("cluster.peers", "entry %d (%q): want host:port", i, p)
		}
	}
	if cl.Transport == "peers" && len(cl.Peers) == 0 {
		return fieldErr("cluster.peers", "transport \"peers\" needs at least one peer")
	}
	if cl.Encrypt != "" && cl.KeyringFile != "" {
		return fieldErr("cluster.encrypt", "set encrypt or keyring_file, not both")
	}
	if cl.MaxDatagram < 512 || cl.MaxDatagram > 65000 {
		return fieldErr("cluster.max_datagram", "must be between 512 and 65000 bytes, not %d", cl.MaxDatagram)
	}
	if cl.FreshWitnesses < 0 || cl.FreshWitnesses > cluster.MaxFreshWitnesses {
		return fieldErr("cluster.fresh_witnesses", "must be between 0 (off) and %d, not %d", cluster.MaxFreshWitnesses, cl.FreshWitnesses)
	}
	return c.validateDurations()
}

func (c *Config) validateDurations() error {
	cl := c.Cluster
	var d Durations
	for _, f := range []struct {
		field, value string
		min          time.Duration
		to           *time.Duration
	}{
		{"cluster.heartbeat", cl.Heartbeat, time.Millisecond, &d.Heartbeat},
		{"cluster.dead_after", cl.DeadAfter, time.Millisecond, &d.DeadAfter},
		{"cluster.query_timeout", cl.QueryTimeout, time.Millisecond, &d.QueryTimeout},
		{"cluster.sync_interval", cl.SyncInterval, time.Millisecond, &d.SyncInterval},
		{"cluster.tombstone_ttl", cl.TombstoneTTL, time.Second, &d.TombstoneTTL},
		{"cluster.purge_log_ttl", cl.PurgeLogTTL, time.Second, &d.PurgeLogTTL},
	} {
		v, err := parseDuration(f.value, f.min)
		if err != nil {
			return fieldErr(f.field, "%v", err)
		}
		*f.to = v
	}
	if d.DeadAfter < 3*d.Heartbeat {
		return fieldErr("cluster.dead_after", "must be at least 3 heartbeats (%s), not %s", 3*d.Heartbeat, cl.DeadAfter)
	}
	if d.PurgeLogTTL < d.TombstoneTTL {
		return fieldErr("cluster.purge_log_ttl", "must not be shorter than tombstone_ttl (%s)", cl.TombstoneTTL)
	}
	d.Hooks = c.dur.Hooks // validateHooks ran first or runs next
	c.dur = d
	return nil
}

// defaultHookTimeout bounds a hook whose block sets no timeout.
const defaultHookTimeout = 50 * time.Millisecond

func (c *Config) validateHooks() error {
	seen := map[string]bool{}
	timeouts := make([]time.Duration, len(c.Hooks))
	for i, h := range c.Hooks {
		field := fmt.Sprintf("hook[%q]", h.Pattern)
		switch {
		case h.Pattern == "":
			return fieldErr(field, "the pattern must not be empty")
		case seen[h.Pattern]:
			return fieldErr(field, "a hook for this pattern is already defined")
		case h.Script == "":
			return fieldErr(field+".script", "must not be empty")
		}
		seen[h.Pattern] = true
		timeouts[i] = defaultHookTimeout
		if h.Timeout != "" {
			t, err := parseDuration(h.Timeout, time.Millisecond)
			if err != nil {
				return fieldErr(field+".timeout", "%v", err)
			}
			timeouts[i] = t
		}
	}
	c.dur.Hooks = timeouts
	return nil
}

func (c *Config) validateNATS() error {
	n := c.NATS
	if n == nil {
		if c.Cluster != nil && c.Cluster.Transport == "nats" {
			return fieldErr("nats", `cluster.transport "nats" needs a nats block to connect with (at least: nats { url = "nats://..." })`)
		}
		return nil
	}
	urls, err := natsbridge.ParseURLs(n.URL)
	if err != nil {
		return fieldErr("nats.url", "%v", err)
	}
	tlsFiles := n.TLS != nil && (n.TLS.CAFile != "" || n.TLS.CertFile != "" || n.TLS.KeyFile != "")
	for _, u := range urls {
		if !n.Insecure && !tlsFiles && !natsbridge.TLSURL(u) && !natsbridge.LoopbackURL(u) {
			return fieldErr("nats.url", "%s is not on loopback: use TLS (a tls:// URL or a tls block), or set insecure = true", u)
		}
	}
	if err := natsbridge.CheckPrefix(n.SubjectPrefix); err != nil {
		return fieldErr("nats.subject_prefix", "%v", err)
	}
	switch n.Publish {
	case natsbridge.PublishOff, natsbridge.PublishLocal, natsbridge.PublishAll:
	default:
		return fieldErr("nats.publish", "must be off, local or all, not %q", n.Publish)
	}
	if strings.ContainsAny(n.QueueGroup, " \t\r\n") {
		return fieldErr("nats.queue_group", "must not contain white space: %q", n.QueueGroup)
	}
	if n.BufferBytes <= 0 {
		return fieldErr("nats.buffer_bytes", "must be more than 0, not %d", n.BufferBytes)
	}
	if n.CredsFile != "" {
		if err := checkSecretFile(c.filePath(n.CredsFile)); err != nil {
			return fieldErr("nats.creds_file", "%v", err)
		}
	}
	return c.validateNATSTLS()
}

func (c *Config) validateNATSTLS() error {
	t := c.NATS.TLS
	if t == nil {
		return nil
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return fieldErr("nats.tls.cert_file", "cert_file and key_file go together")
	}
	for field, path := range map[string]string{"nats.tls.ca_file": t.CAFile, "nats.tls.cert_file": t.CertFile} {
		if path == "" {
			continue
		}
		if _, err := os.Stat(c.filePath(path)); err != nil {
			return fieldErr(field, "%v", err)
		}
	}
	if t.KeyFile != "" {
		if err := checkSecretFile(c.filePath(t.KeyFile)); err != nil {
			return fieldErr("nats.tls.key_file", "%v", err)
		}
	}
	return nil
}

// checkSecretFile refuses a missing file, and one other users may read.
func checkSecretFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o004 != 0 {
		return fmt.Errorf("%s is readable by other users (mode %04o): chmod o-r it", path, fi.Mode().Perm())
	}
	return nil
}

// filePath resolves a path from the config file against its directory.
func (c *Config) filePath(p string) string {
	if p == "" || filepath.IsAbs(p) || c.Dir == "" {
		return p
	}
	return filepath.Join(c.Dir, p)
}

// NATSBridge is the NATS bridge's configuration, from the nats block with
// paths resolved and the node's and cluster's names; ok is false when the
// block is absent (no bridge). Call it on a validated Config.
func (c *Config) NATSBridge() (cfg natsbridge.Config, ok bool) {
	n := c.NATS
	if n == nil {
		return natsbridge.Config{}, false
	}
	urls, _ := natsbridge.ParseURLs(n.URL)
	cfg = natsbridge.Config{
		URLs:        urls,
		Name:        n.Name,
		NodeName:    c.NodeName,
		CredsFile:   c.filePath(n.CredsFile),
		Prefix:      n.SubjectPrefix,
		Publish:     n.Publish,
		Subscribe:   n.Subscribe,
		QueueGroup:  n.QueueGroup,
		BufferBytes: n.BufferBytes,
	}
	if c.Cluster != nil {
		cfg.ClusterName = c.Cluster.Name
	}
	if t := n.TLS; t != nil {
		cfg.CAFile, cfg.CertFile, cfg.KeyFile = c.filePath(t.CAFile), c.filePath(t.CertFile), c.filePath(t.KeyFile)
	}
	return cfg, true
}

func parseDuration(s string, min time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want a duration like \"500ms\" or \"1s\", not %q", s)
	}
	if d < min {
		return 0, fmt.Errorf("must be at least %s, not %s", min, s)
	}
	return d, nil
}

func checkAddrPort(s string, portZeroOK bool) error {
	if s == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want host:port, not %q", s)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 || (p == 0 && !portZeroOK) {
		return fmt.Errorf("bad port in %q", s)
	}
	if host == "" {
		return fmt.Errorf("missing host in %q", s)
	}
	return nil
}

// SocketFileMode parses socket_mode, an octal permission string.
func (c *Config) SocketFileMode() (os.FileMode, error) {
	m, err := strconv.ParseUint(c.SocketMode, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("want an octal mode like \"0660\", not %q", c.SocketMode)
	}
	return os.FileMode(m), nil
}

// ScriptPath resolves the hook's script against the config file's directory.
func (c *Config) ScriptPath(h HookConfig) string {
	if filepath.IsAbs(h.Script) || c.Dir == "" {
		return h.Script
	}
	return filepath.Join(c.Dir, h.Script)
}

// StorePath is the store's file in data_dir.
func (c *Config) StorePath() string { return filepath.Join(c.DataDir, "ckd.db") }

func hclogLevel(s string) (hclog.Level, error) {
	switch strings.ToLower(s) {
	case "trace":
		return hclog.Trace, nil
	case "debug":
		return hclog.Debug, nil
	case "info":
		return hclog.Info, nil
	case "warn":
		return hclog.Warn, nil
	case "error":
		return hclog.Error, nil
	}
	return hclog.NoLevel, fmt.Errorf("must be trace, debug, info, warn or error, not %q", s)
}

// Level is the validated log level.
func (c *Config) Level() hclog.Level {
	l, _ := hclogLevel(c.LogLevel)
	return l
}
