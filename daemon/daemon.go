package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudknowledge/ck/daemon/seal"
	"github.com/cloudknowledge/ck/rpc"
	"github.com/cloudknowledge/ck/store"
)

// ErrAlreadyRunning is returned by New when another ckd holds the data dir
// or serves on the socket.
var ErrAlreadyRunning = errors.New("another ckd is running")

// Daemon is one ckd node: the parts that live as long as the process (the
// config, the hooks, the API server and its listener, the metrics, the
// cluster keyring) and a slot holding the current instance (instance.go),
// which a rejoin replaces (docs/ARCHITECTURE.md, "The daemon").
type Daemon struct {
	cfg     Config
	log     hclog.Logger
	level   hclog.Level
	hooks   *hookSet
	metrics *metrics
	api     *rpc.Server
	ln      net.Listener
	started time.Time
	opts    Options

	// slot holds the instance: store, peer book, transport, replay
	// filter, node and bridge. API calls acquire it (enter).
	slot slot

	ring      *seal.Keyring          // nil without a cluster key; a reload swaps its keys
	keySource atomic.Pointer[string] // where ring came from (status); a reload may change it

	// notify tells systemd how the start goes (notify.go); nil when
	// ckd was not started with $NOTIFY_SOCKET.
	notify *notifier

	// errc ends Run: a server's error, or a node that had to stop.
	errc chan error

	// life runs what lasts until Close (announce); its context ends
	// when Close starts and interrupts a rejoin.
	life *group

	// A rejoin (rejoin.go) replaces the instance: API calls are refused
	// while rejoining is set.
	rejoining atomic.Bool
	rejoinMu  sync.Mutex // one rejoin at a time; Close waits for it

	// loadConfig re-reads the configuration for Reload; nil disables reload.
	loadConfig func() (Config, error)

	stopping  atomic.Bool    // refuse new writes
	writes    sync.WaitGroup // in-flight commits (not their --wait), drained before the store closes
	writesMu  sync.Mutex     // orders writes.Add against the stop
	closeOnce sync.Once
	closeErr  error
	reloadMu  sync.Mutex
}

// Options are what New needs besides the config.
type Options struct {
	Logger hclog.Logger // nil: a default logger on stderr at cfg.LogLevel
	// LoadConfig re-reads the configuration (file and flags) on Reload.
	LoadConfig func() (Config, error)
	// ConfigFile names the configuration in force for the start log: the
	// file's path, or "" for the embedded default.
	ConfigFile string
	// Transport opens the cluster transport, at the start and again at
	// each rejoin; nil opens the one cluster.transport names (UDP or
	// NATS). Tests run whole daemons on the simulated network with it.
	Transport func() (ClusterTransport, error)
	// Listener serves the API in place of the socket the config names
	// (which is then neither created nor removed); the daemon closes it.
	Listener net.Listener
	// StreamWriteTimeout bounds each write of a watch or export stream
	// (rpc.ServerOptions); 0: rpc.DefaultStreamWriteTimeout.
	StreamWriteTimeout time.Duration
	// ShutdownTimeout bounds how long a stop waits for requests in flight
	// before it closes their connections; 0: defaultShutdownTimeout. Tests
	// that show a stop is not held by a client raise both, so that being
	// held would cost a minute, not seconds a loaded machine may take.
	ShutdownTimeout time.Duration
}

// defaultShutdownTimeout is how long a stop waits for requests in flight.
const defaultShutdownTimeout = 5 * time.Second

// New checks cfg (Config.Check), opens the store, compiles the hooks and listens on the
// API socket. It fails, touching nothing of another running ckd, when the
// data dir is locked or the socket is served by a live daemon.
func New(cfg Config, opts Options) (*Daemon, error) {
	if err := cfg.Check(); err != nil { // what ckd -check runs too
		return nil, fmt.Errorf("config: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = NewLogger(cfg, os.Stderr)
	}
	d := &Daemon{cfg: cfg, log: log, level: cfg.Level(), loadConfig: opts.LoadConfig, started: time.Now(),
		errc: make(chan error, 4), opts: opts, life: newGroup(nil)}
	if n, err := newNotifier(os.Getenv(notifySocketEnv)); err != nil {
		log.Warn("service manager", "error", err)
	} else {
		d.notify = n
	}
	hooks, err := loadHooks(cfg, log.Named("hooks"), d.localGet)
	if err != nil {
		return nil, err
	}
	d.hooks = hooks
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	inst, err := d.open()
	if err != nil {
		return nil, err
	}
	d.slot.put(inst)
	d.metrics = newMetrics(d, inst)
	apiLog := log.Named("api")
	d.api = rpc.NewServer(backend{d}, apiLog, rpc.ServerOptions{
		MaxValueSize:    cfg.MaxValueSize,
		MaxRequestBytes: cfg.MaxRequestBytes,
		MaxConnections:  d.maxConnections(),
		ErrorLog:        apiLog.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Warn}),
		Observe:         d.metrics.observeAPI,

		StreamWriteTimeout: opts.StreamWriteTimeout,
	})
	config := opts.ConfigFile
	if config == "" {
		config = EmbeddedDefault
	}
	log.Info("ckd ready", "version", rpc.Version, "config", config, "node", cfg.NodeName, "id", inst.store.NodeID(),
		"data_dir", cfg.DataDir, "socket", cfg.Socket, "keys", inst.store.Keys(),
		"cluster", cfg.Cluster.Name, "transport", cfg.Cluster.Transport, "addr", inst.node.Addr())
	return d, nil
}

// open opens the store, listens on the API socket, loads the cluster key
// and makes the first instance; on error it closes what it opened.
func (d *Daemon) open() (*instance, error) {
	st, peers, err := d.openStore()
	if err != nil {
		return nil, err
	}
	if err := d.listen(); err != nil {
		st.Close()
		return nil, err
	}
	var inst *instance
	err = d.loadKeys()
	if err == nil {
		inst, err = d.newInstance(st, peers, true)
	}
	if err != nil {
		d.ln.Close()
		st.Close()
		return nil, err
	}
	return inst, nil
}

func (d *Daemon) listen() error {
	if d.opts.Listener != nil {
		d.ln = d.opts.Listener
		return nil
	}
	mode, _ := d.cfg.SocketFileMode()
	ln, err := rpc.Listen(d.cfg.Socket, mode, d.cfg.SocketGroup)
	if errors.Is(err, rpc.ErrSocketInUse) {
		return fmt.Errorf("%w: %v", ErrAlreadyRunning, err)
	}
	if err != nil {
		return fmt.Errorf("socket %s: %w", d.cfg.Socket, err)
	}
	d.ln = ln
	return nil
}

// Run serves the API (and, when configured, metrics and health on TCP)
// until ctx ends, then stops gracefully. It returns the first serving
// error, or nil after a clean stop. Under systemd it says READY=1 once the
// node serves and has bootstrapped (announce).
func (d *Daemon) Run(ctx context.Context) error {
	errc := d.errc
	if inst := d.slot.peek(); inst != nil {
		d.start(inst)
	}
	go func() { errc <- d.api.Serve(d.ln) }()
	var metricsSrv *http.Server
	if d.cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", d.cfg.MetricsAddr)
		if err != nil {
			d.Close()
			return fmt.Errorf("metrics_addr: %w", err)
		}
		// Only the documented paths: /metrics and the health checks.
		metricsSrv = &http.Server{Handler: d.api.ProbeHandler(d.metrics.handler()), ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- metricsSrv.Serve(mln) }()
	}
	if d.notify != nil {
		d.life.Go(func(ctx context.Context) error {
			d.announce(ctx)
			return nil
		})
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
	}
	if metricsSrv != nil {
		metricsSrv.Close()
	}
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close stops the node: it refuses new writes, waits for in-flight
// commits (not their --wait, which it cuts short, nor streams, which it
// ends), closes the API and the instance. Safe to call more than once.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() {
		d.log.Info("stopping")
		d.life.stop() // interrupts a rejoin, ends announce
		if d.notify != nil {
			if err := d.notify.send("STOPPING=1\nSTATUS=stopping"); err != nil {
				d.log.Warn("telling the service manager", "error", err)
			}
		}
		d.writesMu.Lock()
		d.stopping.Store(true)
		d.writesMu.Unlock()
		if inst := d.slot.peek(); inst != nil {
			inst.endWaits(rpc.ErrShuttingDown)
		}
		grace := d.opts.ShutdownTimeout
		if grace <= 0 {
			grace = defaultShutdownTimeout
		}
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		if err := d.api.Shutdown(ctx); err != nil {
			d.log.Warn("api shutdown", "error", err)
		}
		d.rejoinMu.Lock() // a rejoin has put its instance in place
		defer d.rejoinMu.Unlock()
		d.writes.Wait()
		if inst := d.slot.close(); inst != nil {
			// The bridge publishes what was committed, the node says BYE,
			// then the store closes.
			d.closeErr = inst.close(d.log)
		}
		d.hooks.Close()
		d.log.Info("stopped")
	})
	return d.closeErr
}

// beginWrite registers an in-flight write, or refuses it once stopping
// or rejoining.
func (d *Daemon) beginWrite() error {
	d.writesMu.Lock()
	defer d.writesMu.Unlock()
	if d.stopping.Load() {
		return rpc.ErrShuttingDown
	}
	if d.rejoining.Load() {
		return errRejoining
	}
	d.writes.Add(1)
	return nil
}

// errRejoining answers API calls while a rejoin runs.
var errRejoining = rpc.Errorf(rpc.ErrSyncing, "rejoining the cluster (ckctl rejoin): try again when it is done")

// enter admits an API call that uses the instance (store, node): it
// returns errRejoining while a rejoin runs, else the instance and a
// release the caller must call when it is done with it.
func (d *Daemon) enter() (*instance, func(), error) {
	if d.rejoining.Load() {
		return nil, nil, errRejoining
	}
	inst, release, err := d.slot.acquire()
	if err != nil {
		return nil, nil, err
	}
	if d.rejoining.Load() {
		release()
		return nil, nil, errRejoining
	}
	return inst, release, nil
}

// Reload re-reads the reloadable configuration: hooks and log level (and,
// with the cluster's encryption, the keyring). Other changed keys are logged
// as needing a restart. On error nothing changes.
func (d *Daemon) Reload(ctx context.Context) error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	if d.loadConfig == nil {
		return errors.New("reload: no configuration source")
	}
	cfg, err := d.loadConfig()
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		d.log.Error("reload failed; the running configuration stays", "error", err)
		return fmt.Errorf("reload: %w", err)
	}
	if _, _, err := loadKeyring(cfg.Cluster, false, d.log); err != nil {
		d.log.Error("reload failed; the old keys and hooks stay in force", "error", err)
		return fmt.Errorf("reload: %w", err)
	}
	if err := d.hooks.reload(cfg); err != nil {
		d.log.Error("reload failed; the old hooks stay in force", "error", err)
		return fmt.Errorf("reload: %w", err)
	}
	if err := d.reloadKeys(cfg); err != nil {
		d.log.Error("reload: keys not changed", "error", err)
		return fmt.Errorf("reload: %w", err)
	}
	if lvl := cfg.Level(); lvl != d.level {
		d.log.SetLevel(lvl)
		d.level = lvl
	}
	for _, field := range restartNeeded(d.cfg, cfg) {
		d.log.Warn("config change needs a restart to take effect", "field", field)
	}
	d.log.Info("reloaded", "hooks", len(cfg.Hooks), "log_level", cfg.LogLevel)
	return nil
}

// NodeID is this node's id (zero once closed).
func (d *Daemon) NodeID() store.NodeID {
	inst, release := d.slot.await()
	defer release()
	if inst == nil {
		return store.NodeID{}
	}
	return inst.store.NodeID()
}

// NewLogger is the daemon's logger per the config: leveled, text or JSON.
func NewLogger(cfg Config, w *os.File) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "ckd",
		Level:      cfg.Level(),
		JSONFormat: cfg.LogJSON,
		Output:     w,
	})
}
