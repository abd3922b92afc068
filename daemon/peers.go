package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"

	"github.com/cloudknowledge/ck/daemon/cluster"
	"github.com/cloudknowledge/ck/internal/atomicfile"
	"github.com/cloudknowledge/ck/store"
)

// peersFileName is the peer book in data_dir: when this node was last in
// sync with each peer (docs/PROTOCOL.md, Long separations). It is kept outside the
// store so that it costs the store nothing, and is small: one entry per
// peer ever in sync with this node.
const peersFileName = "peers.json"

// peerFile is the node's cluster.PeerBook: a JSON file replaced atomically
// (written aside, synced, renamed, the directory synced), so that a crash
// leaves the old file or the new one, never half of one.
type peerFile struct {
	path string
	node store.NodeID
	recs map[store.NodeID]cluster.PeerRecord // as read at open
}

var _ cluster.PeerBook = (*peerFile)(nil)

// peerFileJSON is the file's layout. Node names the node the records
// belong to: a file left by another data file (one moved aside by a
// rejoin, say) is not taken for this node's.
type peerFileJSON struct {
	Node  store.NodeID                        `json:"node"`
	Peers map[store.NodeID]cluster.PeerRecord `json:"peers"`
}

// openPeerFile reads the peer book of node from path. A missing file is an
// empty book; so is one written for another node id, which is reported in
// ignored. A file that does not parse is an error: starting without it
// would let a long separation go unnoticed.
func openPeerFile(path string, node store.NodeID) (pf *peerFile, ignored store.NodeID, err error) {
	pf = &peerFile{path: path, node: node, recs: map[store.NodeID]cluster.PeerRecord{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return pf, ignored, nil
	}
	if err != nil {
		return nil, ignored, err
	}
	var j peerFileJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, ignored, fmt.Errorf("%s: %w (remove it to start afresh; this node then forgets when it was last in sync with its peers, and a long separation goes unnoticed)", path, err)
	}
	if j.Node != node {
		return pf, j.Node, nil
	}
	if j.Peers != nil {
		pf.recs = j.Peers
	}
	return pf, ignored, nil
}

// Load returns the records read at open.
func (pf *peerFile) Load() (map[store.NodeID]cluster.PeerRecord, error) {
	return maps.Clone(pf.recs), nil
}

// Save replaces the file with recs.
func (pf *peerFile) Save(recs map[store.NodeID]cluster.PeerRecord) error {
	b, err := json.MarshalIndent(peerFileJSON{Node: pf.node, Peers: recs}, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(pf.path, append(b, '\n'), 0o640)
}
