package seal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cloudknowledge/ck/internal/atomicfile"
)

// LoadOwnKeyringFile is LoadKeyringFile for a key file that must belong
// to this process's user: one owned by another uid is refused
// (ErrKeyFileOwner), since its owner could put in a key of their own
// choosing and so join, or take over, this user's cluster.
func LoadOwnKeyringFile(path string) (*Keyring, error) {
	return loadKeyringFile(path, os.Geteuid())
}

// EnsureKeyFile returns the keyring in the key file at path, checked as
// LoadOwnKeyringFile does; when there is no file it first creates one
// holding a new random key (as `ckctl keygen` prints it), mode 0600, with
// its directory (0700) if need be. created tells whether this call made
// the file.
//
// The file appears whole or not at all: the key is written to a temporary
// file in the same directory and fsynced, then hard-linked to path, and
// the directory fsynced. A link, unlike a rename, never replaces a file,
// so when several nodes start at once exactly one creates the file and
// every other one finds the link taken (EEXIST) and reads the winner's
// key: they all end up with the same key.
func EnsureKeyFile(path string) (ring *Keyring, created bool, err error) {
	ring, err = LoadOwnKeyringFile(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return ring, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("key file directory: %w", err)
	}
	created, err = createKeyFile(path, GenerateKey())
	if err != nil {
		return nil, false, fmt.Errorf("creating key file %s: %w", path, err)
	}
	ring, err = LoadOwnKeyringFile(path)
	return ring, created, err
}

// createKeyFile writes key as the file at path unless path exists, in
// which case it reports false and leaves the file alone.
func createKeyFile(path, key string) (bool, error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".new-*") // O_EXCL, 0600
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(key + "\n")
	if err == nil {
		err = tmp.Chmod(0o600) // CreateTemp's mode, whatever the umask
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil // another process made it first: its key is whole
		}
		return false, err
	}
	// The temporary name goes before the directory is synced, so that one
	// fsync makes both the new name and the removal durable.
	if err := os.Remove(tmp.Name()); err != nil {
		return true, err
	}
	return true, atomicfile.SyncDir(dir)
}
