//go:build unix

package seal

import (
	"os"
	"syscall"
)

// fileOwner is the uid owning fi's file, when the system says.
func fileOwner(fi os.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
