package daemon

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// sizeKeys are the config keys that hold a number of bytes, by block ("" is
// the top level). Each takes a plain number or a string with a unit:
// "4MiB", "512 KiB", "1GB" (config.hcl.example).
var sizeKeys = map[string][]string{
	"":        {"max_value_size", "max_request_bytes", "hook_memory", "hook_heap_limit"},
	"cluster": {"max_datagram"},
	"nats":    {"buffer_bytes"},
}

var sizeRE = regexp.MustCompile(`^\s*([0-9]+)\s*([A-Za-z]*)\s*$`)

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1000,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1000 * 1000,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1000 * 1000 * 1000,
}

// ParseSize reads a size: digits, then an optional unit (B; KiB, MiB, GiB
// in powers of 1024, with K, M, G short for them; KB, MB, GB in powers of
// 1000), case-insensitive.
func ParseSize(s string) (int64, error) {
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a size (a number of bytes, or one with a unit: 4MiB, 512KiB, 1GB)", s)
	}
	unit, ok := sizeUnits[strings.ToLower(m[2])]
	if !ok {
		return 0, fmt.Errorf("%q: unknown unit %q (B, KiB, MiB, GiB, KB, MB, GB)", s, m[2])
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n > math.MaxInt64/unit {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * unit, nil
}

// resolveSizes rewrites the size keys given as strings into numbers, in
// place, before the body is decoded into Config's integer fields, so that
// the rest of the code sees bytes and an error points at the attribute.
func resolveSizes(body hcl.Body) hcl.Diagnostics {
	b, ok := body.(*hclsyntax.Body)
	if !ok {
		return nil
	}
	diags := resolveIn(b, sizeKeys[""])
	for _, blk := range b.Blocks {
		if keys := sizeKeys[blk.Type]; blk.Type != "" && keys != nil {
			diags = append(diags, resolveIn(blk.Body, keys)...)
		}
	}
	return diags
}

func resolveIn(b *hclsyntax.Body, keys []string) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, name := range keys {
		attr := b.Attributes[name]
		if attr == nil {
			continue
		}
		v, d := attr.Expr.Value(nil)
		if d.HasErrors() || v.IsNull() || !v.IsKnown() || v.Type() != cty.String {
			continue // numbers, and what the decoder will report itself
		}
		n, err := ParseSize(v.AsString())
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid size",
				Detail: name + ": " + err.Error(), Subject: attr.Expr.Range().Ptr()})
			continue
		}
		attr.Expr = &hclsyntax.LiteralValueExpr{Val: cty.NumberIntVal(n), SrcRange: attr.Expr.Range()}
	}
	return diags
}
