package main

import (
	"flag"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/cloudknowledge/ck/rpc"
)

var statusCmd = &command{
	name:    "status",
	args:    "",
	summary: "describe this node",
	detail:  "Prints one aligned \"field: value\" line each. -o json prints the API's object.",
	maxArgs: 0,
	setup: func(fs *flag.FlagSet) func(*env, []string) error {
		return func(e *env, args []string) error {
			st, err := e.client.Status(e.ctx)
			if err != nil {
				return err
			}
			if e.json() {
				return e.printJSON(st)
			}
			return printFields(e, statusFields(st))
		}
	},
}

func statusFields(st rpc.Status) [][2]string {
	return [][2]string{
		{"id", st.ID},
		{"name", st.Name},
		{"version", st.Version},
		{"lamport", fmt.Sprint(st.Lamport)},
		{"keys", fmt.Sprint(st.Keys)},
		{"digest root", st.DigestRoot},
		{"transport", st.Transport},
		{"address", st.Address},
		{"members", memberCounts(st.Members)},
		{"sync", syncState(st.Sync)},
		{"store id", st.StoreID},
		{"nats", st.NATS},
		{"disk", st.Disk},
		{"data dir", st.DataDir},
		{"socket", st.Socket},
		{"key source", st.KeySource},
		{"uptime", (time.Duration(st.UptimeMS) * time.Millisecond).Round(time.Second).String()},
		{"drops", fmt.Sprintf("kernel=%d queue_full=%d send_buffer=%d", st.Drops.Kernel, st.Drops.QueueFull, st.Drops.SendBuffer)},
	}
}

// memberCounts is "alive=3 suspect=1", states in a fixed order.
func memberCounts(m map[string]int) string {
	order := []string{"alive", "suspect", "gone", "left", "quarantined"}
	var parts []string
	for _, s := range order {
		if n, ok := m[s]; ok {
			parts = append(parts, fmt.Sprintf("%s=%d", s, n))
		}
	}
	for _, s := range slices.Sorted(maps.Keys(m)) {
		if !slices.Contains(order, s) {
			parts = append(parts, fmt.Sprintf("%s=%d", s, m[s]))
		}
	}
	return strings.Join(parts, " ")
}

func syncState(s rpc.SyncState) string {
	out := s.State
	if s.Peer != "" {
		out += " from " + s.Peer
	}
	if s.Received > 0 {
		out += fmt.Sprintf(" (%d received)", s.Received)
	}
	return out
}

// printFields writes "name: value" lines with the values aligned.
func printFields(e *env, fields [][2]string) error {
	width := 0
	for _, f := range fields {
		width = max(width, len(f[0]))
	}
	var b strings.Builder
	for _, f := range fields {
		fmt.Fprintf(&b, "%-*s %s\n", width+1, f[0]+":", dash(f[1]))
	}
	_, err := e.stdout.Write([]byte(b.String()))
	return err
}
