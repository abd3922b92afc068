package rpc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// CheckListen makes the checks Listen makes before it creates anything,
// for ckd -check: the group exists; the socket's directory is not one
// other users may write unless it is sticky, and this user may create
// the socket in it (or, where it is missing, create it); a file at path is a socket. It binds nothing, and a daemon serving
// on path is no error (a configuration is checked before a restart).
func CheckListen(path, group string) error {
	if group != "" {
		if _, err := lookupGroup(group); err != nil {
			return err
		}
	}
	dir := filepath.Dir(path)
	if err := CheckCreatable(dir); err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	di, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // Listen creates it, private
	}
	if err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	owner, _ := fileOwner(di)
	if err := checkSocketDir(dir, di, owner); err != nil {
		return err
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("socket path %s exists and is not a socket", path)
	}
	return nil
}

// CheckCreatable reports whether this user may use dir, or create it
// (os.MkdirAll): dir, or the nearest directory above it that exists, must
// be a directory this user may write and search.
func CheckCreatable(dir string) error {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		missing := errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) // ENOTDIR: a file above it
		if missing && d != filepath.Dir(d) {
			continue
		}
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", d)
		}
		if err := syscall.Access(d, 0o3); err != nil { // W_OK|X_OK
			return fmt.Errorf("%s: this user may not create files in it: %w", d, err)
		}
		return nil
	}
}
