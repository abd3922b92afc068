package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudknowledge/ck/daemon/transport"
	"github.com/cloudknowledge/ck/rpc"
)

// Check is Validate and every check New makes of what the configuration
// names on this host before New opens or binds anything: the hook
// scripts compile; data_dir and the socket's directory are usable (or
// can be made); off loopback a cluster key is set; the key (encrypt,
// keyring_file, or this user's default key file) loads; the interface
// and addresses suit the transport; the NATS credentials and TLS files
// load. New calls it first, and ckd -check calls it alone, so the two can
// never disagree (docs/ARCHITECTURE.md, "Checking a configuration").
// It binds nothing, opens no store, connects nowhere, and a ckd running
// on this configuration is no error.
func (c *Config) Check() error {
	if err := c.Validate(); err != nil {
		return err
	}
	return c.firstError(c.checkHooks, c.checkDirs, c.checkSecurity, c.checkKeys, c.checkTransport, c.checkNATS)
}

// firstError runs checks in order and returns the first error, a
// *FieldError given the position of its field in the file.
func (c *Config) firstError(checks ...func() error) error {
	for _, check := range checks {
		if err := check(); err != nil {
			var fe *FieldError
			if errors.As(err, &fe) && fe.Pos == "" {
				fe.Pos = c.ranges[fe.Field]
			}
			return err
		}
	}
	return nil
}

// checkHooks compiles the hooks as a start does, then drops them.
func (c *Config) checkHooks() error {
	eng, err := compileHooks(*c, hclog.NewNullLogger(), func(string) ([]byte, bool, error) { return nil, false, nil })
	if err != nil {
		return fieldErr("hook", "%v", err)
	}
	eng.Close()
	return nil
}

func (c *Config) checkDirs() error {
	if err := rpc.CheckCreatable(c.DataDir); err != nil {
		return fieldErr("data_dir", "%v", err)
	}
	if err := rpc.CheckListen(c.Socket, c.SocketGroup); err != nil {
		return fieldErr("socket", "%v", err)
	}
	return nil
}

// checkKeys loads the cluster key as a start does, without creating the
// default key file: a missing one is made at the start, in a directory
// this user must be able to write.
func (c *Config) checkKeys() error {
	cl := c.Cluster
	if cl.KeyringFile == "" && cl.Encrypt == "" && !cl.Insecure {
		path := rpc.DefaultKeyFile()
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			if err := rpc.CheckCreatable(filepath.Dir(path)); err != nil {
				return fieldErr("cluster", "the default key file %s (no encrypt or keyring_file is set) cannot be made: %v", path, err)
			}
			return nil
		}
	}
	if _, _, err := loadKeyring(cl, false, hclog.NewNullLogger()); err != nil {
		return err
	}
	return nil
}

// checkTransport resolves the transport's configuration as a start does,
// and for UDP makes the transport's own checks (interface, mode, bind).
func (c *Config) checkTransport() error {
	log := hclog.NewNullLogger()
	if c.Cluster.Transport == "nats" {
		_, err := c.natsTransportConfig(log)
		return err
	}
	tc, err := c.transportConfig(log)
	if err != nil {
		return err
	}
	if err := transport.Check(tc); err != nil {
		return fmt.Errorf("cluster transport on interface %q: %w", tc.Interface, err)
	}
	return nil
}

// checkNATS makes the NATS bridge's checks (credentials, TLS files) as
// natsbridge.New does at a start.
func (c *Config) checkNATS() error {
	bc, ok := c.NATSBridge()
	if !ok {
		return nil
	}
	if _, err := bc.AuthOptions(); err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	return nil
}
