package rpc_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/cloudknowledge/ck/internal/rpctest"
	"github.com/cloudknowledge/ck/rpc"
)

const peerID = "fedcba9876543210fedcba9876543210"

func TestClientTrust(t *testing.T) {
	c, b := start(t)
	ctx := context.Background()
	b.MembersList = []rpc.Member{
		{ID: rpctest.SelfID, Name: "fake", State: "alive", Self: true},
		{ID: peerID, Name: "peer", State: "quarantined"},
	}
	m, err := c.Trust(ctx, peerID)
	if err != nil || m.ID != peerID || m.State != "alive" {
		t.Fatalf("trust = %+v, %v", m, err)
	}
	for _, tc := range []struct {
		id   string
		want *rpc.Error
	}{
		{peerID, rpc.ErrBadRequest},                           // no longer quarantined
		{"00000000000000000000000000000000", rpc.ErrNotFound}, // unknown
		{"a/b", rpc.ErrNotFound},                              // escaped, reaches the backend whole
	} {
		if _, err := c.Trust(ctx, tc.id); !errors.Is(err, tc.want) {
			t.Errorf("trust %q: %v, want %s", tc.id, err, tc.want.Code)
		}
	}
}

func TestClientRejoin(t *testing.T) {
	c, b := start(t)
	ctx := context.Background()
	b.RejoinResult = rpc.RejoinResult{StaleDir: "/d/stale-x", Reapplied: 2, OldID: "a", NewID: "b"}
	res, err := c.Rejoin(ctx)
	if err != nil || res != b.RejoinResult {
		t.Fatalf("rejoin = %+v, %v", res, err)
	}
	b.RejoinErr = rpc.Errorf(rpc.ErrSyncing, "already rejoining")
	if _, err := c.Rejoin(ctx); !errors.Is(err, rpc.ErrSyncing) || b.Rejoins != 2 {
		t.Errorf("rejoin while rejoining: %v (%d calls)", err, b.Rejoins)
	}
}

// TestSeparationRoutes: the paths and methods of trust and rejoin.
func TestSeparationRoutes(t *testing.T) {
	s := rpctest.Start(t, rpctest.NewBackend(), rpc.ServerOptions{})
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{http.MethodGet, "/v1/members/" + peerID + "/trust", 405, "method_not_allowed"},
		{http.MethodPost, "/v1/members/" + peerID + "/forget", 404, "unknown_path"},
		{http.MethodPost, "/v1/members/" + peerID, 404, "unknown_path"},
		{http.MethodPost, "/v1/members/" + peerID + "/trust", 404, "not_found"},
		{http.MethodGet, "/v1/rejoin", 405, "method_not_allowed"},
		{http.MethodPost, "/v1/rejoin", 200, ""},
	} {
		resp, body := newRaw(t, s.Socket).do(tc.method, tc.path, "")
		if resp.StatusCode != tc.status || !strings.Contains(body, tc.code) {
			t.Errorf("%s %s: %d %s, want %d %s", tc.method, tc.path, resp.StatusCode, body, tc.status, tc.code)
		}
	}
}
