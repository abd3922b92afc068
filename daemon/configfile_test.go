package daemon

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestFindConfig: the config file ckd reads without -config, for root and
// for a user, with and without CKD_CONFIG and XDG_CONFIG_HOME, and with
// and without the default file present.
func TestFindConfig(t *testing.T) {
	exists := map[string]bool{
		"/etc/ckd/config.hcl":                true,
		"/xdg/ckd/config.hcl":                true,
		"/home/u/.config/ckd/config.hcl":     true,
		"/home/other/.config/ckd/config.hcl": false,
	}
	stat := func(p string) (fs.FileInfo, error) {
		if p == "/locked/ckd/config.hcl" {
			return nil, &fs.PathError{Op: "stat", Path: p, Err: syscall.EACCES}
		}
		if p == "/file/ckd/config.hcl" { // XDG_CONFIG_HOME is a file
			return nil, &fs.PathError{Op: "stat", Path: p, Err: syscall.ENOTDIR}
		}
		if exists[p] {
			return nil, nil
		}
		return nil, &fs.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
	}
	tests := []struct {
		name     string
		euid     int
		env      map[string]string
		home     string
		wantPath string
		wantFrom string
		wantErr  string
	}{
		{"root reads /etc", 0, nil, "/root", "/etc/ckd/config.hcl", "default file", ""},
		{"root with a config home never reads /etc", 0, map[string]string{"XDG_CONFIG_HOME": "/empty"}, "/root", "", EmbeddedDefault, ""},
		{"root with a config home holding one", 0, map[string]string{"XDG_CONFIG_HOME": "/xdg"}, "/root", "/xdg/ckd/config.hcl", "default file", ""},
		{"a relative config home is ignored", 0, map[string]string{"XDG_CONFIG_HOME": "xdg"}, "/root", "/etc/ckd/config.hcl", "default file", ""},
		{"user reads ~/.config", 1000, nil, "/home/u", "/home/u/.config/ckd/config.hcl", "default file", ""},
		{"user without one runs on the default", 1000, nil, "/home/other", "", EmbeddedDefault, ""},
		{"user never reads /etc", 1000, map[string]string{"XDG_CONFIG_HOME": "/empty"}, "/home/other", "", EmbeddedDefault, ""},
		{"user without a home", 1000, nil, "", "", EmbeddedDefault, ""},
		{"CKD_CONFIG first", 0, map[string]string{"CKD_CONFIG": "/srv/ck.hcl", "XDG_CONFIG_HOME": "/xdg"}, "/root", "/srv/ck.hcl", "$CKD_CONFIG", ""},
		{"CKD_CONFIG need not exist yet: loading says so", 1000, map[string]string{"CKD_CONFIG": "/missing.hcl"}, "/home/u", "/missing.hcl", "$CKD_CONFIG", ""},
		{"empty CKD_CONFIG is unset", 1000, map[string]string{"CKD_CONFIG": ""}, "/home/u", "/home/u/.config/ckd/config.hcl", "default file", ""},
		{"a path through a file is no file", 1000, map[string]string{"XDG_CONFIG_HOME": "/file"}, "/home/u", "", EmbeddedDefault, ""},
		{"an unsearchable config home is an error", 1000, map[string]string{"XDG_CONFIG_HOME": "/locked"}, "/home/u", "", "", "permission denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := configEnv{
				euid:   tt.euid,
				getenv: func(k string) string { return tt.env[k] },
				home: func() (string, error) {
					if tt.home == "" {
						return "", errors.New("no home")
					}
					return tt.home, nil
				},
				stat: stat,
			}
			path, from, err := e.find()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("find() = %q, %q, %v; want an error with %q", path, from, err, tt.wantErr)
				}
				return
			}
			if err != nil || path != tt.wantPath || from != tt.wantFrom {
				t.Fatalf("find() = %q, %q, %v; want %q, %q", path, from, err, tt.wantPath, tt.wantFrom)
			}
		})
	}
}

// TestLoadConfigMissingFile: a file that is not there is named once, as
// the system says it ("open F: no such file or directory"), so that ckd's
// message reads "config: open F: ...", not "config: config: open F".
func TestLoadConfigMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "absent.hcl")
	_, err := LoadConfig(p)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadConfig(absent) = %v, want not-exist", err)
	}
	if want := "open " + p + ": no such file or directory"; err.Error() != want {
		t.Fatalf("LoadConfig(absent) says %q, want %q", err, want)
	}
}
