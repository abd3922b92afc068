package natsbridge

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Publish modes (the nats block's publish key).
const (
	PublishOff   = "off"   // publish nothing
	PublishLocal = "local" // changes whose record's origin is this node
	PublishAll   = "all"   // every change applied here
)

// Defaults of Config.
const (
	DefaultURL           = "nats://127.0.0.1:4222"
	DefaultPrefix        = "ck"
	DefaultBufferBytes   = 8 << 20
	DefaultReconnectWait = 2 * time.Second
	DefaultDrainTimeout  = 2 * time.Second
	DefaultWorkers       = 8

	// assumedMaxPayload stands in for the server's max_payload until the
	// first connection tells it (nats-server's default). A message sized
	// for it that a smaller server refuses costs that connection, and is
	// then resent, truncated to the size the server announced.
	assumedMaxPayload = 1 << 20
	// flushTimeout bounds one confirmation round trip.
	flushTimeout = 5 * time.Second
)

// Config is what the bridge needs: the nats block of config.hcl.example (the daemon
// turns its NATSConfig into one), the node's and cluster's names, and a few
// tunings that are not config keys. Zero values take the defaults.
type Config struct {
	URLs        []string // server URLs, e.g. from ParseURLs; at least one
	Name        string   // connection name; "" → "ckd-" + NodeName
	NodeName    string
	ClusterName string // for the default queue group
	CredsFile   string // NATS user credentials (JWT + nkey seed)
	CAFile      string // PEM CA bundle to verify the server with
	CertFile    string // client certificate (with KeyFile) for mutual TLS
	KeyFile     string
	Prefix      string // subject prefix; "" → "ck"
	Publish     string // PublishOff | PublishLocal | PublishAll; "" → local
	Subscribe   bool   // take writes from <prefix>.set.> and <prefix>.del.>
	QueueGroup  string // "" → <prefix>.<ClusterName>
	BufferBytes int    // outbound bytes kept while disconnected; 0 → 8 MiB

	ReconnectWait time.Duration // between reconnect attempts; 0 → 2s (jittered)
	DrainTimeout  time.Duration // at stop: catching up and confirming; 0 → 2s
	Workers       int           // inbound writes applied in parallel; 0 → 8
}

func (c Config) withDefaults() (Config, error) {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Publish == "" {
		c.Publish = PublishLocal
	}
	if c.Name == "" {
		c.Name = "ckd-" + c.NodeName
	}
	if c.QueueGroup == "" {
		c.QueueGroup = c.Prefix
		if c.ClusterName != "" {
			c.QueueGroup += "." + c.ClusterName
		}
	}
	if c.BufferBytes == 0 {
		c.BufferBytes = DefaultBufferBytes
	}
	if c.ReconnectWait <= 0 {
		c.ReconnectWait = DefaultReconnectWait
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	return c, c.check()
}

func (c Config) check() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrBadConfig, field, fmt.Sprintf(format, args...))
	}
	if len(c.URLs) == 0 {
		return bad("url", "no server URL")
	}
	for _, u := range c.URLs {
		if _, err := parseURL(u); err != nil {
			return bad("url", "%v", err)
		}
	}
	if err := CheckPrefix(c.Prefix); err != nil {
		return bad("subject_prefix", "%v", err)
	}
	switch c.Publish {
	case PublishOff, PublishLocal, PublishAll:
	default:
		return bad("publish", "must be off, local or all, not %q", c.Publish)
	}
	if strings.ContainsAny(c.QueueGroup, " \t\r\n") {
		return bad("queue_group", "%q holds white space", c.QueueGroup)
	}
	if c.BufferBytes < 0 {
		return bad("buffer_bytes", "must be more than 0, not %d", c.BufferBytes)
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return bad("tls", "cert_file and key_file go together")
	}
	return nil
}

// ParseURLs splits the url key (several URLs comma-separated), checks each
// and returns them with a scheme ("nats://" where none was written).
func ParseURLs(s string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		u, err := parseURL(part)
		if err != nil {
			return nil, err
		}
		out = append(out, u.String())
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no server URL in %q", s)
	}
	return out, nil
}

func parseURL(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "nats://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("bad URL %q: %v", s, err)
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return nil, fmt.Errorf("URL %q: scheme must be nats, tls, ws or wss", s)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("URL %q has no host", s)
	}
	if p := u.Port(); p != "" {
		if _, err := net.LookupPort("tcp", p); err != nil {
			return nil, fmt.Errorf("URL %q: bad port", s)
		}
	}
	return u, nil
}

// redacted joins URLs for a log line, passwords hidden.
func redacted(urls []string) string {
	out := make([]string, len(urls))
	for i, s := range urls {
		if u, err := parseURL(s); err == nil {
			out[i] = u.Redacted()
		}
	}
	return strings.Join(out, ",")
}

// LoopbackURL reports whether the URL's host is a loopback address or
// "localhost": traffic that never leaves the host.
func LoopbackURL(s string) bool {
	u, err := parseURL(s)
	if err != nil {
		return false
	}
	h := u.Hostname()
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// TLSURL reports whether the URL's scheme asks for TLS (tls://, wss://).
func TLSURL(s string) bool {
	u, err := parseURL(s)
	return err == nil && (u.Scheme == "tls" || u.Scheme == "wss")
}

// options are the nats.go options the bridge connects with: it connects
// even when no server is up yet and retries forever, keeping up to
// BufferBytes of outbound messages meanwhile.
func (b *Bridge) options() ([]nats.Option, error) {
	c := b.cfg
	opts := []nats.Option{
		nats.Name(c.Name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(c.ReconnectWait),
		nats.ReconnectBufSize(c.BufferBytes),
		// Credentials may be fixed while we retry: never give up on them.
		nats.IgnoreAuthErrorAbort(),
		// A failed background write loses nats.go's buffer: reconnect at
		// once, so that the confirmation sees a cut and resends (publish.go).
		nats.ReconnectOnFlusherError(),
		// Notice a dead server within ~30s, not nats.go's 4 minutes.
		nats.PingInterval(15 * time.Second),
		nats.MaxPingsOutstanding(2),
		nats.ConnectHandler(func(*nats.Conn) { b.connEvent("connected", nil) }),
		nats.ReconnectHandler(func(*nats.Conn) { b.connEvent("reconnected", nil) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { b.connEvent("disconnected", err) }),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) { b.connEvent("reconnect failed", err) }),
		nats.ClosedHandler(func(*nats.Conn) { b.connEvent("closed", nil) }),
		nats.ErrorHandler(b.asyncError),
	}
	auth, err := c.AuthOptions()
	if err != nil {
		return nil, err
	}
	return append(opts, auth...), nil
}

// AuthOptions are the nats.go options for the block's credentials and TLS
// files, which every connection of a node shares (the bridge's, and the
// cluster transport's with transport = "nats"). The files are read now, so
// a bad one stops the start instead of failing every connection later.
func (c Config) AuthOptions() ([]nats.Option, error) {
	var opts []nats.Option
	if c.CredsFile != "" {
		if err := checkCreds(c.CredsFile); err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	tc, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	if tc != nil {
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}

// checkCreds reads the credentials file now, so that a bad one stops the
// start instead of failing every connection attempt later.
func checkCreds(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w: creds_file: %v", ErrBadConfig, err)
	}
	if _, err := nkeys.ParseDecoratedJWT(b); err != nil {
		return fmt.Errorf("%w: creds_file %s: no user JWT: %v", ErrBadConfig, path, err)
	}
	if _, err := nkeys.ParseDecoratedUserNKey(b); err != nil {
		return fmt.Errorf("%w: creds_file %s: no user nkey seed: %v", ErrBadConfig, path, err)
	}
	return nil
}

// tlsConfig loads the tls block's files, or returns nil when it is empty
// (a tls:// URL then still uses TLS, verified with the system's roots).
func (c Config) tlsConfig() (*tls.Config, error) {
	if c.CAFile == "" && c.CertFile == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: tls.ca_file: %v", ErrBadConfig, err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: tls.ca_file %s: no PEM certificate in it", ErrBadConfig, c.CAFile)
		}
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: tls.cert_file/key_file: %v", ErrBadConfig, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
