package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudknowledge/ck/daemon/cluster"
	"github.com/cloudknowledge/ck/daemon/natsbridge"
	"github.com/cloudknowledge/ck/daemon/seal"
	"github.com/cloudknowledge/ck/rpc"
	"github.com/cloudknowledge/ck/store"
)

// ErrAlreadyRunning is returned by New when another ckd holds the data dir
// or serves on the socket.
var ErrAlreadyRunning = errors.New("another ckd is running")

// Daemon is one ckd node.
type Daemon struct {
	cfg     Config
	log     hclog.Logger
	level   hclog.Level
	store   *store.Store
	hooks   *hookSet
	metrics *metrics
	api     *rpc.Server
	ln      net.Listener
	started time.Time

	transport  clusterTransport
	bridge     *natsbridge.Bridge // nil without a nats block
	stopBridge context.CancelFunc
	bridgeDone chan struct{}
	ring       *seal.Keyring          // nil without a cluster key
	replay     *seal.Replay           // the datagram replay filter; nil without a key
	keySource  atomic.Pointer[string] // where ring came from (status); a reload may change it
	node       *cluster.Node
	stopNode   context.CancelFunc
	nodeDone   chan struct{}
	peers      *peerFile // when this node was last in sync with each peer

	// notify tells systemd how the start goes (notify.go); nil when
	// ckd was not started with $NOTIFY_SOCKET. announced is closed when
	// announce has returned.
	notify    *notifier
	announced chan struct{}

	// errc ends Run: a server's error, or a node that had to stop.
	errc chan error

	// A rejoin (rejoin.go) replaces the store, the node and the transport.
	// API calls hold swapMu shared (enter) while they use them, and are
	// refused while rejoining is set; the rejoin takes swapMu to swap.
	swapMu    sync.RWMutex
	rejoining atomic.Bool
	rejoinMu  sync.Mutex         // one rejoin at a time; Close waits for it
	life      context.Context    // ends when Close starts: interrupts a rejoin
	endLife   context.CancelFunc // ends life

	// loadConfig re-reads the configuration for Reload; nil disables reload.
	loadConfig func() (Config, error)

	stopping  atomic.Bool    // refuse new writes
	writes    sync.WaitGroup // in-flight commits (not their --wait), drained before the store closes
	writesMu  sync.Mutex     // orders writes.Add against the stop
	closeOnce sync.Once
	closeErr  error
	reloadMu  sync.Mutex

	// waits ends the --wait of the writes in flight (waitContext): a
	// rejoin and Close end it, so neither waits on a peer's ACK.
	waitsMu  sync.Mutex
	waits    context.Context
	endWaits context.CancelCauseFunc
}

// Options are what New needs besides the config.
type Options struct {
	Logger hclog.Logger // nil: a default logger on stderr at cfg.LogLevel
	// LoadConfig re-reads the configuration (file and flags) on Reload.
	LoadConfig func() (Config, error)
	// ConfigFile names the configuration in force for the start log: the
	// file's path, or "" for the embedded default.
	ConfigFile string
}

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
		errc: make(chan error, 4)}
	d.life, d.endLife = context.WithCancel(context.Background())
	d.waits, d.endWaits = context.WithCancelCause(context.Background())
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
	d.store, err = store.Open(cfg.StorePath(), d.storeOptions())
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("%w: data dir %s is in use (its store is locked by another process)", ErrAlreadyRunning, cfg.DataDir)
	}
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", cfg.StorePath(), err)
	}
	if err := d.openPeers(); err != nil {
		d.store.Close()
		return nil, err
	}
	if err := d.listen(); err != nil {
		d.store.Close()
		return nil, err
	}
	epoch, err := d.store.NextEpoch(uint64(time.Now().UnixMilli()))
	if err == nil {
		err = d.startCluster(epoch)
	}
	if err != nil {
		d.ln.Close()
		d.store.Close()
		return nil, err
	}
	if bc, ok := cfg.NATSBridge(); ok {
		// Created before anything is served: it records the change-log
		// index from which every later change is published.
		if d.bridge, err = natsbridge.New(bc, d.store, backend{d}, log.Named("nats")); err != nil {
			d.stopCluster()
			d.ln.Close()
			d.store.Close()
			return nil, fmt.Errorf("nats: %w", err)
		}
	}
	d.metrics = newMetrics(d)
	apiLog := log.Named("api")
	d.api = rpc.NewServer(backend{d}, apiLog, rpc.ServerOptions{
		MaxValueSize:    cfg.MaxValueSize,
		MaxRequestBytes: cfg.MaxRequestBytes,
		MaxConnections:  d.maxConnections(),
		ErrorLog:        apiLog.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Warn}),
		Observe:         d.metrics.observeAPI,
	})
	config := opts.ConfigFile
	if config == "" {
		config = EmbeddedDefault
	}
	log.Info("ckd ready", "version", rpc.Version, "config", config, "node", cfg.NodeName, "id", d.store.NodeID(),
		"data_dir", cfg.DataDir, "socket", cfg.Socket, "keys", d.store.Keys(),
		"cluster", cfg.Cluster.Name, "transport", cfg.Cluster.Transport, "addr", d.node.Addr())
	return d, nil
}

func (d *Daemon) storeOptions() store.Options {
	dur := d.cfg.Durations()
	return store.Options{
		Logger:       d.log.Named("store"),
		Resolver:     conflictResolver{d.hooks},
		WatchHistory: d.cfg.WatchHistory,
		MaxValueSize: d.cfg.MaxValueSize,
		LockTimeout:  time.Second,
		TombstoneTTL: dur.TombstoneTTL,
		PurgeLogTTL:  dur.PurgeLogTTL,
	}
}

func (d *Daemon) listen() error {
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
	d.runNode()
	if d.bridge != nil {
		d.runBridge()
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
		d.announced = make(chan struct{})
		go func() {
			defer close(d.announced)
			d.announce(d.life)
		}()
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
// ends), closes the API and the store. Safe to call more than once.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() {
		d.log.Info("stopping")
		d.endLife() // interrupts a rejoin, ends announce
		if d.notify != nil {
			if d.announced != nil {
				<-d.announced
			}
			if err := d.notify.send("STOPPING=1\nSTATUS=stopping"); err != nil {
				d.log.Warn("telling the service manager", "error", err)
			}
		}
		d.writesMu.Lock()
		d.stopping.Store(true)
		d.writesMu.Unlock()
		d.interruptWaits(rpc.ErrShuttingDown)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := d.api.Shutdown(ctx); err != nil {
			d.log.Warn("api shutdown", "error", err)
		}
		d.rejoinMu.Lock() // a rejoin has put its store and node in place
		defer d.rejoinMu.Unlock()
		d.writes.Wait()
		d.haltBridge() // publishes what was committed, then stops
		d.stopCluster()
		d.closeErr = d.store.Close()
		d.hooks.Close()
		d.log.Info("stopped")
	})
	return d.closeErr
}

// runNode runs the protocol node until stopCluster.
func (d *Daemon) runNode() {
	ctx, stop := context.WithCancel(context.Background())
	node, done := d.node, make(chan struct{})
	d.stopNode, d.nodeDone = stop, done
	go d.dropStaleEphemeral(ctx, node)
	go func() {
		defer close(done)
		// The node stops by itself only when it must: another process
		// runs with this node's id (a copied data dir).
		if err := node.Run(ctx); err != nil {
			select {
			case d.errc <- err:
			default:
			}
		}
	}()
}

// runBridge runs d.bridge until stopBridge.
func (d *Daemon) runBridge() {
	bctx, cancel := context.WithCancel(context.Background())
	b, done := d.bridge, make(chan struct{})
	d.stopBridge, d.bridgeDone = cancel, done
	go func() {
		defer close(done)
		if err := b.Run(bctx); err != nil {
			d.log.Error("nats bridge", "error", err)
		}
	}()
}

// haltBridge stops a running bridge (it publishes what was committed
// first) and reports whether one ran.
func (d *Daemon) haltBridge() bool {
	if d.stopBridge == nil {
		return false
	}
	d.stopBridge()
	<-d.bridgeDone
	d.stopBridge = nil
	return true
}

// stopCluster says BYE and closes the transport; without Run, it only
// closes the transport.
func (d *Daemon) stopCluster() {
	if d.stopNode != nil {
		d.stopNode()
		<-d.nodeDone
		d.stopNode = nil
	} else if d.transport != nil {
		d.transport.Close()
	}
	if d.replay != nil {
		if err := d.replay.Close(); err != nil { // saves the exact marks
			d.log.Warn("saving replay marks", "error", err)
		}
	}
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

// enter admits an API call that uses the store or the node: it returns
// errRejoining while a rejoin runs, else a release the caller must call
// when it is done with them.
func (d *Daemon) enter() (release func(), err error) {
	if d.rejoining.Load() {
		return nil, errRejoining
	}
	d.swapMu.RLock()
	if d.rejoining.Load() {
		d.swapMu.RUnlock()
		return nil, errRejoining
	}
	return d.swapMu.RUnlock, nil
}

// openPeers opens the peer book of the store's node.
func (d *Daemon) openPeers() error {
	pf, ignored, err := openPeerFile(filepath.Join(d.cfg.DataDir, peersFileName), d.store.NodeID())
	if err != nil {
		return fmt.Errorf("peer book: %w", err)
	}
	if !ignored.IsZero() {
		d.log.Warn("ignoring a peer book written for another node id", "file", pf.path, "its_node", ignored)
	}
	d.peers = pf
	return nil
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

// NodeID is this node's id.
func (d *Daemon) NodeID() store.NodeID {
	d.swapMu.RLock()
	defer d.swapMu.RUnlock()
	return d.store.NodeID()
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
