package rpc

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// env is what the default paths depend on, so tests can vary it.
type env struct {
	euid   int
	getenv func(string) string
	home   func() (string, error)
	lstat  func(string) (fs.FileInfo, error)
}

var sysEnv = env{euid: -1, getenv: os.Getenv, home: os.UserHomeDir, lstat: os.Lstat}

func (e env) root() bool {
	if e.euid >= 0 {
		return e.euid == 0
	}
	return os.Geteuid() == 0
}

// DefaultDataDir is where ckd keeps its data when the config names no
// data_dir: /var/lib/ckd as root; else $XDG_STATE_HOME/ckd; else
// ~/.local/state/ckd.
func DefaultDataDir() string { return sysEnv.dataDir() }

func (e env) dataDir() string {
	if e.root() {
		return "/var/lib/ckd"
	}
	if d := e.getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "ckd")
	}
	home, err := e.home()
	if err != nil || home == "" {
		// No home: fall back to a relative directory rather than
		// guessing someone else's; ckd reports the path it uses.
		return filepath.Join(".local", "state", "ckd")
	}
	return filepath.Join(home, ".local", "state", "ckd")
}

// SystemSocket is root's default socket: the system daemon's.
const SystemSocket = "/run/ckd/ckd.sock"

// DefaultSocket is the local API's socket when neither the config nor the
// command line names one (DESIGN §5): /run/ckd/ckd.sock as root; else
// $XDG_RUNTIME_DIR/ckd.sock; else <dataDir>/ckd.sock.
func DefaultSocket(dataDir string) string { return sysEnv.socket(dataDir) }

func (e env) socket(dataDir string) string {
	if e.root() {
		return SystemSocket
	}
	if d := e.getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(d) {
		return filepath.Join(d, "ckd.sock")
	}
	return filepath.Join(dataDir, "ckd.sock")
}

// ClientSocket is the socket a client naming none uses: ckd's default for
// this user, unless this user is not root, nothing is there and the
// system daemon's socket (SystemSocket) is, in which case that one. A user without a daemon of
// their own thus reaches the host's, which the client still checks is
// root's or the socket owner's (see NewClient).
func ClientSocket() string { return sysEnv.clientSocket() }

func (e env) clientSocket() string {
	own := e.socket(e.dataDir())
	if e.root() {
		return own
	}
	if _, err := e.lstat(own); err != nil && errors.Is(err, fs.ErrNotExist) {
		if _, err := e.lstat(SystemSocket); err == nil {
			return SystemSocket
		}
	}
	// Neither there: an error about the user's own socket helps more.
	return own
}

// DefaultKeyFile is the cluster key file a node with no key configured
// uses on loopback, created at its first start: in $XDG_CONFIG_HOME/ckd/
// when that is set (absolute), else /etc/ckd/ as root, else
// ~/.config/ckd/. Every node a user starts on a host shares it, and no
// other user can read it.
func DefaultKeyFile() string { return sysEnv.keyFile() }

func (e env) keyFile() string {
	const name = "cluster.key"
	if d := e.getenv("XDG_CONFIG_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "ckd", name)
	}
	if e.root() {
		return filepath.Join("/etc/ckd", name)
	}
	home, err := e.home()
	if err != nil || home == "" {
		return filepath.Join(".config", "ckd", name)
	}
	return filepath.Join(home, ".config", "ckd", name)
}
