package rpc

import (
	"errors"
	"io/fs"
	"testing"
)

func TestDefaultPaths(t *testing.T) {
	home := func() (string, error) { return "/home/u", nil }
	noHome := func() (string, error) { return "", errors.New("no home") }
	vars := func(m map[string]string) func(string) string {
		return func(k string) string { return m[k] }
	}
	tests := []struct {
		name            string
		e               env
		data, sock, key string
	}{
		{"root", env{euid: 0, getenv: vars(map[string]string{"XDG_STATE_HOME": "/s", "XDG_RUNTIME_DIR": "/r"}), home: home},
			"/var/lib/ckd", "/run/ckd/ckd.sock", "/etc/ckd/cluster.key"},
		{"root with XDG_CONFIG_HOME", env{euid: 0, getenv: vars(map[string]string{"XDG_CONFIG_HOME": "/c"}), home: home},
			"/var/lib/ckd", "/run/ckd/ckd.sock", "/c/ckd/cluster.key"},
		{"user with XDG", env{euid: 1000, getenv: vars(map[string]string{"XDG_STATE_HOME": "/s", "XDG_RUNTIME_DIR": "/run/user/1000", "XDG_CONFIG_HOME": "/c"}), home: home},
			"/s/ckd", "/run/user/1000/ckd.sock", "/c/ckd/cluster.key"},
		{"user without XDG", env{euid: 1000, getenv: vars(nil), home: home},
			"/home/u/.local/state/ckd", "/home/u/.local/state/ckd/ckd.sock", "/home/u/.config/ckd/cluster.key"},
		{"relative XDG ignored", env{euid: 1000, getenv: vars(map[string]string{"XDG_STATE_HOME": "s", "XDG_RUNTIME_DIR": "r", "XDG_CONFIG_HOME": "c"}), home: home},
			"/home/u/.local/state/ckd", "/home/u/.local/state/ckd/ckd.sock", "/home/u/.config/ckd/cluster.key"},
		{"no home", env{euid: 1000, getenv: vars(nil), home: noHome},
			".local/state/ckd", ".local/state/ckd/ckd.sock", ".config/ckd/cluster.key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.e.dataDir()
			if data != tt.data {
				t.Errorf("dataDir = %q, want %q", data, tt.data)
			}
			if sock := tt.e.socket(data); sock != tt.sock {
				t.Errorf("socket = %q, want %q", sock, tt.sock)
			}
			if key := tt.e.keyFile(); key != tt.key {
				t.Errorf("keyFile = %q, want %q", key, tt.key)
			}
		})
	}
}

// A user whose own socket is not there reaches the system daemon's.
func TestClientSocket(t *testing.T) {
	vars := func(k string) string { return map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"}[k] }
	home := func() (string, error) { return "/home/u", nil }
	exists := func(string) (fs.FileInfo, error) { return nil, nil }
	missing := func(string) (fs.FileInfo, error) { return nil, fs.ErrNotExist }
	denied := func(string) (fs.FileInfo, error) { return nil, fs.ErrPermission }
	onlySystem := func(p string) (fs.FileInfo, error) {
		if p == SystemSocket {
			return nil, nil
		}
		return nil, fs.ErrNotExist
	}
	tests := []struct {
		name string
		e    env
		want string
	}{
		{"user's socket exists", env{euid: 1000, getenv: vars, home: home, lstat: exists}, "/run/user/1000/ckd.sock"},
		{"user's socket missing, system's there", env{euid: 1000, getenv: vars, home: home, lstat: onlySystem}, SystemSocket},
		// Neither there: the error names the user's own.
		{"both missing", env{euid: 1000, getenv: vars, home: home, lstat: missing}, "/run/user/1000/ckd.sock"},
		// Not a missing socket: the error is the user's to see.
		{"user's socket unreadable", env{euid: 1000, getenv: vars, home: home, lstat: denied}, "/run/user/1000/ckd.sock"},
		{"root", env{euid: 0, getenv: vars, home: home, lstat: missing}, SystemSocket},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.e.clientSocket(); got != tt.want {
				t.Errorf("clientSocket = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDefaultPathsSystem(t *testing.T) {
	if DefaultDataDir() == "" || DefaultSocket(DefaultDataDir()) == "" || DefaultKeyFile() == "" || ClientSocket() == "" {
		t.Fatal("empty default path")
	}
}
