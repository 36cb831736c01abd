package notifications

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/push"
	"github.com/myelin-chat/myelin/internal/receipts"
	"github.com/myelin-chat/myelin/internal/room"
	"github.com/myelin-chat/myelin/internal/storage"
)

// batchSize is how many events one worker transaction evaluates at most,
// maxRowsPerBatch about how many notifications it writes (a message in a
// room of a thousand members makes a thousand).
const (
	batchSize       = 100
	maxRowsPerBatch = 2000
)

// loadCursor reads the position up to which events are evaluated.
func (s *Service) loadCursor(ctx context.Context) (int64, error) {
	var pos int64
	err := s.db.QueryRowContext(ctx, `SELECT stream_pos FROM notification_cursor WHERE id = 1`).Scan(&pos)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("loading the notification cursor: %w", err)
	}
	return pos, nil
}

func storeCursor(ctx context.Context, tx *storage.Tx, pos int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO notification_cursor (id, stream_pos) VALUES (1, $1)
		ON CONFLICT (id) DO UPDATE SET stream_pos = excluded.stream_pos`, pos)
	if err != nil {
		return fmt.Errorf("storing the notification cursor: %w", err)
	}
	return nil
}

// batch evaluates the accepted timeline events after cursor (up to
// batchSize of them) and records the outcome with the new cursor in one
// transaction. It returns the new cursor and whether more events wait.
//
// Positions commit in stream order (see storage), so every event at or
// below the current position is visible: none can appear behind the
// cursor later. Backfilled history and outliers have negative positions
// and are never evaluated.
//
// Only users whose syncs went on without the evaluation are woken (see
// WaitEvaluated): every other sync that sent one of the events waited
// and carried the counts, so a wake-up would only build an empty
// response per member.
func (s *Service) batch(ctx context.Context, cursor int64) (int64, bool, error) {
	upto, err := s.db.CurrentID(ctx, "stream")
	if err != nil {
		return cursor, false, err
	}
	if upto <= cursor {
		return cursor, false, nil
	}
	rows, err := s.db.QueryContext(ctx, `SELECT event_id, stream_pos FROM events
		WHERE stream_pos > $1 AND stream_pos <= $2 AND outlier = 0 AND rejected = 0 AND soft_failed = 0
		ORDER BY stream_pos LIMIT $3`, cursor, upto, batchSize)
	if err != nil {
		return cursor, false, fmt.Errorf("reading events after %d: %w", cursor, err)
	}
	var ids []id.EventID
	var last int64
	for rows.Next() {
		var evID string
		if err := rows.Scan(&evID, &last); err != nil {
			rows.Close()
			return cursor, false, err
		}
		ids = append(ids, id.EventID(evID))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return cursor, false, err
	}
	if len(ids) == 0 {
		// Receipts and account data took the positions: nothing to
		// store, and the cursor row can stay behind (the range is empty).
		s.published(upto, true)
		return upto, false, nil
	}
	next, more := upto, len(ids) == batchSize
	if more {
		next = last
	}
	evs, err := s.rooms.Events(ctx, ids)
	if err != nil {
		return cursor, false, err
	}
	byID := make(map[id.EventID]*room.Stored, len(evs))
	for _, ev := range evs {
		byID[ev.ID] = ev
	}
	var ps []pending
	var marks []mark
	for _, evID := range ids {
		ev := byID[evID]
		if ev == nil {
			continue
		}
		p, own, err := s.evaluateEvent(ctx, ev)
		if err != nil {
			return cursor, false, fmt.Errorf("evaluating push rules for %s: %w", evID, err)
		}
		ps = append(ps, p...)
		if own != nil {
			marks = append(marks, *own)
		}
		if len(ps) >= maxRowsPerBatch && ev.StreamPos < next {
			// The rest waits for the next transaction, so that the
			// sends queued behind this one do not wait long.
			next, more = ev.StreamPos, true
			break
		}
	}
	// The users whose counts this batch may change: no fill of their
	// cached counts may race with it.
	touched := map[id.UserID]bool{}
	for _, p := range ps {
		touched[p.user] = true
	}
	for _, m := range marks {
		touched[m.user] = true
	}
	s.mu.Lock()
	for u := range touched {
		s.inflight[u]++
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		for u := range touched {
			if s.inflight[u]--; s.inflight[u] == 0 {
				delete(s.inflight, u)
			}
		}
		s.mu.Unlock()
	}()
	err = s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		ch, err := s.record(ctx, tx, ps, marks)
		if err != nil {
			return err
		}
		if err := storeCursor(ctx, tx, next); err != nil {
			return err
		}
		tx.AfterCommit(func() {
			s.mu.Lock()
			s.applyLocked(ch)
			wake := s.publishedLocked(next, !more)
			s.mu.Unlock()
			s.notifier.Notify(notifier.Notifications, wake...)
		})
		return nil
	})
	if err != nil {
		return cursor, false, fmt.Errorf("recording notifications after %d: %w", cursor, err)
	}
	return next, more, nil
}

// pair names a user's notifications in one room.
type pair struct {
	user id.UserID
	room id.RoomID
}

// changes are what a batch did to the counts: increments per user, room
// and thread at a position, and the pairs recounted from the rows.
type changes struct {
	incr      map[threadKey]increment
	recounted map[pair]bool
	// recountedTo are the recounted pairs' new counts per thread.
	recountedTo map[pair]map[string]Counts
}

type threadKey struct {
	pair
	thread string
}

type increment struct {
	notif, highlight, pos int64
}

// applyLocked brings the cached counts up to date with a committed batch.
// s.mu is held.
func (s *Service) applyLocked(ch changes) {
	users := map[id.UserID]bool{}
	updated := map[id.UserID]map[id.RoomID]*RoomCounts{}
	// own copies the user's cached counts for a change (copy on write:
	// syncs hold the maps they were given); nil when none are cached.
	own := func(u id.UserID) map[id.RoomID]*RoomCounts {
		if m := updated[u]; m != nil {
			return m
		}
		cur, ok := s.counts[u]
		if !ok {
			return nil
		}
		m := make(map[id.RoomID]*RoomCounts, len(cur))
		for r, rc := range cur {
			m[r] = rc
		}
		updated[u] = m
		return m
	}
	for pr := range ch.recounted {
		users[pr.user] = true
		// The recount's result replaces the room's cached counts, so a
		// user's own message does not cost their next sync a reload.
		if m := own(pr.user); m != nil {
			// record gives every recounted pair an increment under the
			// thread "" carrying the position of the change.
			rc := &RoomCounts{Threads: map[string]Counts{}, StreamPos: ch.incr[threadKey{pr, ""}].pos}
			for t, c := range ch.recountedTo[pr] {
				rc.Threads[t] = c
			}
			m[pr.room] = rc
		}
	}
	for k, inc := range ch.incr {
		users[k.user] = true
		if ch.recounted[k.pair] {
			continue
		}
		m := own(k.user)
		if m == nil {
			continue
		}
		old := m[k.room]
		rc := &RoomCounts{Threads: map[string]Counts{}}
		if old != nil {
			for t, c := range old.Threads {
				rc.Threads[t] = c
			}
			rc.StreamPos = old.StreamPos
		}
		c := rc.Threads[k.thread]
		c.Notifications += inc.notif
		c.Highlights += inc.highlight
		rc.Threads[k.thread] = c
		rc.StreamPos = inc.pos
		m[k.room] = rc
	}
	for u, m := range updated {
		s.counts[u] = m
	}
	for u := range users {
		s.version[u]++
	}
}

// record stores the notifications ps, applies the read marks of the
// senders' own events, raises or recounts the counts, and hands each
// unread notification to the sink. It returns what changed in the counts.
func (s *Service) record(ctx context.Context, tx *storage.Tx, ps []pending, marks []mark) (changes, error) {
	if len(ps) == 0 && len(marks) == 0 {
		return changes{}, nil
	}
	// A receipt stored after the batch was read but before this
	// transaction may cover its events: those notifications are read.
	covering, err := coveringReceipts(ctx, tx, ps)
	if err != nil {
		return changes{}, err
	}
	all := append(covering, marks...)
	byPair := map[pair][]mark{}
	for _, m := range all {
		byPair[pair{m.user, m.room}] = append(byPair[pair{m.user, m.room}], m)
	}
	read := func(p *pending) bool {
		for _, m := range byPair[pair{p.user, p.ev.RoomID()}] {
			if m.pos >= p.ev.StreamPos && (m.thread == "" || m.thread == p.thread) {
				return true
			}
		}
		return false
	}
	incr := map[threadKey][2]int64{}
	firstOf := map[threadKey]int64{}
	// at is the position each pair's counts change at: that of the
	// newest event changing them, so a sync that sent the events and
	// waited for their evaluation does not send the counts again.
	at := map[pair]int64{}
	unread := ps[:0:0]
	ts := s.now().UnixMilli()
	var rowArgs []any
	var rowVals []string
	flush := func() error {
		if len(rowVals) == 0 {
			return nil
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO notifications (user_id, stream_pos, room_id, event_id, thread_id, actions, highlight, unread, ts)
			VALUES `+strings.Join(rowVals, ", ")+` ON CONFLICT DO NOTHING`, rowArgs...)
		rowArgs, rowVals = rowArgs[:0], rowVals[:0]
		if err != nil {
			return fmt.Errorf("storing notifications: %w", err)
		}
		return nil
	}
	// Members with the same rule share its actions slice: one encoding.
	encoded := map[*json.RawMessage]string{}
	encode := func(a []json.RawMessage) string {
		if len(a) == 0 {
			return "[]"
		}
		e, ok := encoded[&a[0]]
		if !ok {
			b, _ := json.Marshal(a)
			e = string(b)
			encoded[&a[0]] = e
		}
		return e
	}
	for i := range ps {
		p := &ps[i]
		r := read(p)
		actions := encode(p.actions)
		n := len(rowArgs)
		rowVals = append(rowVals, "("+storage.Placeholders(n+1, 9)+")")
		rowArgs = append(rowArgs, p.user.String(), p.ev.StreamPos, p.ev.RoomID().String(), p.ev.ID.String(), p.thread,
			actions, storage.Bool(p.highlight), storage.Bool(!r), ts)
		if len(rowVals) == rowsPerStatement {
			if err := flush(); err != nil {
				return changes{}, err
			}
		}
		if r {
			continue
		}
		unread = append(unread, *p)
		k := threadKey{pair{p.user, p.ev.RoomID()}, p.thread}
		if _, ok := firstOf[k]; !ok {
			firstOf[k] = p.ev.StreamPos // ps are in stream order
		}
		at[k.pair] = max(at[k.pair], p.ev.StreamPos)
		c := incr[k]
		c[0]++
		if p.highlight {
			c[1]++
		}
		incr[k] = c
	}
	if err := flush(); err != nil {
		return changes{}, err
	}
	// The senders' own events mark their earlier notifications read.
	recount := map[pair]bool{}
	for _, m := range marks {
		n, err := markRead(ctx, tx, m)
		if err != nil {
			return changes{}, err
		}
		if n > 0 {
			pr := pair{m.user, m.room}
			recount[pr] = true
			at[pr] = max(at[pr], m.pos)
		}
	}
	if len(incr) == 0 && len(recount) == 0 {
		return changes{}, nil
	}
	batchFrom := int64(math.MaxInt64)
	for i := range ps {
		batchFrom = min(batchFrom, ps[i].ev.StreamPos)
	}
	recountedTo := map[pair]map[string]Counts{}
	for pr := range recount {
		threads, err := writeRecount(ctx, tx, pr.user, pr.room, at[pr], batchFrom)
		if err != nil {
			return changes{}, err
		}
		recountedTo[pr] = threads
	}
	var cArgs []any
	var cVals []string
	flushCounts := func() error {
		if len(cVals) == 0 {
			return nil
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO notification_counts (user_id, room_id, thread_id, notification_count, highlight_count, stream_pos, first_unread)
			VALUES `+strings.Join(cVals, ", ")+` ON CONFLICT (user_id, room_id, thread_id) DO UPDATE SET
			notification_count = notification_counts.notification_count + excluded.notification_count,
			highlight_count = notification_counts.highlight_count + excluded.highlight_count,
			stream_pos = excluded.stream_pos,
			first_unread = CASE WHEN notification_counts.notification_count = 0 THEN excluded.first_unread
				ELSE notification_counts.first_unread END`, cArgs...)
		cArgs, cVals = cArgs[:0], cVals[:0]
		if err != nil {
			return fmt.Errorf("raising notification counts: %w", err)
		}
		return nil
	}
	for k, c := range incr {
		if recount[k.pair] {
			continue // the recount included these rows
		}
		n := len(cArgs)
		cVals = append(cVals, "("+storage.Placeholders(n+1, 7)+")")
		cArgs = append(cArgs, k.user.String(), k.room.String(), k.thread, c[0], c[1], at[k.pair], firstOf[k])
		if len(cVals) == rowsPerStatement {
			if err := flushCounts(); err != nil {
				return changes{}, err
			}
		}
	}
	if err := flushCounts(); err != nil {
		return changes{}, err
	}
	if s.sink != nil {
		if err := s.deliver(ctx, tx, unread); err != nil {
			return changes{}, err
		}
	}
	ch := changes{incr: map[threadKey]increment{}, recounted: recount, recountedTo: recountedTo}
	for k, c := range incr {
		ch.incr[k] = increment{notif: c[0], highlight: c[1], pos: at[k.pair]}
	}
	for pr := range recount {
		// The recounted pairs change at at[pr], even with no increment.
		ch.incr[threadKey{pr, ""}] = increment{pos: at[pr]}
	}
	return ch, nil
}

// deliver hands the unread notifications to the sink, each with the
// user's unread count over all rooms once it is counted.
func (s *Service) deliver(ctx context.Context, tx *storage.Tx, ps []pending) error {
	var users []id.UserID
	seen := map[id.UserID]bool{}
	for _, p := range ps {
		if !seen[p.user] {
			seen[p.user] = true
			users = append(users, p.user)
		}
	}
	wanted, err := s.sink.WithPushers(ctx, tx, users)
	if err != nil {
		return err
	}
	if len(wanted) == 0 {
		return nil
	}
	kept := ps[:0:0]
	for _, p := range ps {
		if wanted[p.user] {
			kept = append(kept, p)
		}
	}
	ps = kept
	totals := map[id.UserID]int{}
	for _, p := range ps {
		if _, ok := totals[p.user]; ok {
			continue
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(SUM(notification_count), 0) FROM notification_counts WHERE user_id = $1`,
			p.user.String()).Scan(&n); err != nil {
			return fmt.Errorf("summing the unread count of %s: %w", p.user, err)
		}
		totals[p.user] = n
	}
	// Each notification carries the count as of itself: the later ones
	// of the batch are counted in the total read after the batch.
	later := map[id.UserID]int{}
	for i := len(ps) - 1; i >= 0; i-- {
		p := ps[i]
		n := push.Notification{UserID: p.user, RoomID: p.ev.RoomID(), EventID: p.ev.ID, Event: clientJSON(p.ev),
			Actions: p.actions, Tweaks: tweaks(p.actions), Highlight: p.highlight,
			Unread: totals[p.user] - later[p.user], StreamPos: p.ev.StreamPos}
		later[p.user]++
		if err := s.sink.Notified(ctx, tx, n); err != nil {
			return fmt.Errorf("queueing the push of %s to %s: %w", p.ev.ID, p.user, err)
		}
	}
	return nil
}

// coveringReceipts returns the read marks of the read receipts (public or
// private) that point at or after the first event of ps in each room: the
// only receipts that can cover notifications not stored yet.
func coveringReceipts(ctx context.Context, tx *storage.Tx, ps []pending) ([]mark, error) {
	first := map[id.RoomID]int64{}
	for _, p := range ps {
		r := p.ev.RoomID()
		if f, ok := first[r]; !ok || p.ev.StreamPos < f {
			first[r] = p.ev.StreamPos
		}
	}
	var out []mark
	for roomID, from := range first {
		rows, err := tx.QueryContext(ctx, `SELECT r.user_id, r.thread_id, e.stream_pos FROM receipts r
			JOIN events e ON e.event_id = r.event_id
			WHERE r.room_id = $1 AND r.receipt_type IN ($2, $3) AND e.stream_pos >= $4`,
			roomID.String(), receipts.Read, receipts.ReadPrivate, from)
		if err != nil {
			return nil, fmt.Errorf("reading the receipts of %s: %w", roomID, err)
		}
		for rows.Next() {
			m := mark{room: roomID}
			if err := rows.Scan(&m.user, &m.thread, &m.pos); err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, m)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// markRead marks the user's unread notifications in the room up to m.pos
// (in m.thread, or every thread) read, and returns how many.
func markRead(ctx context.Context, tx *storage.Tx, m mark) (int64, error) {
	// Only counted notifications are unread: the scan starts at the
	// oldest, and nothing is scanned when there are none.
	q := `SELECT COALESCE(MIN(first_unread), 0) FROM notification_counts
		WHERE user_id = $1 AND room_id = $2 AND notification_count > 0 AND first_unread <= $3`
	args := []any{m.user.String(), m.room.String(), m.pos}
	if m.thread != "" {
		q += ` AND thread_id = $4`
		args = append(args, m.thread)
	}
	var from int64
	if err := tx.QueryRowContext(ctx, q, args...).Scan(&from); err != nil {
		return 0, fmt.Errorf("finding the unread notifications of %s in %s: %w", m.user, m.room, err)
	}
	if from == 0 {
		return 0, nil
	}
	q = `UPDATE notifications SET unread = 0 WHERE user_id = $1 AND room_id = $2 AND stream_pos >= $3 AND stream_pos <= $4 AND unread = 1`
	args = []any{m.user.String(), m.room.String(), from, m.pos}
	if m.thread != "" {
		q += ` AND thread_id = $5`
		args = append(args, m.thread)
	}
	res, err := tx.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("marking the notifications of %s in %s read: %w", m.user, m.room, err)
	}
	return res.RowsAffected()
}

// writeRecount sets the user's counts in the room from their unread
// notifications there, as of stream position pos. Unread notifications
// are counted, so none is older than the oldest first_unread of the
// room's counts, or than notBefore for those not counted yet (the rows of
// the batch being written; math.MaxInt64 for none): the recount reads
// the rows from there, not the user's whole history in the room, which
// every message of theirs (an implicit read) would otherwise cost.
func writeRecount(ctx context.Context, tx *storage.Tx, user id.UserID, roomID id.RoomID, pos, notBefore int64) (map[string]Counts, error) {
	var counted sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT MIN(first_unread) FROM notification_counts
		WHERE user_id = $1 AND room_id = $2 AND notification_count > 0`, user.String(), roomID.String()).Scan(&counted); err != nil {
		return nil, fmt.Errorf("finding the oldest unread notification of %s in %s: %w", user, roomID, err)
	}
	from := notBefore
	if counted.Valid {
		from = min(from, counted.Int64)
	}
	rows, err := tx.QueryContext(ctx, `SELECT thread_id, COUNT(*), COALESCE(SUM(highlight), 0), MIN(stream_pos) FROM notifications
		WHERE user_id = $1 AND room_id = $2 AND stream_pos >= $3 AND unread = 1 GROUP BY thread_id`, user.String(), roomID.String(), from)
	if err != nil {
		return nil, fmt.Errorf("recounting the notifications of %s in %s: %w", user, roomID, err)
	}
	type count struct {
		thread               string
		notif, highlt, first int64
	}
	var counts []count
	for rows.Next() {
		var c count
		if err := rows.Scan(&c.thread, &c.notif, &c.highlt, &c.first); err != nil {
			rows.Close()
			return nil, err
		}
		counts = append(counts, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE notification_counts SET notification_count = 0, highlight_count = 0, stream_pos = $3, first_unread = 0
		WHERE user_id = $1 AND room_id = $2`, user.String(), roomID.String(), pos); err != nil {
		return nil, fmt.Errorf("clearing the counts of %s in %s: %w", user, roomID, err)
	}
	for _, c := range counts {
		if _, err := tx.ExecContext(ctx, `INSERT INTO notification_counts (user_id, room_id, thread_id, notification_count, highlight_count, stream_pos, first_unread)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (user_id, room_id, thread_id) DO UPDATE SET
			notification_count = excluded.notification_count, highlight_count = excluded.highlight_count, stream_pos = excluded.stream_pos,
			first_unread = excluded.first_unread`,
			user.String(), roomID.String(), c.thread, c.notif, c.highlt, pos, c.first); err != nil {
			return nil, fmt.Errorf("storing the counts of %s in %s: %w", user, roomID, err)
		}
	}
	out := make(map[string]Counts, len(counts))
	for _, c := range counts {
		out[c.thread] = Counts{Notifications: c.notif, Highlights: c.highlt}
	}
	return out, nil
}

// ReceiptStored marks the notifications a read receipt covers read and
// recounts, in the receipt's transaction (receipts.ReadHook): m.read and
// m.read.private alike (spec "Marking notifications as read"), in the
// receipt's thread, or every thread for an unthreaded one. A receipt
// behind an earlier one finds nothing unread, so the further-ahead
// receipt of the two is what counts.
func (s *Service) ReceiptStored(ctx context.Context, tx *storage.Tx, r receipts.Receipt) error {
	if r.Type != receipts.Read && r.Type != receipts.ReadPrivate {
		return nil
	}
	var pos int64
	err := tx.QueryRowContext(ctx, `SELECT stream_pos FROM events WHERE event_id = $1 AND room_id = $2 AND outlier = 0`,
		r.EventID.String(), r.RoomID.String()).Scan(&pos)
	if errors.Is(err, sql.ErrNoRows) {
		return nil // an event not held: nothing of it was notified
	}
	if err != nil {
		return fmt.Errorf("finding the position of %s: %w", r.EventID, err)
	}
	n, err := markRead(ctx, tx, mark{user: r.User, room: r.RoomID, thread: r.ThreadID, pos: pos})
	if err != nil || n == 0 {
		return err
	}
	// The receipt's own position orders the count change for /sync.
	if _, err := writeRecount(ctx, tx, r.User, r.RoomID, r.StreamPos, math.MaxInt64); err != nil {
		return err
	}
	// The cached counts go now, and none are cached until the commit is
	// done: a sync that sees the receipt's position must read its counts.
	// (A rollback leaves the user uncached, which costs only reads.)
	s.mu.Lock()
	delete(s.counts, r.User)
	s.version[r.User]++
	s.inflight[r.User]++
	s.mu.Unlock()
	tx.AfterCommit(func() {
		s.mu.Lock()
		delete(s.counts, r.User)
		s.version[r.User]++
		if s.inflight[r.User]--; s.inflight[r.User] == 0 {
			delete(s.inflight, r.User)
		}
		s.mu.Unlock()
		s.notifier.Notify(notifier.Notifications, r.User)
	})
	return nil
}

// rowsPerStatement is how many rows one INSERT carries: enough to save
// most round trips, few enough that binding the parameters (quadratic in
// their number in SQLite) stays cheap.
const rowsPerStatement = 25
