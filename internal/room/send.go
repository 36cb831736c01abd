package room

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/federation/eventauth"
	mpdu "maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/myelin-chat/myelin/internal/storage"
)

// Txn identifies a client transaction for idempotent sends. The spec
// scopes a transaction ID to the device and the request path, so Scope
// names the path (see SendScope and RedactScope): the same ID in another
// room, or on /redact instead of /send, is another transaction.
type Txn struct {
	Device id.DeviceID
	Scope  string
	ID     string
}

// SendScope is the transaction scope of PUT /rooms/{roomID}/send/{evType}.
func SendScope(roomID id.RoomID, evType string) string {
	return "send " + roomID.String() + " " + evType
}

// RedactScope is the transaction scope of PUT /rooms/{roomID}/redact/{target}.
func RedactScope(roomID id.RoomID, target id.EventID) string {
	return "redact " + roomID.String() + " " + target.String()
}

// maxPDUSize is the spec's limit on the size of an event.
const maxPDUSize = 65536

// Send builds a local event from p in an existing room, authorizes it
// against the current state and persists it. A repeated transaction returns
// the event of the first one: the transaction ID is the primary key of
// transaction_ids, so persisting the repeat fails and the first event is
// looked up then. Retries are rare, and checking first would cost every
// send a query.
func (s *Service) Send(ctx context.Context, p pdu.Proto, txn *Txn) (*Stored, error) {
	in, err := s.lockedInfo(ctx, p.RoomID)
	if err != nil {
		return nil, err
	}
	defer in.mu.Unlock()
	if !in.exists {
		return nil, mxerr.NotFound.With("unknown room")
	}
	work := in.clone()
	// Build, sign and authorize under the room lock only: they read the
	// room's state, not the database being written, and keeping them out
	// of WriteTx keeps the process-wide write lock for the writes alone.
	ev, err := s.buildLocal(ctx, work, p)
	if err != nil {
		// A repeat whose sender may no longer send here (kicked since,
		// say) still gets the first event.
		if txn != nil {
			if first, terr := s.txnEvent(ctx, p.Sender, txn); terr == nil && first != nil {
				return first, nil
			}
		}
		return nil, err
	}
	var stored *Stored
	start := time.Now()
	// The room lock serialises every write to this room, so the
	// transaction may overlap with other rooms' (see ConcurrentWriteTx
	// for why stream positions stay ordered).
	err = s.db.ConcurrentWriteTx(ctx, func(tx *storage.Tx) error {
		var err error
		stored, err = s.persist(ctx, tx, work, ev, txn)
		return err
	})
	if isTxnConflict(err) {
		// A repeat of the transaction, or a concurrent retry of it in
		// another room's send, was first: answer with its event.
		ev, err := s.txnEvent(ctx, p.Sender, txn)
		if err == nil && ev == nil {
			err = fmt.Errorf("transaction %s conflicted but is not recorded", txn.ID)
		}
		return ev, err
	}
	if err != nil {
		return nil, err
	}
	s.persisted("local", start)
	s.commit(ctx, in, work, []*Stored{stored})
	return stored, nil
}

// TxnIDMemory is how long a client transaction ID is remembered: a retry
// within it gets the first event back. Clients retry within seconds or
// minutes; older IDs would only grow the table (about 230 bytes a message
// on SQLite, a seventh of a message's footprint).
const TxnIDMemory = 24 * time.Hour

// PruneTransactionIDs forgets the client transaction IDs recorded before
// before, and returns how many it forgot.
func (s *Service) PruneTransactionIDs(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM transaction_ids WHERE created_ts < $1`, before.UnixMilli())
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("pruning transaction IDs: %w", err)
	}
	return n, nil
}

// txnEvent returns the event the sender's transaction ID was used for, or
// nil if it was not (or was forgotten).
func (s *Service) txnEvent(ctx context.Context, sender id.UserID, txn *Txn) (*Stored, error) {
	var evID string
	err := s.db.QueryRowContext(ctx, `SELECT event_id FROM transaction_ids WHERE user_id = $1 AND device_id = $2 AND scope = $3 AND txn_id = $4`,
		sender.String(), txn.Device.String(), txn.Scope, txn.ID).Scan(&evID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checking transaction %s: %w", txn.ID, err)
	}
	return s.Event(ctx, id.EventID(evID))
}

func (in *info) clone() *info {
	return &info{
		loaded: true, exists: in.exists, roomID: in.roomID, version: in.version,
		state: in.state, snapshot: in.snapshot, chainLen: in.chainLen,
		extremities: in.extremities, depth: in.depth, localJoined: in.localJoined,
		servers: in.servers,
	}
}

// buildLocal fills the DAG fields of a local event from the working room
// view, signs it and checks it against the auth rules.
func (s *Service) buildLocal(ctx context.Context, work *info, p pdu.Proto) (*pdu.Event, error) {
	// Bad content is the client's fault (400), not a failure to sign (500).
	if err := pdu.CheckProto(p); err != nil {
		return nil, mxerr.BadJSON.Wrap(err).With("%v", err)
	}
	if p.Type == "m.room.create" && work.version.RoomIDIsCreateEventID() {
		p.RoomID = ""
	} else {
		p.RoomID = work.roomID
	}
	draft := &mpdu.PDU{Type: p.Type, StateKey: p.StateKey, Sender: p.Sender, Content: []byte(p.Content)}
	var authIDs []id.EventID
	var authEvents []*mpdu.PDU
	for _, k := range draft.AuthEventSelection(work.version) {
		if ref, ok := work.state[k]; ok {
			authIDs = append(authIDs, ref.ID)
			if p, ok := work.pending[ref.ID]; ok {
				authEvents = append(authEvents, p.PDU)
				continue
			}
			ev, err := s.Event(ctx, ref.ID)
			if err != nil {
				return nil, fmt.Errorf("loading auth event %s: %w", ref.ID, err)
			}
			authEvents = append(authEvents, ev.PDU)
		}
	}
	ts := s.now().UnixMilli()
	if p.Type == "m.room.create" {
		ts = s.createTimestamp(ts)
	}
	ev, err := pdu.Build(p, pdu.BuildArgs{
		Version: work.version, AuthEvents: authIDs, PrevEvents: work.extremities,
		Depth: work.depth + 1, Timestamp: ts,
		ServerName: s.serverName, KeyID: s.key.ID, Key: s.key.Priv,
		// Room versions 1 and 2 quote the reference hash of every auth and
		// prev event; the events of a room being created are still pending.
		Referenced: func(evID id.EventID) (*pdu.Event, error) {
			if st, ok := work.pending[evID]; ok {
				return st.Event, nil
			}
			st, err := s.Event(ctx, evID)
			if err != nil {
				return nil, err
			}
			return st.Event, nil
		},
	})
	if err != nil {
		return nil, err
	}
	if len(ev.JSON()) > maxPDUSize {
		return nil, mxerr.TooLarge.With("event is larger than 65536 bytes").WithStatus(413)
	}
	if err := s.authorize(ctx, work, ev, authEvents); err != nil {
		return nil, err
	}
	if p.Type == "m.room.redaction" {
		if err := s.checkRedaction(ctx, work, ev); err != nil {
			return nil, err
		}
	}
	return ev, nil
}

// authorize applies the auth rules of the room version.
func (s *Service) authorize(ctx context.Context, work *info, ev *pdu.Event, authEvents []*mpdu.PDU) error {
	getEvents := func(ids []id.EventID) ([]*mpdu.PDU, error) {
		evs, err := s.eventsFor(ctx, work, ids)
		if err != nil {
			return nil, err
		}
		out := make([]*mpdu.PDU, len(evs))
		for i, e := range evs {
			out[i] = e.PDU
		}
		return out, nil
	}
	if err := eventauth.Authorize(ev.Version, ev.PDU, authEvents, getEvents, s.verifyKeys(ctx)); err != nil {
		var afe eventauth.AuthFailError
		if errors.As(err, &afe) {
			return mxerr.Forbidden.With("event not allowed by auth rule %s: %s", afe.Index, afe.Error()).Wrap(err)
		}
		return mxerr.Forbidden.With("event not allowed: %v", err).Wrap(err)
	}
	return nil
}

// checkRedaction enforces the client-side redaction rule the auth rules
// leave to the server: only the original sender, or someone with the
// redact power level, may redact. As in Synapse, someone with that level
// may also redact an event this server does not hold (the spec allows
// redacting events not yet received); anyone else gets M_NOT_FOUND, since
// the sender cannot be compared.
func (s *Service) checkRedaction(ctx context.Context, work *info, ev *pdu.Event) error {
	target := redactsOf(ev)
	if target == "" {
		return mxerr.BadJSON.With("redaction without a target")
	}
	orig, err := s.Event(ctx, target)
	if err != nil && !errors.Is(err, mxerr.NotFound) {
		return err
	}
	if orig != nil {
		if orig.RoomID() != work.roomID {
			return mxerr.NotFound.With("event not found in this room")
		}
		if orig.Type == "m.room.create" {
			return mxerr.Forbidden.With("the create event cannot be redacted")
		}
		if orig.Sender == ev.Sender {
			return nil
		}
	}
	pl, err := s.powerLevels(ctx, work)
	if err != nil {
		return err
	}
	if pl.GetUserLevel(ev.Sender) >= pl.Redact() {
		return nil
	}
	if orig == nil {
		return mxerr.NotFound.With("event %s not found", target)
	}
	return mxerr.Forbidden.With("you may not redact other users' events")
}

// redactsOf returns the event a redaction redacts: content.redacts from
// room version 11, where the top-level field is no longer part of the
// event (a copy may be there for older clients, and must not be trusted
// when it differs), the top-level redacts before.
func redactsOf(ev *pdu.Event) id.EventID {
	if ev.Version.RedactsInContent() {
		return id.EventID(gjson.GetBytes(ev.Content, "redacts").Str)
	}
	if ev.Redacts != nil {
		return *ev.Redacts
	}
	return ""
}

// persist writes ev with everything that follows from it, updating work.
// With a client transaction ID that is already recorded, the transaction
// fails with a unique violation on transaction_ids (see isTxnConflict).
//
// The statements are shaped for ConcurrentWriteTx on PostgreSQL. Those
// whose answer persist does not need are queued (storage.Tx.Queue), so a
// message goes out as one pipelined batch with COMMIT. And the stream
// position is allocated last, by the event's own INSERT: from that
// statement to COMMIT the transaction holds the stream counter's row lock,
// which every other event write in the process waits for. A state event
// needs its position for the membership rows and allocates it at once.
func (s *Service) persist(ctx context.Context, tx *storage.Tx, work *info, ev *pdu.Event, txn *Txn) (*Stored, error) {
	var txnDev, txnID any
	if txn != nil {
		// No SELECT first: the primary key rejects a repeated transaction
		// ID, and on PostgreSQL a concurrent insert of the same key waits
		// for the first to commit and then fails.
		if err := tx.Queue(ctx, `INSERT INTO transaction_ids (user_id, device_id, scope, txn_id, event_id, created_ts) VALUES ($1, $2, $3, $4, $5, $6)`,
			ev.Sender.String(), txn.Device.String(), txn.Scope, txn.ID, ev.ID.String(), s.now().UnixMilli()); err != nil {
			return nil, fmt.Errorf("recording transaction: %w", err)
		}
		txnDev, txnID = txn.Device.String(), txn.ID
	}
	nid, err := storage.NextNID(ctx, tx, "event_nid")
	if err != nil {
		return nil, err
	}
	roomID := ev.RoomID()
	if work.roomID == "" {
		work.roomID = roomID
	}
	if err := s.linkEvent(ctx, tx, work, ev, nid); err != nil {
		return nil, err
	}
	serversBefore := work.servers
	st := &Stored{Event: ev, NID: nid, Snapshot: work.snapshot}
	if txn != nil {
		st.TxnDevice, st.TxnID = txn.Device, txn.ID
	}
	if ev.IsState() {
		// work.state is still the state before ev.
		st.ReplacesNID, st.ReplacesKnown = work.state[ev.Key()].NID, true
	}
	const insertEvent = `INSERT INTO events (event_nid, event_id, room_id, type, state_key, sender, depth,
		origin_server_ts, stream_pos, snapshot_nid, txn_device, txn_id, json, replaces_nid)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, ` + storage.NextIDMarker + `, $9, $10, $11, $12, $13)`
	args := []any{nid, ev.ID.String(), roomID.String(), ev.Type, ev.StateKey, ev.Sender.String(), ev.Depth,
		ev.OriginServerTS, work.snapshot, txnDev, txnID, string(ev.JSON()), st.replacesColumn()}
	if ev.IsState() {
		st.StreamPos, err = storage.ExecNextID(ctx, tx, "stream", insertEvent, args...)
	} else {
		// st.StreamPos is set when the batch runs, by commit at the latest.
		err = storage.QueueNextID(ctx, tx, &st.StreamPos, "stream", insertEvent, args...)
	}
	if err != nil {
		return nil, fmt.Errorf("storing event %s: %w", ev.ID, err)
	}
	if work.pending == nil {
		work.pending = map[id.EventID]*Stored{}
	}
	work.pending[ev.ID] = st
	s.indexRecent(tx, roomID, st)
	if err := s.indexStored(ctx, tx, st); err != nil {
		return nil, err
	}
	if ev.Type == "m.room.redaction" {
		if err := s.applyRedaction(ctx, tx, ev); err != nil {
			return nil, err
		}
	}
	if ev.IsState() {
		if err := s.applyState(ctx, tx, work, st); err != nil {
			return nil, err
		}
	}
	if err := s.enqueue(ctx, tx, work, serversBefore, ev, ""); err != nil {
		return nil, err
	}
	return st, nil
}

// isTxnConflict reports whether err is persist failing on a client
// transaction ID that is already recorded.
func isTxnConflict(err error) bool {
	return storage.IsUniqueViolation(err) && strings.Contains(err.Error(), "transaction_ids")
}

// linkEvent stores the DAG edges of a local event (nid) and makes it the
// room's only forward extremity, replacing its prev events. The
// statements are queued: nothing here needs an answer.
func (s *Service) linkEvent(ctx context.Context, tx *storage.Tx, work *info, ev *pdu.Event, nid int64) error {
	roomID := work.roomID.String()
	for _, prev := range ev.PrevEvents {
		if err := tx.Queue(ctx, `INSERT INTO event_edges (event_nid, prev_event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, nid, prev.String()); err != nil {
			return fmt.Errorf("storing edge: %w", err)
		}
		if err := tx.Queue(ctx, `DELETE FROM forward_extremities WHERE room_id = $1 AND event_id = $2`, roomID, prev.String()); err != nil {
			return fmt.Errorf("updating extremities: %w", err)
		}
	}
	if err := tx.Queue(ctx, `INSERT INTO forward_extremities (room_id, event_id) VALUES ($1, $2)`, roomID, ev.ID.String()); err != nil {
		return fmt.Errorf("updating extremities: %w", err)
	}
	work.extremities = []id.EventID{ev.ID}
	work.depth = max(work.depth, ev.Depth)
	return nil
}

// enqueue queues ev for every other server that was or is in the room, and
// the server of a member event's target, except skip (the server the event
// came from).
func (s *Service) enqueue(ctx context.Context, tx *storage.Tx, work *info, before map[string]int, ev *pdu.Event, skip string) error {
	if s.outbox == nil {
		return nil
	}
	dests := map[string]struct{}{}
	for sv := range before {
		dests[sv] = struct{}{}
	}
	for sv := range work.servers {
		dests[sv] = struct{}{}
	}
	if ev.Type == "m.room.member" && ev.StateKey != nil {
		dests[id.UserID(*ev.StateKey).Homeserver()] = struct{}{}
	}
	delete(dests, s.serverName)
	delete(dests, skip)
	delete(dests, "")
	if len(dests) == 0 {
		return nil
	}
	list := make([]string, 0, len(dests))
	for sv := range dests {
		list = append(list, sv)
	}
	slices.Sort(list)
	if err := s.outbox.EnqueuePDU(ctx, tx, list, ev.JSON()); err != nil {
		return fmt.Errorf("queueing %s for other servers: %w", ev.ID, err)
	}
	return nil
}

// applyState moves the room's current state past a state event.
func (s *Service) applyState(ctx context.Context, tx *storage.Tx, work *info, st *Stored) error {
	next := maps.Clone(work.state)
	if next == nil {
		next = State{}
	}
	next[st.Key()] = Ref{NID: st.NID, ID: st.ID}
	return s.setCurrentState(ctx, tx, work, next, st.StreamPos)
}

// setCurrentState makes next the room's current state: it writes the
// snapshot, the current_state rows that differ, and the memberships of
// local users. pos is the stream position of the event causing the change.
func (s *Service) setCurrentState(ctx context.Context, tx *storage.Tx, work *info, next State, pos int64) error {
	prev := work.state
	snap, chain, err := s.writeSnapshot(ctx, tx, work.roomID, work.snapshot, work.chainLen, prev, next)
	if err != nil {
		return err
	}
	mc := memberCounts{work: work}
	for key, ref := range next {
		old, had := prev[key]
		if had && old.NID == ref.NID {
			continue
		}
		ev, err := s.eventFor(ctx, work, ref.ID)
		if err != nil {
			return fmt.Errorf("loading new state event %s: %w", ref.ID, err)
		}
		var membership any
		if key.Type == "m.room.member" {
			membership = ev.Membership()
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO current_state (room_id, type, state_key, event_nid, event_id, membership)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (room_id, type, state_key)
			DO UPDATE SET event_nid = excluded.event_nid, event_id = excluded.event_id, membership = excluded.membership`,
			work.roomID.String(), key.Type, key.StateKey, ref.NID, ref.ID.String(), membership); err != nil {
			return fmt.Errorf("updating current state: %w", err)
		}
		if key.Type == "m.room.member" {
			oldM := ""
			if had {
				if oldEv, err := s.eventFor(ctx, work, old.ID); err == nil {
					oldM = oldEv.Membership()
				}
			}
			if err := s.memberChanged(ctx, tx, work, &mc, id.UserID(key.StateKey), oldM, ev.Membership(), ref.ID, pos); err != nil {
				return err
			}
		}
	}
	for key, old := range prev {
		if _, ok := next[key]; ok {
			continue
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM current_state WHERE room_id = $1 AND type = $2 AND state_key = $3`,
			work.roomID.String(), key.Type, key.StateKey); err != nil {
			return fmt.Errorf("updating current state: %w", err)
		}
		if key.Type == "m.room.member" {
			oldM := ""
			if oldEv, err := s.eventFor(ctx, work, old.ID); err == nil {
				oldM = oldEv.Membership()
			}
			if err := s.memberChanged(ctx, tx, work, &mc, id.UserID(key.StateKey), oldM, "leave", old.ID, pos); err != nil {
				return err
			}
		}
	}
	if err := s.stateChanged(ctx, tx, work, prev, next); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE rooms SET current_snapshot = $2 WHERE room_id = $1`, work.roomID.String(), snap); err != nil {
		return fmt.Errorf("updating room snapshot: %w", err)
	}
	work.state, work.snapshot, work.chainLen = next, snap, chain
	s.snapshots.Add(snap, cachedSnapshot{next, chain})
	return nil
}

// memberCounts clones the working view's membership maps on first write,
// since the published view shares them with readers.
type memberCounts struct {
	work          *info
	joinedCloned  bool
	serversCloned bool
}

func (m *memberCounts) joined() map[id.UserID]struct{} {
	if !m.joinedCloned {
		m.work.localJoined = maps.Clone(m.work.localJoined)
		if m.work.localJoined == nil {
			m.work.localJoined = map[id.UserID]struct{}{}
		}
		m.joinedCloned = true
	}
	return m.work.localJoined
}

func (m *memberCounts) servers() map[string]int {
	if !m.serversCloned {
		m.work.servers = maps.Clone(m.work.servers)
		if m.work.servers == nil {
			m.work.servers = map[string]int{}
		}
		m.serversCloned = true
	}
	return m.work.servers
}

// memberChanged follows a membership change of user in the current state:
// per-server join counts, and for local users their membership row.
func (s *Service) memberChanged(ctx context.Context, tx *storage.Tx, work *info, mc *memberCounts, user id.UserID, oldM, newM string, evID id.EventID, pos int64) error {
	server := user.Homeserver()
	if oldM == "join" && newM != "join" {
		sv := mc.servers()
		if sv[server]--; sv[server] <= 0 {
			delete(sv, server)
		}
	} else if oldM != "join" && newM == "join" {
		mc.servers()[server]++
	}
	if server != s.serverName {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO local_memberships (user_id, room_id, membership, event_id, stream_pos, forgotten)
		VALUES ($1, $2, $3, $4, $5, 0) ON CONFLICT (user_id, room_id)
		DO UPDATE SET membership = excluded.membership, event_id = excluded.event_id, stream_pos = excluded.stream_pos, forgotten = 0`,
		user.String(), work.roomID.String(), newM, evID.String(), pos); err != nil {
		return fmt.Errorf("updating local membership: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM remote_invites WHERE user_id = $1 AND room_id = $2`, user.String(), work.roomID.String()); err != nil {
		return fmt.Errorf("clearing remote invite: %w", err)
	}
	if newM == "join" {
		mc.joined()[user] = struct{}{}
	} else if _, ok := work.localJoined[user]; ok {
		delete(mc.joined(), user)
	}
	return nil
}

// eventFor returns an event of the working view's open transaction, or a
// stored one.
func (s *Service) eventFor(ctx context.Context, work *info, evID id.EventID) (*Stored, error) {
	if p, ok := work.pending[evID]; ok {
		return p, nil
	}
	return s.Event(ctx, evID)
}

// eventsFor is eventFor for several events, in no particular order: those
// of the open transaction (a room being created, or the event being
// stored) are not readable from the database yet.
func (s *Service) eventsFor(ctx context.Context, work *info, ids []id.EventID) ([]*Stored, error) {
	var out []*Stored
	var rest []id.EventID
	for _, evID := range ids {
		if p, ok := work.pending[evID]; ok {
			out = append(out, p)
		} else {
			rest = append(rest, evID)
		}
	}
	evs, err := s.Events(ctx, rest)
	if err != nil {
		return nil, err
	}
	return append(out, evs...), nil
}

// applyRedaction replaces the stored copy of the redacted event with its
// redacted form. Clients then only ever see the redacted content.
func (s *Service) applyRedaction(ctx context.Context, tx *storage.Tx, ev *pdu.Event) error {
	target := redactsOf(ev)
	orig, err := s.Event(ctx, target)
	if errors.Is(err, mxerr.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	red := orig.Redacted()
	if _, err := tx.ExecContext(ctx, `UPDATE events SET redacted_by = $2, json = $3 WHERE event_id = $1`,
		target.String(), ev.ID.String(), string(red.JSON())); err != nil {
		return fmt.Errorf("redacting %s: %w", target, err)
	}
	if err := s.indexRedacted(ctx, tx, target); err != nil {
		return err
	}
	tx.AfterCommit(func() { s.events.Remove(target) })
	return nil
}

// commit publishes the working view after the transaction is durable and
// wakes local users who can see the new events.
func (s *Service) commit(ctx context.Context, in, work *info, evs []*Stored) {
	before := in.localJoined
	in.exists, in.version, in.roomID = true, work.version, work.roomID
	in.state, in.snapshot, in.chainLen = work.state, work.snapshot, work.chainLen
	in.extremities, in.depth, in.localJoined = work.extremities, work.depth, work.localJoined
	in.servers = work.servers
	wake := make(map[id.UserID]struct{}, len(in.localJoined)+len(before))
	for u := range in.localJoined {
		wake[u] = struct{}{}
	}
	for u := range before {
		wake[u] = struct{}{}
	}
	kind := notifier.Room
	for _, ev := range evs {
		s.events.Add(ev.ID, ev)
		if ev.Type == "m.room.member" && ev.StateKey != nil {
			kind |= notifier.Membership
			if u := id.UserID(*ev.StateKey); u.Homeserver() == s.serverName {
				wake[u] = struct{}{}
			}
			if s.onMembership != nil && !ev.Rejected && !ev.SoftFailed {
				// The room lock is held here, and hooks may read the room
				// (typing wakes its local members), so they run after it.
				roomID, user, m := work.roomID, id.UserID(*ev.StateKey), ev.Membership()
				go s.onMembership(context.WithoutCancel(ctx), roomID, user, m)
			}
		}
	}
	users := make([]id.UserID, 0, len(wake))
	for u := range wake {
		users = append(users, u)
	}
	s.notifier.Notify(kind, users...)
	s.notifier.NotifyRoom(work.roomID)
}
