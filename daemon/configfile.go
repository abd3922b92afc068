package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// LoadConfig reads an HCL file over DefaultConfig. Keys absent from the file
// keep their defaults. Syntax errors, unknown keys and wrong types come back
// with file and line (HCL diagnostics); the result is not yet validated. A
// file that cannot be read is the *fs.PathError as it is ("open F: no such
// file or directory"): the caller says it is the config.
func LoadConfig(path string) (Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err // names the file; callers say it is the config ("config: config: open" otherwise)
	}
	return ParseConfig(path, src)
}

// ConfigEnv is the environment variable naming ckd's config file when
// -config names none.
const ConfigEnv = "CKD_CONFIG"

// EmbeddedDefault is how the start log and -check name the configuration
// when no file is read.
const EmbeddedDefault = "embedded default"

// FindConfig returns the config file ckd reads when -config names none
// (docs/ARCHITECTURE.md, "Config discovery"), and where that choice came
// from, for messages:
//
//  1. $CKD_CONFIG when set (the file must then exist);
//  2. else the default file when it exists: $XDG_CONFIG_HOME/ckd/config.hcl
//     when XDG_CONFIG_HOME is set (even for root, as the default key file:
//     a test or a user with a config home of their own never reads /etc),
//     else /etc/ckd/config.hcl as root, else ~/.config/ckd/config.hcl;
//  3. else "": the embedded default.
//
// A default file that exists but cannot be examined (a directory on its
// path not searchable) is an error rather than silently the embedded
// default.
func FindConfig() (path, from string, err error) { return sysConfigEnv.find() }

// configEnv is what FindConfig depends on, so tests can vary it.
type configEnv struct {
	euid   int
	getenv func(string) string
	home   func() (string, error)
	stat   func(string) (fs.FileInfo, error)
}

var sysConfigEnv = configEnv{euid: -1, getenv: os.Getenv, home: os.UserHomeDir, stat: os.Stat}

func (e configEnv) root() bool {
	if e.euid >= 0 {
		return e.euid == 0
	}
	return os.Geteuid() == 0
}

// defaultFile is the file looked for when CKD_CONFIG is unset; "" when
// there is no home to look in.
func (e configEnv) defaultFile() string {
	const name = "config.hcl"
	if d := e.getenv("XDG_CONFIG_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "ckd", name)
	}
	if e.root() {
		return filepath.Join("/etc/ckd", name)
	}
	home, err := e.home()
	if err != nil || !filepath.IsAbs(home) {
		return ""
	}
	return filepath.Join(home, ".config", "ckd", name)
}

func (e configEnv) find() (path, from string, err error) {
	if p := e.getenv(ConfigEnv); p != "" {
		return p, "$" + ConfigEnv, nil
	}
	p := e.defaultFile()
	if p == "" {
		return "", EmbeddedDefault, nil
	}
	_, err = e.stat(p)
	switch {
	case err == nil:
		return p, "default file", nil
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		return "", EmbeddedDefault, nil
	default:
		return "", "", fmt.Errorf("default config file: %w", err)
	}
}

// ParseConfig is LoadConfig on bytes already read; name is used in messages
// and to resolve relative hook script paths.
func ParseConfig(name string, src []byte) (Config, error) {
	cfg := DefaultConfig()
	// A nats block is decoded over the defaults; without one, no bridge.
	cfg.NATS = DefaultNATSConfig()
	parser := hclparse.NewParser()
	file, diags := parser.ParseHCL(src, name)
	if diags.HasErrors() {
		return Config{}, diagError(diags)
	}
	if diags := resolveSizes(file.Body); diags.HasErrors() {
		return Config{}, diagError(diags)
	}
	if diags := gohcl.DecodeBody(file.Body, nil, &cfg); diags.HasErrors() {
		return Config{}, diagError(diags)
	}
	if cfg.Cluster == nil { // an absent block decodes to nil: keep the defaults
		cfg.Cluster = DefaultConfig().Cluster
	}
	if !hasBlock(file.Body, "nats") {
		cfg.NATS = nil
	}
	if abs, err := filepath.Abs(name); err == nil {
		cfg.Dir = filepath.Dir(abs)
	}
	cfg.ranges = attributeRanges(file.Body)
	return cfg, nil
}

// diagError renders HCL diagnostics as "file:line,col: summary; detail".
func diagError(diags hcl.Diagnostics) error {
	var msgs []string
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		if d.Subject != nil {
			msg = fmt.Sprintf("%s:%d,%d: %s", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column, msg)
		}
		msgs = append(msgs, msg)
	}
	return errors.New(strings.Join(msgs, "\n"))
}

// hasBlock reports whether the file's body has a top-level block of type.
func hasBlock(body hcl.Body, typ string) bool {
	sb, ok := body.(*hclsyntax.Body)
	if !ok {
		return false
	}
	for _, b := range sb.Blocks {
		if b.Type == typ {
			return true
		}
	}
	return false
}

// attributeRanges maps each attribute's dotted field name (as Validate
// names it: "max_value_size", "cluster.port", `hook["a/*"].timeout`,
// "nats.tls.ca_file") to "file:line,col", so a FieldError can say where the
// bad value was written.
func attributeRanges(body hcl.Body) map[string]string {
	out := map[string]string{}
	sb, ok := body.(*hclsyntax.Body)
	if !ok {
		return out
	}
	pos := func(r hcl.Range) string { return fmt.Sprintf("%s:%d,%d", r.Filename, r.Start.Line, r.Start.Column) }
	var walk func(prefix string, body *hclsyntax.Body)
	walk = func(prefix string, body *hclsyntax.Body) {
		for name, a := range body.Attributes {
			out[prefix+name] = pos(a.SrcRange)
		}
		for _, b := range body.Blocks {
			name := b.Type
			if prefix == "" && b.Type == "hook" && len(b.Labels) == 1 {
				name = fmt.Sprintf("hook[%q]", b.Labels[0])
			}
			out[prefix+name] = pos(b.DefRange())
			walk(prefix+name+".", b.Body)
		}
	}
	walk("", sb)
	return out
}
