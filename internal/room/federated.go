package room

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"maunium.net/go/mautrix/federation/eventauth"
	mpdu "maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/myelin-chat/myelin/internal/stateres"
	"github.com/myelin-chat/myelin/internal/storage"
)

// Remote is what the room service asks of other servers when an incoming
// event refers to events it does not hold. Every event an implementation
// returns has passed the checks on receipt of a PDU that need no room
// state: format, canonical JSON, size, hashes and signatures.
type Remote interface {
	// GetMissingEvents returns events between earliest and latest, and
	// the IDs of those the server returned that failed their checks.
	GetMissingEvents(ctx context.Context, server string, roomID id.RoomID, v id.RoomVersion, earliest, latest []id.EventID, limit int) (evs []*pdu.Event, bad []id.EventID, err error)
	// GetStateIDs returns the IDs of the state before evID and of its
	// auth chain.
	GetStateIDs(ctx context.Context, server string, roomID id.RoomID, evID id.EventID) (state, authChain []id.EventID, err error)
	// GetState returns the state before evID and its auth chain.
	GetState(ctx context.Context, server string, roomID id.RoomID, v id.RoomVersion, evID id.EventID) (state, authChain []*pdu.Event, err error)
	// GetEventAuth returns the full auth chain of evID.
	GetEventAuth(ctx context.Context, server string, roomID id.RoomID, v id.RoomVersion, evID id.EventID) ([]*pdu.Event, error)
	// GetEvent returns one event.
	GetEvent(ctx context.Context, server string, v id.RoomVersion, evID id.EventID) (*pdu.Event, error)
}

// Outbox queues PDUs for other servers within the write transaction that
// stores them, so an event is sent if and only if it is stored.
type Outbox interface {
	EnqueuePDU(ctx context.Context, tx *storage.Tx, destinations []string, pduJSON []byte) error
}

// Outcome is what became of an incoming PDU.
type Outcome int

// The outcomes of Receive, per the checks on receipt of a PDU.
const (
	Accepted Outcome = iota
	// SoftFailed events passed the auth checks against the state before
	// them but not against the current state: stored, but hidden from
	// clients and never a forward extremity.
	SoftFailed
	// Rejected events failed auth against their auth events or the state
	// before them: stored as rejected, and they change no state.
	Rejected
	// Known events were stored already.
	Known
)

// ErrMissingAncestors means an event's prev_events could not be fetched.
var ErrMissingAncestors = errors.New("prev_events could not be fetched")

// maxMissingEvents bounds one /get_missing_events request.
const maxMissingEvents = 20

// Receive runs the checks on receipt of a PDU that need room state (auth
// against the event's auth events, against the state before it, and the
// soft-fail check against the current state), fetching missing ancestors
// from origin, then stores it. ev must already have passed the format,
// hash and signature checks.
func (s *Service) Receive(ctx context.Context, origin string, ev *pdu.Event) (Outcome, error) {
	in, err := s.lockedInfo(ctx, ev.RoomID())
	if err != nil {
		return 0, err
	}
	defer in.mu.Unlock()
	if !in.exists {
		return 0, mxerr.NotFound.With("this server is not in the room")
	}
	if ev.Version != in.version {
		return 0, mxerr.BadJSON.With("event of room version %s in a room of version %s", ev.Version, in.version)
	}
	st, err := s.receiveLocked(ctx, in, origin, ev, true, false)
	if err != nil {
		return 0, err
	}
	return outcomeOf(st), nil
}

// ReceiveMembership processes a membership event that origin handed over
// in a handshake (send_join, send_leave, send_knock): as Receive, but the
// event must be accepted, and it is passed on to the other servers in the
// room, since origin cannot reach them yet.
func (s *Service) ReceiveMembership(ctx context.Context, origin string, ev *pdu.Event) (*Stored, error) {
	in, err := s.lockedInfo(ctx, ev.RoomID())
	if err != nil {
		return nil, err
	}
	defer in.mu.Unlock()
	if !in.exists {
		return nil, mxerr.NotFound.With("this server is not in the room")
	}
	if ev.Version != in.version {
		return nil, mxerr.BadJSON.With("event of room version %s in a room of version %s", ev.Version, in.version)
	}
	st, err := s.receiveLocked(ctx, in, origin, ev, false, true)
	if err != nil {
		return nil, err
	}
	if st.Rejected || st.SoftFailed {
		return nil, mxerr.Forbidden.With("the membership event is not allowed in the room")
	}
	return st, nil
}

func outcomeOf(st *Stored) Outcome {
	switch {
	case st.Rejected:
		return Rejected
	case st.SoftFailed:
		return SoftFailed
	}
	return Accepted
}

// receiveLocked processes one event with the room lock held. fetchGaps
// allows one round of /get_missing_events; events fetched that way are
// processed without it, so gap filling does not recurse.
func (s *Service) receiveLocked(ctx context.Context, in *info, origin string, ev *pdu.Event, fetchGaps, broadcast bool) (*Stored, error) {
	existing, err := s.Event(ctx, ev.ID)
	if err == nil && !existing.Outlier {
		return existing, nil
	} else if err != nil && !errors.Is(err, mxerr.NotFound) {
		return nil, err
	}
	if err != nil {
		existing = nil
	}
	if past, err := s.beforeLiveHistory(ctx, in, ev); err != nil {
		return nil, err
	} else if past {
		// ev is older than the first event this server took in live (our
		// join, for a room joined over federation): history, such as an
		// invite of ours that its server also sent with /send and that
		// arrives after the join. Taken in as a live event, it would get
		// a stream position above events it precedes and, through
		// get_missing_events, pull the older history in with it, all out
		// of topological order and with positions that history
		// visibility reads as "after the join". It is kept as an outlier
		// instead: backfill puts it in the timeline in order.
		if existing != nil {
			return existing, nil
		}
		if err := s.StoreOutliers(ctx, in.roomID, []*pdu.Event{ev}); err != nil {
			return nil, err
		}
		return s.Event(ctx, ev.ID)
	}
	prevs, missing, err := s.prevEvents(ctx, ev)
	if err != nil {
		return nil, err
	}
	var badForm []id.EventID
	if len(missing) > 0 && fetchGaps && s.remote != nil {
		got, bad, err := s.remote.GetMissingEvents(ctx, origin, in.roomID, in.version, in.extremities, []id.EventID{ev.ID}, maxMissingEvents)
		badForm = bad
		if err != nil {
			s.log.Info("fetching missing events failed", "room_id", in.roomID, "event_id", ev.ID, "server", origin, "err", err)
		}
		sort.Slice(got, func(i, j int) bool { return got[i].Depth < got[j].Depth })
		for _, g := range got {
			if g.ID == ev.ID || g.RoomID() != in.roomID {
				continue
			}
			if _, err := s.receiveLocked(ctx, in, origin, g, false, false); err != nil {
				s.log.Info("missing event not stored", "room_id", in.roomID, "event_id", g.ID, "err", err)
			}
		}
		if prevs, missing, err = s.prevEvents(ctx, ev); err != nil {
			return nil, err
		}
	}
	var sets []State
	var parent *Stored
	for _, p := range prevs {
		st, err := s.StateAt(ctx, p, true)
		if err != nil {
			return nil, err
		}
		sets = append(sets, st)
		if parent == nil {
			parent = p
		}
	}
	for _, m := range missing {
		if slices.Contains(badForm, m) {
			// The server already sent it in a form that fails the
			// checks on receipt; asking again with /event would get
			// the same.
			return nil, fmt.Errorf("%w: %s came back from get_missing_events in bad form", ErrMissingAncestors, m)
		}
		st, err := s.stateAfterRemote(ctx, in, origin, m)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrMissingAncestors, m, err)
		}
		sets = append(sets, st)
	}
	before, err := s.resolve(ctx, in, sets)
	if err != nil {
		return nil, err
	}
	rejected, reason, err := s.checkReceived(ctx, in, origin, ev, before)
	if err != nil {
		return nil, err
	}
	soft := false
	if !rejected {
		if err := s.authorizeWithState(ctx, in, ev, in.state); err != nil {
			soft = true
			reason = err.Error()
		}
	}
	if rejected || soft {
		s.log.Info("incoming event not accepted", "room_id", in.roomID, "event_id", ev.ID, "server", origin,
			"rejected", rejected, "soft_failed", soft, "reason", reason)
	}
	work := in.clone()
	var stored *Stored
	start := time.Now()
	err = s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		var err error
		serversBefore := work.servers
		stored, err = s.persistReceived(ctx, tx, work, ev, before, parent, existing, rejected, soft)
		if err != nil || !broadcast || rejected || soft {
			return err
		}
		return s.enqueue(ctx, tx, work, serversBefore, ev, origin)
	})
	if err != nil {
		return nil, err
	}
	s.persisted("received", start)
	s.commit(ctx, in, work, []*Stored{stored})
	return stored, nil
}

// beforeLiveHistory reports whether ev is of lower depth than the first
// event of the room this server took in live (the lowest positive stream
// position; backfilled history sits below zero). One probe of the
// (room_id, stream_pos) index, made only for events no deeper than the
// newest held, since a new event is deeper than those.
func (s *Service) beforeLiveHistory(ctx context.Context, in *info, ev *pdu.Event) (bool, error) {
	if ev.Depth > in.depth {
		return false, nil
	}
	var depth int64
	err := s.db.QueryRowContext(ctx, `SELECT depth FROM events WHERE room_id = $1 AND outlier = 0 AND stream_pos > 0
		ORDER BY stream_pos ASC LIMIT 1`, in.roomID.String()).Scan(&depth)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("finding where the live history of %s starts: %w", in.roomID, err)
	}
	return ev.Depth < depth, nil
}

// prevEvents splits ev's prev_events into stored events that have known
// state and the IDs of the rest.
func (s *Service) prevEvents(ctx context.Context, ev *pdu.Event) ([]*Stored, []id.EventID, error) {
	got, err := s.Events(ctx, ev.PrevEvents)
	if err != nil {
		return nil, nil, err
	}
	byID := make(map[id.EventID]*Stored, len(got))
	for _, g := range got {
		byID[g.ID] = g
	}
	var prevs []*Stored
	var missing []id.EventID
	for _, p := range ev.PrevEvents {
		if g := byID[p]; g != nil && !g.Outlier {
			prevs = append(prevs, g)
		} else if !slices.Contains(missing, p) {
			missing = append(missing, p)
		}
	}
	return prevs, missing, nil
}

// stateAfterRemote asks origin for the state at a prev event we lack, and
// returns the state after that event. As Synapse does, it asks for the
// IDs only (/state_ids) and fetches the events it does not hold one by one
// with /event, unless it lacks a tenth or more of them: then the whole
// state (/state) is cheaper. Fetched events are stored as outliers.
func (s *Service) stateAfterRemote(ctx context.Context, in *info, origin string, evID id.EventID) (State, error) {
	if s.remote == nil {
		return nil, errors.New("no federation")
	}
	stateIDs, authIDs, err := s.remote.GetStateIDs(ctx, origin, in.roomID, evID)
	if err != nil {
		s.log.Info("state_ids failed; asking for the full state", "room_id", in.roomID, "event_id", evID, "server", origin, "err", err)
		return s.fullStateAfterRemote(ctx, in, origin, evID)
	}
	want := slices.Concat(stateIDs, authIDs, []id.EventID{evID})
	held, err := s.Events(ctx, want)
	if err != nil {
		return nil, err
	}
	have := make(map[id.EventID]bool, len(held))
	for _, h := range held {
		have[h.ID] = true
	}
	var lack []id.EventID
	for _, w := range want {
		if !have[w] && !slices.Contains(lack, w) {
			lack = append(lack, w)
		}
	}
	if len(lack)*10 >= len(stateIDs)+len(authIDs) {
		return s.fullStateAfterRemote(ctx, in, origin, evID)
	}
	fetched, err := s.fetchEvents(ctx, in, origin, lack)
	if err != nil {
		return nil, err
	}
	if err := s.StoreOutliers(ctx, in.roomID, fetched); err != nil {
		return nil, err
	}
	stateEvs, err := s.Events(ctx, stateIDs)
	if err != nil {
		return nil, err
	}
	ids := make(stateres.StateMap, len(stateEvs)+1)
	for _, e := range stateEvs {
		if e.IsState() && e.RoomID() == in.roomID {
			ids[e.Key()] = e.ID
		}
	}
	return s.withPrev(ctx, in, ids, evID)
}

// fetchEvents fetches events of the room from origin with /event, a few
// at a time. Events that cannot be had are left out; the state built from
// the rest misses them, as Synapse's does.
func (s *Service) fetchEvents(ctx context.Context, in *info, origin string, ids []id.EventID) ([]*pdu.Event, error) {
	const parallel = 8
	out := make([]*pdu.Event, len(ids))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i, evID := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			ev, err := s.remote.GetEvent(ctx, origin, in.version, evID)
			if err != nil || ev.RoomID() != in.roomID {
				s.log.Info("fetching a state event failed", "room_id", in.roomID, "event_id", evID, "server", origin, "err", err)
				return
			}
			out[i] = ev
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	kept := out[:0]
	for _, e := range out {
		if e != nil {
			kept = append(kept, e)
		}
	}
	return kept, nil
}

// fullStateAfterRemote is stateAfterRemote with /event for the prev event
// and /state for the state before it.
func (s *Service) fullStateAfterRemote(ctx context.Context, in *info, origin string, evID id.EventID) (State, error) {
	prev, err := s.remote.GetEvent(ctx, origin, in.version, evID)
	if err != nil {
		return nil, fmt.Errorf("fetching event: %w", err)
	}
	if prev.ID != evID || prev.RoomID() != in.roomID {
		return nil, fmt.Errorf("server returned a different event")
	}
	state, chain, err := s.remote.GetState(ctx, origin, in.roomID, in.version, evID)
	if err != nil {
		return nil, fmt.Errorf("fetching state: %w", err)
	}
	all := append(append(chain, state...), prev)
	if err := s.StoreOutliers(ctx, in.roomID, all); err != nil {
		return nil, err
	}
	ids := make(stateres.StateMap, len(state)+1)
	for _, e := range state {
		if e.IsState() && e.RoomID() == in.roomID {
			ids[e.Key()] = e.ID
		}
	}
	return s.withPrev(ctx, in, ids, evID)
}

// withPrev returns the state before the prev event evID (ids) updated by
// evID itself: the state after it.
func (s *Service) withPrev(ctx context.Context, in *info, ids stateres.StateMap, evID id.EventID) (State, error) {
	stored, err := s.Event(ctx, evID)
	if err != nil {
		return nil, err
	}
	if stored.IsState() && !stored.Rejected {
		ids[stored.Key()] = evID
	}
	return s.fromIDs(ctx, in, ids)
}

// checkReceived applies auth checks 4 and 5 on receipt of a PDU: against
// the event's own auth events (fetching them from origin when missing),
// then against the state before the event.
func (s *Service) checkReceived(ctx context.Context, in *info, origin string, ev *pdu.Event, before State) (bool, string, error) {
	refs := ev.AuthRefs()
	auth, err := s.Events(ctx, refs)
	if err != nil {
		return false, "", err
	}
	if len(auth) < len(refs) && s.remote != nil {
		chain, err := s.remote.GetEventAuth(ctx, origin, in.roomID, in.version, ev.ID)
		if err != nil {
			s.log.Info("fetching auth chain failed", "room_id", in.roomID, "event_id", ev.ID, "server", origin, "err", err)
		} else if err := s.StoreOutliers(ctx, in.roomID, chain); err != nil {
			return false, "", err
		}
	}
	if err := s.authorizeOwn(ctx, ev); err != nil {
		return true, err.Error(), nil
	}
	if err := s.authorizeWithState(ctx, in, ev, before); err != nil {
		return true, err.Error(), nil
	}
	return false, "", nil
}

// authorizeOwn checks ev against its own auth_events, which must be stored.
func (s *Service) authorizeOwn(ctx context.Context, ev *pdu.Event) error {
	return eventauth.Authorize(ev.Version, ev.PDU, nil, s.orderedPDUs(ctx), s.verifyKeys(ctx))
}

// authorizeWithState checks ev against the auth events selected from st.
func (s *Service) authorizeWithState(ctx context.Context, in *info, ev *pdu.Event, st State) error {
	authEvents := []*mpdu.PDU{}
	for _, k := range ev.AuthEventSelection(ev.Version) {
		ref, ok := st[k]
		if !ok {
			continue
		}
		e, err := s.eventFor(ctx, in, ref.ID)
		if err != nil {
			return fmt.Errorf("loading auth event %s: %w", ref.ID, err)
		}
		authEvents = append(authEvents, e.PDU)
	}
	return eventauth.Authorize(ev.Version, ev.PDU, authEvents, s.orderedPDUs(ctx), s.verifyKeys(ctx))
}

// orderedPDUs loads events for the auth rules: in the order asked, with
// nil for events not held.
func (s *Service) orderedPDUs(ctx context.Context) eventauth.GetEventsFunc {
	return func(ids []id.EventID) ([]*mpdu.PDU, error) {
		got, err := s.Events(ctx, ids)
		if err != nil {
			return nil, err
		}
		byID := make(map[id.EventID]*mpdu.PDU, len(got))
		for _, g := range got {
			byID[g.ID] = g.PDU
		}
		out := make([]*mpdu.PDU, len(ids))
		for i, evID := range ids {
			out[i] = byID[evID]
		}
		return out, nil
	}
}

// verifyKeys returns the server keys the auth rules check signatures
// with: ours, and others' from the key source.
func (s *Service) verifyKeys(ctx context.Context) mpdu.GetKeyFunc {
	return func(server string, keyID id.KeyID, minValidUntil time.Time) (id.SigningKey, time.Time, error) {
		if server == s.serverName && keyID == s.key.ID {
			return s.key.Public(), s.now().Add(time.Hour), nil
		}
		if s.keys == nil {
			return "", time.Time{}, fmt.Errorf("no key source for %s's key %s", server, keyID)
		}
		return s.keys.VerifyKey(ctx, server, keyID, minValidUntil)
	}
}

// persistReceived stores a checked remote event. before is the state
// before it; parent, when set, is a prev event whose snapshot the new one
// is written as a delta of.
func (s *Service) persistReceived(ctx context.Context, tx *storage.Tx, work *info, ev *pdu.Event, before State, parent, existing *Stored, rejected, soft bool) (*Stored, error) {
	snap, err := s.snapshotFor(ctx, tx, work, before, parent)
	if err != nil {
		return nil, err
	}
	pos, err := storage.NextID(ctx, tx, "stream", 1)
	if err != nil {
		return nil, err
	}
	st := &Stored{Event: ev, StreamPos: pos, Snapshot: snap, Rejected: rejected, SoftFailed: soft}
	if ev.IsState() {
		st.ReplacesNID, st.ReplacesKnown = before[ev.Key()].NID, true
	}
	ev.PDU.InternalMeta.Rejected = rejected
	if existing != nil {
		st.NID = existing.NID
		if _, err := tx.ExecContext(ctx, `UPDATE events SET outlier = 0, stream_pos = $2, snapshot_nid = $3, rejected = $4, soft_failed = $5,
			replaces_nid = $6 WHERE event_nid = $1`, st.NID, pos, snap, storage.Bool(rejected), storage.Bool(soft), st.replacesColumn()); err != nil {
			return nil, fmt.Errorf("storing event %s: %w", ev.ID, err)
		}
		tx.AfterCommit(func() { s.events.Remove(ev.ID) })
	} else {
		if st.NID, st.RedactedBy, err = s.insertEvent(ctx, tx, ev, pos, snap, rejected, soft, false, st.replacesColumn()); err != nil {
			return nil, err
		}
	}
	if existing != nil && existing.RedactedBy != "" {
		st.RedactedBy = existing.RedactedBy
	}
	if st.RedactedBy != "" {
		// What the timeline, the caches and the indexers see is what is
		// stored: the redacted copy.
		st.Event = ev.Redacted()
	}
	if work.pending == nil {
		work.pending = map[id.EventID]*Stored{}
	}
	work.pending[ev.ID] = st
	if rejected || soft {
		return st, nil
	}
	s.indexRecent(tx, work.roomID, st)
	if err := s.indexStored(ctx, tx, st); err != nil {
		return nil, err
	}
	remaining := make([]id.EventID, 0, len(work.extremities))
	for _, x := range work.extremities {
		if !slices.Contains(ev.PrevEvents, x) {
			remaining = append(remaining, x)
		}
	}
	for _, prev := range ev.PrevEvents {
		if _, err := tx.ExecContext(ctx, `DELETE FROM forward_extremities WHERE room_id = $1 AND event_id = $2`, work.roomID.String(), prev.String()); err != nil {
			return nil, fmt.Errorf("updating extremities: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO forward_extremities (room_id, event_id) VALUES ($1, $2)`, work.roomID.String(), ev.ID.String()); err != nil {
		return nil, fmt.Errorf("updating extremities: %w", err)
	}
	work.extremities = append(remaining, ev.ID)
	work.depth = max(work.depth, ev.Depth)
	// The snapshot may be uncommitted, so the state after the event is
	// built from before rather than loaded.
	after := before
	if ev.IsState() {
		after = maps.Clone(before)
		after[ev.Key()] = Ref{NID: st.NID, ID: ev.ID}
	}
	next := after
	if len(remaining) > 0 {
		// A fork: the current state is the resolution of the state at
		// every forward extremity.
		sets := []State{after}
		for _, x := range remaining {
			xe, err := s.eventFor(ctx, work, x)
			if err != nil {
				return nil, err
			}
			xs, err := s.StateAt(ctx, xe, true)
			if err != nil {
				return nil, err
			}
			sets = append(sets, xs)
		}
		if next, err = s.resolve(ctx, work, sets); err != nil {
			return nil, err
		}
	}
	if !sameState(next, work.state) {
		if err := s.setCurrentState(ctx, tx, work, next, pos); err != nil {
			return nil, err
		}
	}
	if ev.Type == "m.room.redaction" {
		if err := s.applyRemoteRedaction(ctx, tx, work, ev); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// snapshotFor returns a snapshot holding before, reusing the current or
// the parent's snapshot when the state is the same.
func (s *Service) snapshotFor(ctx context.Context, tx *storage.Tx, work *info, before State, parent *Stored) (int64, error) {
	if sameState(before, work.state) {
		return work.snapshot, nil
	}
	if parent != nil {
		ps, chain, err := s.loadSnapshot(ctx, parent.Snapshot)
		if err != nil {
			return 0, err
		}
		if sameState(before, ps) {
			return parent.Snapshot, nil
		}
		nid, chain, err := s.writeSnapshot(ctx, tx, work.roomID, parent.Snapshot, chain, ps, before)
		if err != nil {
			return 0, err
		}
		tx.AfterCommit(func() { s.snapshots.Add(nid, cachedSnapshot{before, chain}) })
		return nid, nil
	}
	nid, chain, err := s.writeSnapshot(ctx, tx, work.roomID, 0, 0, nil, before)
	if err != nil {
		return 0, err
	}
	tx.AfterCommit(func() { s.snapshots.Add(nid, cachedSnapshot{before, chain}) })
	return nid, nil
}

// sameState reports whether two state maps hold the same events.
func sameState(a, b State) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w.NID != v.NID {
			return false
		}
	}
	return true
}

// insertEvent writes an event row and its edges, returning its nid and
// the redaction it was stored redacted by ("" for none). replaces is the
// replaces_nid column (see Stored.ReplacesNID).
func (s *Service) insertEvent(ctx context.Context, tx *storage.Tx, ev *pdu.Event, pos, snap int64, rejected, soft, outlier bool, replaces sql.NullInt64) (int64, id.EventID, error) {
	nid, err := storage.NextNID(ctx, tx, "event_nid")
	if err != nil {
		return 0, "", err
	}
	return s.insertEventNID(ctx, tx, nid, ev, pos, snap, rejected, soft, outlier, replaces)
}

// insertEventNID is insertEvent with the nid already allocated. Only
// received events take this path: a redaction of ev that arrived first
// applies here, and the stored copy is the redacted one.
func (s *Service) insertEventNID(ctx context.Context, tx *storage.Tx, nid int64, ev *pdu.Event, pos, snap int64, rejected, soft, outlier bool, replaces sql.NullInt64) (int64, id.EventID, error) {
	redactedBy, err := s.takePendingRedaction(ctx, tx, ev)
	if err != nil {
		return 0, "", err
	}
	stored, by := ev, sql.NullString{}
	if redactedBy != "" {
		stored, by = ev.Redacted(), sql.NullString{String: redactedBy.String(), Valid: true}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO events (event_nid, event_id, room_id, type, state_key, sender, depth,
		origin_server_ts, stream_pos, snapshot_nid, rejected, soft_failed, outlier, json, replaces_nid, redacted_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		nid, ev.ID.String(), ev.RoomID().String(), ev.Type, ev.StateKey, ev.Sender.String(), ev.Depth,
		ev.OriginServerTS, pos, snap, storage.Bool(rejected), storage.Bool(soft), storage.Bool(outlier), string(stored.JSON()), replaces, by); err != nil {
		return 0, "", fmt.Errorf("storing event %s: %w", ev.ID, err)
	}
	for _, prev := range ev.PrevEvents {
		if _, err := tx.ExecContext(ctx, `INSERT INTO event_edges (event_nid, prev_event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, nid, prev.String()); err != nil {
			return 0, "", fmt.Errorf("storing edge: %w", err)
		}
	}
	return nid, redactedBy, nil
}

// applyRemoteRedaction redacts the target of a received redaction when the
// redaction is allowed to take effect: the same sender server as the
// target, or a sender with the redact power level.
func (s *Service) applyRemoteRedaction(ctx context.Context, tx *storage.Tx, work *info, ev *pdu.Event) error {
	powerful := func() (bool, error) {
		pl, err := s.powerLevels(ctx, work)
		if err != nil {
			return false, err
		}
		return pl.GetUserLevel(ev.Sender) >= pl.Redact(), nil
	}
	target, err := s.Event(ctx, redactsOf(ev))
	if errors.Is(err, mxerr.NotFound) {
		// The target may arrive later (a fork, backfill, an auth chain):
		// it is stored redacted then (takePendingRedaction).
		p, err := powerful()
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO pending_redactions (target_id, redaction_id, room_id, sender_server, powerful)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`, redactsOf(ev).String(), ev.ID.String(), work.roomID.String(),
			ev.Sender.Homeserver(), storage.Bool(p)); err != nil {
			return fmt.Errorf("keeping redaction %s for later: %w", ev.ID, err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if target.RoomID() != work.roomID {
		return nil
	}
	if target.Sender.Homeserver() != ev.Sender.Homeserver() {
		if p, err := powerful(); err != nil || !p {
			return err
		}
	}
	return s.applyRedaction(ctx, tx, ev)
}

// takePendingRedaction returns the redaction, received before ev, that
// applies to it ("" for none), and forgets the redactions of ev that
// were waiting.
func (s *Service) takePendingRedaction(ctx context.Context, tx *storage.Tx, ev *pdu.Event) (id.EventID, error) {
	rows, err := tx.QueryContext(ctx, `SELECT redaction_id, room_id, sender_server, powerful FROM pending_redactions WHERE target_id = $1`, ev.ID.String())
	if err != nil {
		return "", fmt.Errorf("looking up redactions of %s: %w", ev.ID, err)
	}
	var by id.EventID
	var found bool
	for rows.Next() {
		var redaction, roomID, server string
		var powerful int64
		if err := rows.Scan(&redaction, &roomID, &server, &powerful); err != nil {
			rows.Close()
			return "", fmt.Errorf("reading redactions of %s: %w", ev.ID, err)
		}
		found = true
		if by == "" && id.RoomID(roomID) == ev.RoomID() && (powerful != 0 || server == ev.Sender.Homeserver()) {
			by = id.EventID(redaction)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("reading redactions of %s: %w", ev.ID, err)
	}
	if found {
		if _, err := tx.ExecContext(ctx, `DELETE FROM pending_redactions WHERE target_id = $1`, ev.ID.String()); err != nil {
			return "", fmt.Errorf("clearing redactions of %s: %w", ev.ID, err)
		}
	}
	return by, nil
}

// StoreOutliers stores events of a room without placing them in its
// timeline or state: an auth chain or a state snapshot fetched from another
// server. Each is checked against its own auth events (which must be among
// evs or already stored) and stored as rejected when it fails. Events
// already held are skipped.
func (s *Service) StoreOutliers(ctx context.Context, roomID id.RoomID, evs []*pdu.Event) error {
	byID := make(map[id.EventID]*pdu.Event, len(evs))
	for _, e := range evs {
		if e.RoomID() == roomID {
			byID[e.ID] = e
		}
	}
	ids := make([]id.EventID, 0, len(byID))
	for evID := range byID {
		ids = append(ids, evID)
	}
	held, err := s.Events(ctx, ids)
	if err != nil {
		return err
	}
	for _, h := range held {
		delete(byID, h.ID)
	}
	order := authOrder(byID)
	var stored []*Stored
	batch := make(map[id.EventID]*Stored, len(order))
	if len(order) == 0 {
		return nil
	}
	err = s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		clear(batch)
		stored = stored[:0]
		// One allocation each for the whole batch: a join of a big room
		// stores thousands of outliers at once.
		lastPos, err := storage.NextID(ctx, tx, "outlier", int64(len(order)))
		if err != nil {
			return err
		}
		lastNID, err := storage.NextID(ctx, tx, "event_nid", int64(len(order)))
		if err != nil {
			return err
		}
		for i, e := range order {
			rejected := false
			if err := s.authorizeOutlier(ctx, e, batch); err != nil {
				rejected = true
				s.log.Info("rejected outlier", "room_id", roomID, "event_id", e.ID, "err", err)
			}
			e.PDU.InternalMeta.Rejected = rejected
			pos := lastPos - int64(len(order)) + 1 + int64(i)
			nid, redactedBy, err := s.insertEventNID(ctx, tx, lastNID-int64(len(order))+1+int64(i), e, -pos, 0, rejected, false, true, sql.NullInt64{})
			if err != nil {
				return err
			}
			st := &Stored{Event: e, NID: nid, StreamPos: -pos, Rejected: rejected, Outlier: true, RedactedBy: redactedBy}
			if redactedBy != "" {
				st.Event = e.Redacted()
			}
			stored = append(stored, st)
			batch[e.ID] = st
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, st := range stored {
		s.events.Add(st.ID, st)
	}
	return nil
}

// authorizeOutlier checks an outlier against its own auth events, looking
// in the batch being written first.
func (s *Service) authorizeOutlier(ctx context.Context, e *pdu.Event, batch map[id.EventID]*Stored) error {
	get := func(ids []id.EventID) ([]*mpdu.PDU, error) {
		out := make([]*mpdu.PDU, len(ids))
		var rest []id.EventID
		for i, evID := range ids {
			if b, ok := batch[evID]; ok {
				out[i] = b.PDU
			}
			if out[i] == nil {
				rest = append(rest, evID)
			}
		}
		if len(rest) > 0 {
			got, err := s.orderedPDUs(ctx)(rest)
			if err != nil {
				return nil, err
			}
			j := 0
			for i := range out {
				if out[i] == nil {
					out[i] = got[j]
					j++
				}
			}
		}
		return out, nil
	}
	return eventauth.Authorize(e.Version, e.PDU, nil, get, s.verifyKeys(ctx))
}

// authOrder sorts events so each comes after the auth events it has in the
// set (ties by depth, then ID, for determinism).
func authOrder(evs map[id.EventID]*pdu.Event) []*pdu.Event {
	ids := make([]id.EventID, 0, len(evs))
	for evID := range evs {
		ids = append(ids, evID)
	}
	sort.Slice(ids, func(i, j int) bool {
		a, b := evs[ids[i]], evs[ids[j]]
		if a.Depth != b.Depth {
			return a.Depth < b.Depth
		}
		return a.ID < b.ID
	})
	done := make(map[id.EventID]bool, len(evs))
	out := make([]*pdu.Event, 0, len(evs))
	var visit func(evID id.EventID)
	visit = func(evID id.EventID) {
		e := evs[evID]
		if e == nil || done[evID] {
			return
		}
		done[evID] = true
		for _, a := range e.AuthRefs() {
			visit(a)
		}
		out = append(out, e)
	}
	for _, evID := range ids {
		visit(evID)
	}
	return out
}

// resolve merges state sets with the state resolution algorithm of the
// room version. One set, or identical sets, need no resolution.
func (s *Service) resolve(ctx context.Context, work *info, sets []State) (State, error) {
	if len(sets) == 0 {
		return State{}, nil
	}
	same := true
	for _, st := range sets[1:] {
		if !sameState(st, sets[0]) {
			same = false
			break
		}
	}
	if same {
		return sets[0], nil
	}
	idSets := make([]stateres.StateMap, len(sets))
	for i, st := range sets {
		m := make(stateres.StateMap, len(st))
		for k, ref := range st {
			m[k] = ref.ID
		}
		idSets[i] = m
	}
	res, err := stateres.Resolve(ctx, work.version, idSets, resolverFetcher{s, work})
	if err != nil {
		return nil, fmt.Errorf("resolving state: %w", err)
	}
	return s.fromIDs(ctx, work, res)
}

// fromIDs turns a state map of event IDs into one with nids, looking in
// the working view's open transaction first.
func (s *Service) fromIDs(ctx context.Context, work *info, m stateres.StateMap) (State, error) {
	ids := make([]id.EventID, 0, len(m))
	for _, evID := range m {
		ids = append(ids, evID)
	}
	evs, err := s.eventsFor(ctx, work, ids)
	if err != nil {
		return nil, err
	}
	nids := make(map[id.EventID]int64, len(evs))
	for _, e := range evs {
		nids[e.ID] = e.NID
	}
	out := make(State, len(m))
	for k, evID := range m {
		nid, ok := nids[evID]
		if !ok {
			return nil, fmt.Errorf("state event %s is not stored", evID)
		}
		out[k] = Ref{NID: nid, ID: evID}
	}
	return out, nil
}

// resolverFetcher serves events to state resolution: those of the working
// view's open transaction (the event being stored is usually one of the
// conflicted ones), then stored ones.
type resolverFetcher struct {
	s    *Service
	work *info
}

func (f resolverFetcher) Events(ctx context.Context, ids []id.EventID) ([]*pdu.Event, error) {
	got, err := f.s.eventsFor(ctx, f.work, ids)
	if err != nil {
		return nil, err
	}
	out := make([]*pdu.Event, 0, len(got))
	for _, g := range got {
		if !g.Rejected {
			out = append(out, g.Event)
		}
	}
	return out, nil
}
