package rpc

import (
	"errors"
	"testing"
)

func TestDefaultPaths(t *testing.T) {
	home := func() (string, error) { return "/home/u", nil }
	noHome := func() (string, error) { return "", errors.New("no home") }
	vars := func(m map[string]string) func(string) string {
		return func(k string) string { return m[k] }
	}
	tests := []struct {
		name       string
		e          env
		data, sock string
	}{
		{"root", env{0, vars(map[string]string{"XDG_STATE_HOME": "/s", "XDG_RUNTIME_DIR": "/r"}), home},
			"/var/lib/ckd", "/run/ckd/ckd.sock"},
		{"user with XDG", env{1000, vars(map[string]string{"XDG_STATE_HOME": "/s", "XDG_RUNTIME_DIR": "/run/user/1000"}), home},
			"/s/ckd", "/run/user/1000/ckd.sock"},
		{"user without XDG", env{1000, vars(nil), home},
			"/home/u/.local/state/ckd", "/home/u/.local/state/ckd/ckd.sock"},
		{"relative XDG ignored", env{1000, vars(map[string]string{"XDG_STATE_HOME": "s", "XDG_RUNTIME_DIR": "r"}), home},
			"/home/u/.local/state/ckd", "/home/u/.local/state/ckd/ckd.sock"},
		{"no home", env{1000, vars(nil), noHome},
			".local/state/ckd", ".local/state/ckd/ckd.sock"},
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
		})
	}
}

func TestDefaultPathsSystem(t *testing.T) {
	if DefaultDataDir() == "" || DefaultSocket(DefaultDataDir()) == "" {
		t.Fatal("empty default path")
	}
}
