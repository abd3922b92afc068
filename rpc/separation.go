package rpc

import (
	"context"
	"net/http"
	"net/url"
	"strings"
)

// The API of long separations (docs/PROTOCOL.md, Long separations): POST /v1/members/{id}/trust and
// POST /v1/rejoin, which settle a quarantined peer.

// RejoinResult is the answer of POST /v1/rejoin.
type RejoinResult struct {
	// StaleDir holds the data moved aside (the store, its peer book, and
	// own-writes.jsonl: this node's writes the rejoin re-applied, as
	// export lines).
	StaleDir string `json:"stale_dir"`
	// Reapplied counts this node's own writes made since it was last in
	// sync, written again as new writes; Skipped those the cluster already
	// held (or descended from).
	Reapplied uint64 `json:"reapplied"`
	Skipped   uint64 `json:"skipped"`
	// OldID is the node id the stale data was written under; NewID the id
	// of the fresh store (a fresh store is a fresh node).
	OldID string `json:"old_id"`
	NewID string `json:"new_id"`
	// Peer is the peer the bootstrap pulled from ("" if none answered);
	// Received the records it sent.
	Peer     string `json:"peer"`
	Received uint64 `json:"received"`
	// LastInSync is when the old node was last in sync with any peer
	// (RFC 3339): its writes after that were re-applied.
	LastInSync string `json:"last_in_sync,omitempty"`
}

// handleMember routes /v1/members/{id}/{action}: only trust exists.
func (s *Server) handleMember(w http.ResponseWriter, r *http.Request, rest string) {
	id, action, _ := strings.Cut(rest, "/")
	if action != "trust" || id == "" {
		s.writeError(w, Errorf(ErrUnknownPath, "unknown path %s", r.URL.EscapedPath()))
		return
	}
	if !allow(w, r, http.MethodPost) {
		return
	}
	id, err := url.PathUnescape(id)
	if err != nil {
		s.writeError(w, Errorf(ErrBadRequest, "bad id escaping: %v", err))
		return
	}
	m, err := s.b.Trust(r.Context(), id)
	if err != nil {
		s.writeError(w, err)
		return
	}
	s.writeJSON(w, http.StatusOK, m)
}

func (s *Server) handleRejoin(w http.ResponseWriter, r *http.Request) {
	res, err := s.b.Rejoin(r.Context())
	if err != nil {
		s.writeError(w, err)
		return
	}
	s.writeJSON(w, http.StatusOK, res)
}

// Trust lifts the quarantine of the peer with node id id, so that syncing
// with it resumes (once it trusts this node too), and returns its member
// row. An unknown id matches ErrNotFound; a peer that is not quarantined,
// ErrBadRequest.
func (c *Client) Trust(ctx context.Context, id string) (Member, error) {
	var m Member
	err := c.bound(ctx, 0, func(ctx context.Context) error {
		resp, err := c.do(ctx, http.MethodPost, "/v1/members/"+url.PathEscape(id)+"/trust", nil, nil)
		if err != nil {
			return err
		}
		return decodeJSON(resp, &m)
	})
	return m, err
}

// Rejoin asks a node that quarantines its peers to start afresh from them
// and re-apply its own writes made since it was last in sync. It returns
// when that is done: as long as a bootstrap takes, so ClientOptions.Timeout
// does not bound it.
func (c *Client) Rejoin(ctx context.Context) (RejoinResult, error) {
	var res RejoinResult
	resp, err := c.do(ctx, http.MethodPost, "/v1/rejoin", nil, nil)
	if err != nil {
		return res, err
	}
	return res, decodeJSON(resp, &res)
}
