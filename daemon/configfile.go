package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// LoadConfig reads an HCL file over DefaultConfig. Keys absent from the file
// keep their defaults. Syntax errors, unknown keys and wrong types come back
// with file and line (HCL diagnostics); the result is not yet validated.
func LoadConfig(path string) (Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err // names the file; callers say it is the config ("config: config: open" otherwise)
	}
	return ParseConfig(path, src)
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
