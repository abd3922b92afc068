package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/cloudknowledge/ck/rpc"
)

// exported scrapes a daemon's /v1/metrics and returns its metric
// families by name with their type, and the text.
func exported(t *testing.T, c *rpc.Client) (map[string]string, string) {
	t.Helper()
	text, err := c.Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			types[f[2]] = f[3]
		}
	}
	return types, text
}

// exports tells whether name is a series of a family ckd exports: the
// family itself, or a histogram's or summary's _bucket, _sum or _count.
func exports(types map[string]string, name string) bool {
	if _, ok := types[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if typ := types[base]; ok && (typ == "histogram" || typ == "summary" && suffix != "_bucket") {
			return true
		}
	}
	return false
}

var (
	promStrings   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promMatchers  = regexp.MustCompile(`\{[^}]*\}`)
	promRanges    = regexp.MustCompile(`\[[^\]]*\]`)
	promNumbers   = regexp.MustCompile(`\b[0-9][0-9.]*(?:[eE][-+]?[0-9]+)?[a-z]*`) // 0.99, 1e3, 5m
	promGrouping  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdents    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	promKeywords  = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "bool": true, "and": true, "or": true, "unless": true, "offset": true, "group_left": true, "group_right": true}
	labelValuesRe = regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)`)
)

// metricNames returns the metric names a PromQL expression (or a
// Grafana label_values query) reads: identifiers that are not functions,
// keywords, label names or strings.
func metricNames(expr string) []string {
	if m := labelValuesRe.FindStringSubmatch(expr); m != nil {
		return []string{m[1]}
	}
	e := promStrings.ReplaceAllString(expr, `""`)
	e = promMatchers.ReplaceAllString(e, "")
	e = promRanges.ReplaceAllString(e, "")
	e = promGrouping.ReplaceAllString(e, "")
	e = promNumbers.ReplaceAllString(e, "0")
	var names []string
	for _, m := range promIdents.FindAllStringSubmatch(e, -1) {
		if m[1] != "" || promKeywords[m[0]] { // a function call, or a keyword
			continue
		}
		names = append(names, m[0])
	}
	return names
}

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string]string{
		`histogram_quantile(0.99, sum by (le, route) (rate(ck_api_request_duration_seconds_bucket{instance=~"$i", route!="/v1/watch"}[$__rate_interval])))`: "ck_api_request_duration_seconds_bucket",
		`sum by (op) (rate(ck_writes_total[5m])) / ignoring(op) group_left ck_keys`:                                                                         "ck_writes_total ck_keys",
		`label_values(ck_build_info, instance)`:                     "ck_build_info",
		`up == bool 1 and on (instance) process_open_fds offset 5m`: "up process_open_fds",
	} {
		if got := strings.Join(metricNames(expr), " "); got != want {
			t.Errorf("metricNames(%s) = %q, want %q", expr, got, want)
		}
	}
}

// TestDashboardQueriesExported: every query of the Grafana dashboard in
// examples/ reads metrics a running ckd exports, so the dashboard can
// never show an empty panel for a metric renamed or removed.
func TestDashboardQueriesExported(t *testing.T) {
	_, c := runTestDaemon(t)
	ctx := context.Background()
	// Vectors have a series once something is counted: a request for
	// the API histogram, a refused write for the write errors.
	if _, err := c.Put(ctx, "dash/a", []byte("v"), rpc.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "dash//bad", []byte("v"), rpc.WriteOptions{}); !errors.Is(err, rpc.ErrBadRequest) {
		t.Fatalf("a write to a bad key: %v, want bad_request", err)
	}
	types, _ := exported(t, c)
	src, err := os.ReadFile(filepath.Join("..", "examples", "grafana", "ckd-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct {
				Name  string
				Query json.RawMessage
			}
		}
	}
	if err := json.Unmarshal(src, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	queries := map[string]string{} // expr -> where
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			queries[tg.Expr] = "panel " + p.Title
		}
	}
	for _, v := range dash.Templating.List {
		var q struct{ Query string }
		if json.Unmarshal(v.Query, &q) == nil && q.Query != "" {
			queries[q.Query] = "variable " + v.Name
		}
	}
	if len(queries) < 10 {
		t.Fatalf("only %d queries found in the dashboard", len(queries))
	}
	used := map[string]bool{}
	for expr, where := range queries {
		names := metricNames(expr)
		if len(names) == 0 {
			t.Errorf("%s: no metric found in %q", where, expr)
		}
		for _, n := range names {
			used[n] = true
			if !exports(types, n) {
				t.Errorf("%s: %q reads %s, which ckd does not export", where, expr, n)
			}
		}
	}
	names := make([]string, 0, len(used))
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	t.Logf("the dashboard reads %d metrics: %s", len(names), strings.Join(names, " "))
}

// TestMetricsTypes: the metrics worth graphing are exported with their
// types; the self-echo is its own counter, not a drop.
func TestMetricsTypes(t *testing.T) {
	_, c := runTestDaemon(t)
	ctx := context.Background()
	if _, err := c.Put(ctx, "m/a", []byte("v"), rpc.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Get(ctx, "m/a", rpc.GetOptions{Fresh: true}); err != nil {
		t.Fatal(err)
	}
	types, text := exported(t, c)
	for name, want := range map[string]string{
		"ck_api_request_duration_seconds":     "histogram",
		"ck_commit_duration_seconds":          "histogram",
		"ck_replication_ack_duration_seconds": "histogram",
		"ck_fresh_read_duration_seconds":      "histogram",
		"ck_build_info":                       "gauge",
		"ck_members":                          "gauge",
		"ck_store_size_bytes":                 "gauge",
		"ck_keys":                             "gauge",
		"ck_datagrams_self_total":             "counter",
		"ck_fresh_read_paths_total":           "counter",
		"ck_datagrams_dropped_total":          "counter",
		"ck_records_refused_total":            "counter",
		"ck_commit_batches_total":             "counter",
		"ck_commit_requests_total":            "counter",
		"ck_log_flushes_total":                "counter",
	} {
		if got := types[name]; got != want {
			t.Errorf("%s: type %q, want %q", name, got, want)
		}
	}
	for _, want := range []string{
		`ck_api_request_duration_seconds_count{method="PUT",route="/v1/kv/{key}"} 1`,
		`ck_commit_duration_seconds_count 1`,
		`ck_fresh_read_duration_seconds_count 1`,
		`ck_fresh_read_paths_total{path="all"} 1`, // a lone node: every node is a witness
		`ck_fresh_read_paths_total{path="witnesses"} 0`,
		`ck_members{state="alive"} 1`,
		`ck_members{state="suspect"} 0`,
		`ck_store_size_bytes{file="data"} `,
		`ck_store_size_bytes{file="log"} `,
		`ck_build_info{commit="`,
		`goversion="go`,
		`version="` + rpc.Version + `"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// The put was committed in a batch of its own or with a clock
	// reservation: at least one batch, and at least as many requests.
	batches, requests := sample(t, text, "ck_commit_batches_total"), sample(t, text, "ck_commit_requests_total")
	if batches < 1 || requests < batches {
		t.Errorf("ck_commit_batches_total %v, ck_commit_requests_total %v: want 1 ≤ batches ≤ requests", batches, requests)
	}
	if strings.Contains(text, `ck_datagrams_dropped_total{reason="self"}`) {
		t.Errorf("the node's own echo is counted as a drop")
	}
}

// sample returns the value of the unlabelled sample name in the
// exposition text.
func sample(t *testing.T, text, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("metrics lack %s", name)
	return 0
}
