// Package atomicfile replaces small files so that a crash leaves either
// the old contents or the new, never a mixture or nothing: write a
// temporary file beside the target, fsync it, rename it over the target,
// and fsync the directory so that the rename itself is durable.
package atomicfile

import (
	"os"
	"path/filepath"
)

// WriteFile replaces path with data, with the given mode. On failure the
// old file, if any, is untouched and no temporary file is left behind.
func WriteFile(path string, data []byte, mode os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err == nil {
		err = f.Chmod(mode) // CreateTemp's 0600 whatever the umask, then the mode asked
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, making a rename, link or create in it
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
