package main

import (
	"fmt"
	"runtime/debug"
	"time"

	"github.com/cloudknowledge/ck/rpc"
)

// versionProbeTimeout bounds --version's question to the daemon: the
// version is printed whether or not one answers, so it does not wait for
// one to start either.
const versionProbeTimeout = 2 * time.Second

// buildCommit is the commit ckctl was built from (vcs.revision, which go
// build records in a git checkout), "unknown" when it was not recorded
// (go run, go test, a build outside the checkout); modified: the checkout
// had uncommitted changes.
func buildCommit() (commit string, modified bool) {
	commit = "unknown"
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return commit, false
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	return commit, modified
}

// versionInfo is what --version prints; -o json prints it as is.
type versionInfo struct {
	Version  string `json:"version"`
	Commit   string `json:"commit"`
	Modified bool   `json:"modified,omitempty"`
	// Daemon is the version of the ckd that answers on the socket, or ""
	// when none does (DaemonError says why).
	Daemon      string `json:"daemon_version,omitempty"`
	DaemonError string `json:"daemon_error,omitempty"`
	Socket      string `json:"socket"`
}

// printVersion prints ckctl's version and commit, and the daemon's version
// when one answers (GET /v1/status); it succeeds either way.
func printVersion(e *env) error {
	v := versionInfo{Version: rpc.Version, Socket: e.g.socketPath()}
	v.Commit, v.Modified = buildCommit()
	c := rpc.NewClientOptions(v.Socket, rpc.ClientOptions{Timeout: versionProbeTimeout})
	defer c.Close()
	if st, err := c.Status(e.ctx); err != nil {
		v.DaemonError = err.Error()
	} else {
		v.Daemon = st.Version
	}
	if e.json() {
		return e.printJSON(v)
	}
	mod := ""
	if v.Modified {
		mod = ", modified"
	}
	fmt.Fprintf(e.stdout, "ckctl %s (commit %s%s)\n", v.Version, v.Commit, mod)
	if v.Daemon != "" {
		_, err := fmt.Fprintf(e.stdout, "ckd %s (at %s)\n", v.Daemon, v.Socket)
		return err
	}
	_, err := fmt.Fprintf(e.stdout, "ckd: no answer (%s)\n", v.DaemonError)
	return err
}
