package rpc

import (
	"os"
	"path/filepath"
)

// env is what the default paths depend on, so tests can vary it.
type env struct {
	euid   int
	getenv func(string) string
	home   func() (string, error)
}

var sysEnv = env{euid: -1, getenv: os.Getenv, home: os.UserHomeDir}

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

// DefaultSocket is the local API's socket when neither the config nor the
// command line names one (DESIGN §5): /run/ckd/ckd.sock as root; else
// $XDG_RUNTIME_DIR/ckd.sock; else <dataDir>/ckd.sock.
func DefaultSocket(dataDir string) string { return sysEnv.socket(dataDir) }

func (e env) socket(dataDir string) string {
	if e.root() {
		return "/run/ckd/ckd.sock"
	}
	if d := e.getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(d) {
		return filepath.Join(d, "ckd.sock")
	}
	return filepath.Join(dataDir, "ckd.sock")
}
