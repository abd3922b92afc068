//go:build !unix

package seal

import "os"

// fileOwner is unknown here: files have no uid.
func fileOwner(os.FileInfo) (int, bool) { return 0, false }
