package daemon

import (
	"github.com/cloudknowledge/ck/rpc"
)

// Overrides are the command-line flags that override the config file, so a
// second node on one host is one command.
type Overrides struct {
	DataDir, Socket, NodeName string
}

// LoadWithOverrides builds the configuration ckd runs with: the file at path
// (or the embedded default when path is ""), then the flags. When neither the
// file nor a flag sets the socket, it follows data_dir's default.
func LoadWithOverrides(path string, o Overrides) (Config, error) {
	cfg := DefaultConfig()
	if path != "" {
		var err error
		if cfg, err = LoadConfig(path); err != nil {
			return Config{}, err
		}
	}
	_, socketInFile := cfg.ranges["socket"]
	if o.DataDir != "" {
		cfg.DataDir = o.DataDir
		delete(cfg.ranges, "data_dir")
	}
	if o.NodeName != "" {
		cfg.NodeName = o.NodeName
		delete(cfg.ranges, "node_name")
	}
	switch {
	case o.Socket != "":
		cfg.Socket = o.Socket
		delete(cfg.ranges, "socket")
	case !socketInFile:
		cfg.Socket = rpc.DefaultSocket(cfg.DataDir)
	}
	return cfg, nil
}
