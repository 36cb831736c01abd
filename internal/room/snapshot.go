package room

import (
	"context"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/myelin-chat/myelin/internal/storage"
)

// maxChain bounds delta chains: a snapshot further than this from a full
// copy is written in full, so loading any snapshot reads at most maxChain+1
// snapshot rows.
const maxChain = 32

// cachedSnapshot is a loaded snapshot with its delta chain length, so a
// cache hit needs no database read.
type cachedSnapshot struct {
	state State
	chain int64
}

// loadSnapshot returns the state of snapshot nid and its chain length.
// Snapshot 0 is the empty state.
func (s *Service) loadSnapshot(ctx context.Context, nid int64) (State, int64, error) {
	if nid == 0 {
		return State{}, 0, nil
	}
	if c, ok := s.snapshots.Get(nid); ok {
		return c.state, c.chain, nil
	}
	// Walk to the nearest full snapshot (or a cached one).
	var chain []int64
	var base State
	var leafChain int64 = -1
	for cur := nid; cur != 0; {
		if c, ok := s.snapshots.Get(cur); ok {
			base = c.state
			if leafChain < 0 {
				leafChain = c.chain
			}
			break
		}
		chain = append(chain, cur)
		var parent, cl int64
		if err := s.db.QueryRowContext(ctx, `SELECT parent_nid, chain_len FROM state_snapshots WHERE snapshot_nid = $1`, cur).Scan(&parent, &cl); err != nil {
			return nil, 0, fmt.Errorf("loading state snapshot %d: %w", cur, err)
		}
		if leafChain < 0 {
			leafChain = cl
		}
		cur = parent
	}
	st := make(State, len(base))
	for k, v := range base {
		st[k] = v
	}
	if len(chain) > 0 {
		args := make([]any, len(chain))
		for i, n := range chain {
			args[i] = n
		}
		rows, err := s.db.QueryContext(ctx, `SELECT s.snapshot_nid, s.type, s.state_key, s.event_nid, e.event_id
			FROM state_snapshot_entries s LEFT JOIN events e ON e.event_nid = s.event_nid
			WHERE s.snapshot_nid IN (`+storage.Placeholders(1, len(chain))+`)`, args...)
		if err != nil {
			return nil, 0, fmt.Errorf("loading snapshot entries: %w", err)
		}
		defer rows.Close()
		type entry struct {
			key pdu.StateKey
			ref Ref
		}
		bySnap := map[int64][]entry{}
		for rows.Next() {
			var snap, enid int64
			var typ, sk string
			var evID *string
			if err := rows.Scan(&snap, &typ, &sk, &enid, &evID); err != nil {
				return nil, 0, err
			}
			ref := Ref{NID: enid}
			if evID != nil {
				ref.ID = id.EventID(*evID)
			}
			bySnap[snap] = append(bySnap[snap], entry{pdu.StateKey{Type: typ, StateKey: sk}, ref})
		}
		if err := rows.Err(); err != nil {
			return nil, 0, err
		}
		// Apply from the oldest delta to the newest.
		for i := len(chain) - 1; i >= 0; i-- {
			for _, e := range bySnap[chain[i]] {
				if e.ref.NID == 0 {
					delete(st, e.key)
				} else {
					st[e.key] = e.ref
				}
			}
		}
	}
	if leafChain < 0 {
		leafChain = 0
	}
	s.snapshots.Add(nid, cachedSnapshot{st, leafChain})
	return st, leafChain, nil
}

// writeSnapshot stores next as a delta against the parent (or in full when
// the chain is long) and returns its nid and chain length.
func (s *Service) writeSnapshot(ctx context.Context, tx *storage.Tx, roomID id.RoomID, parent int64, parentChain int64, prev, next State) (int64, int64, error) {
	nid, err := storage.NextNID(ctx, tx, "snapshot_nid")
	if err != nil {
		return 0, 0, err
	}
	full := parent == 0 || parentChain+1 > maxChain
	chain := parentChain + 1
	entries := map[pdu.StateKey]int64{}
	if full {
		parent, chain = 0, 0
		for k, v := range next {
			entries[k] = v.NID
		}
	} else {
		for k, v := range next {
			if p, ok := prev[k]; !ok || p.NID != v.NID {
				entries[k] = v.NID
			}
		}
		for k := range prev {
			if _, ok := next[k]; !ok {
				entries[k] = 0
			}
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO state_snapshots (snapshot_nid, room_id, parent_nid, chain_len) VALUES ($1, $2, $3, $4)`,
		nid, roomID.String(), parent, chain); err != nil {
		return 0, 0, fmt.Errorf("writing state snapshot: %w", err)
	}
	for k, enid := range entries {
		if _, err := tx.ExecContext(ctx, `INSERT INTO state_snapshot_entries (snapshot_nid, type, state_key, event_nid) VALUES ($1, $2, $3, $4)`,
			nid, k.Type, k.StateKey, enid); err != nil {
			return 0, 0, fmt.Errorf("writing state snapshot entry: %w", err)
		}
	}
	return nid, chain, nil
}

// stateEntry looks up one key of a snapshot without loading the whole
// state: from the cache when the snapshot is there, else by walking the
// delta chain one row per level. Formatting a state event's prev_content
// needs just this, and loading every snapshot in full made /state of a big
// room quadratic.
func (s *Service) stateEntry(ctx context.Context, nid int64, key pdu.StateKey) (Ref, bool, error) {
	return s.stateEntryMemo(ctx, nid, key, nil)
}

// entryMemo remembers, per snapshot and key, what stateEntry found, for
// callers that look one key up in many related snapshots (history
// visibility over a page of events): each walk stops where an earlier one
// passed, so a page costs about one query per snapshot, not one per level.
type entryMemo map[entryMemoKey]entryMemoVal

type entryMemoKey struct {
	nid int64
	key pdu.StateKey
}

type entryMemoVal struct {
	ref   Ref
	found bool
}

// stateEntryMemo is stateEntry, remembering in memo (when not nil) the
// answer for every snapshot the walk passed.
func (s *Service) stateEntryMemo(ctx context.Context, nid int64, key pdu.StateKey, memo entryMemo) (Ref, bool, error) {
	var path []int64
	var res entryMemoVal
	for cur := nid; cur != 0; {
		if m, ok := memo[entryMemoKey{cur, key}]; ok {
			res = m
			break
		}
		if c, ok := s.snapshots.Get(cur); ok {
			res.ref, res.found = c.state[key]
			break
		}
		path = append(path, cur)
		var parent int64
		var enid *int64
		var evID *string
		err := s.db.QueryRowContext(ctx, `SELECT s.parent_nid, e.event_nid, ev.event_id FROM state_snapshots s
			LEFT JOIN state_snapshot_entries e ON e.snapshot_nid = s.snapshot_nid AND e.type = $2 AND e.state_key = $3
			LEFT JOIN events ev ON ev.event_nid = e.event_nid
			WHERE s.snapshot_nid = $1`, cur, key.Type, key.StateKey).Scan(&parent, &enid, &evID)
		if err != nil {
			return Ref{}, false, fmt.Errorf("reading state snapshot %d: %w", cur, err)
		}
		if enid != nil {
			if *enid != 0 && evID != nil { // 0: removed relative to the parent
				res = entryMemoVal{Ref{NID: *enid, ID: id.EventID(*evID)}, true}
			}
			break
		}
		cur = parent
	}
	if memo != nil {
		for _, p := range path {
			memo[entryMemoKey{p, key}] = res
		}
	}
	return res.ref, res.found, nil
}
