//go:build unix

package rpc

import (
	"io/fs"
	"syscall"
)

// fileOwner is the uid owning fi's file, when the system says.
func fileOwner(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return -1, false
	}
	return int(st.Uid), true
}
