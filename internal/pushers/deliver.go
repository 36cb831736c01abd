package pushers

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/storage"
)

// worker delivers one pusher's queue in order. kicked (under Service.mu)
// records a wake-up while it runs, so that it reads the queue again
// before exiting.
type worker struct {
	s       *Service
	pusher  int64
	kicked  bool
	backoff time.Duration
}

// head is the oldest queued notification of a pusher, with the pusher.
type head struct {
	pusher       int64
	queueID      int64
	eventID      id.EventID
	roomID       id.RoomID
	notification queued
	user         id.UserID
	appID        string
	pushKey      string
	data         string
	pushKeyTS    int64
	failingSince int64
}

func (w *worker) run(ctx context.Context) {
	s := w.s
	for {
		s.mu.Lock()
		w.kicked = false
		s.mu.Unlock()
		h, ok, err := s.head(ctx, w.pusher)
		if err != nil {
			if ctx.Err() != nil {
				w.exit()
				return
			}
			s.log.Error("reading a pusher's queue failed", "pusher_id", w.pusher, "err", err)
			if !w.sleep(ctx) {
				w.exit()
				return
			}
			continue
		}
		if !ok {
			s.mu.Lock()
			if w.kicked {
				s.mu.Unlock()
				continue
			}
			delete(s.workers, w.pusher)
			s.mu.Unlock()
			return
		}
		if !w.deliver(ctx, h) {
			w.exit()
			return
		}
	}
}

func (w *worker) exit() {
	w.s.mu.Lock()
	delete(w.s.workers, w.pusher)
	w.s.mu.Unlock()
}

// sleep waits out the current backoff and doubles it; false when ctx
// ended first.
func (w *worker) sleep(ctx context.Context) bool {
	t := time.NewTimer(w.backoff)
	defer t.Stop()
	w.backoff = min(w.backoff*2, w.s.maxBackoff)
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// deliver sends h and settles its row; false when ctx ended.
func (w *worker) deliver(ctx context.Context, h head) bool {
	s := w.s
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	rejected, err := s.send(ctx, h)
	<-s.slots
	if ctx.Err() != nil {
		return false
	}
	if err == nil {
		w.backoff = s.minBackoff
		if err := s.settle(ctx, h, slices.Contains(rejected, h.pushKey), false); err != nil {
			s.log.Error("removing a delivered push from the queue failed", "pusher_id", w.pusher, "err", err)
			return w.sleep(ctx)
		}
		// Counted once settled, so that a count seen means the row is gone.
		s.delivered.Add(1)
		return true
	}
	s.failed.Add(1)
	now := s.now().UnixMilli()
	if h.failingSince == 0 {
		if _, err := s.db.ExecContext(ctx, `UPDATE pushers SET failing_since = $2 WHERE pusher_id = $1`, w.pusher, now); err != nil {
			s.log.Warn("recording a failing pusher failed", "pusher_id", w.pusher, "err", err)
		}
	} else if now-h.failingSince >= s.giveUpAfter.Milliseconds() {
		// Synapse gives up on the notification so that a gateway fixed
		// after a day does not get a day of stale alerts.
		s.log.Warn("giving up on a push notification", "user_id", h.user, "event_id", h.eventID, "app_id", h.appID, "err", err)
		w.backoff = s.minBackoff
		if err := s.settle(ctx, h, false, true); err != nil {
			s.log.Error("dropping a push from the queue failed", "pusher_id", w.pusher, "err", err)
			return w.sleep(ctx)
		}
		s.dropped.Add(1)
		return true
	}
	s.log.Info("push failed, retrying later", "user_id", h.user, "event_id", h.eventID, "app_id", h.appID,
		"retry_in", w.backoff, "err", err)
	return w.sleep(ctx)
}

// settle removes a handled row; reject also removes the pusher (its
// gateway rejected the pushkey), clear resets the pusher's failing time.
func (s *Service) settle(ctx context.Context, h head, reject, clear bool) error {
	return s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		if reject {
			s.log.Info("gateway rejected a pushkey: removing the pusher", "user_id", h.user, "app_id", h.appID)
			tx.AfterCommit(func() { s.rejected.Add(1) })
			return deletePushers(ctx, tx, `SELECT pusher_id FROM pushers WHERE pusher_id = $1`, h.pusher)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM pusher_queue WHERE queue_id = $1`, h.queueID); err != nil {
			return err
		}
		if h.failingSince != 0 || clear {
			if _, err := tx.ExecContext(ctx, `UPDATE pushers SET failing_since = 0 WHERE pusher_id = $1`, h.pusher); err != nil {
				return err
			}
		}
		return nil
	})
}

// head reads the oldest queued notification of pusher.
func (s *Service) head(ctx context.Context, pusher int64) (head, bool, error) {
	h := head{}
	var body string
	err := s.db.QueryRowContext(ctx, `SELECT q.queue_id, q.event_id, q.room_id, q.notification, p.user_id, p.app_id,
		p.pushkey, p.data, p.pushkey_ts, p.failing_since
		FROM pusher_queue q JOIN pushers p ON p.pusher_id = q.pusher_id
		WHERE q.pusher_id = $1 ORDER BY q.stream_pos, q.queue_id LIMIT 1`, pusher).
		Scan(&h.queueID, &h.eventID, &h.roomID, &body, &h.user, &h.appID, &h.pushKey, &h.data, &h.pushKeyTS, &h.failingSince)
	if errors.Is(err, sql.ErrNoRows) {
		return h, false, nil
	}
	if err != nil {
		return h, false, fmt.Errorf("reading the queue of pusher %d: %w", pusher, err)
	}
	if err := json.Unmarshal([]byte(body), &h.notification); err != nil {
		return h, false, fmt.Errorf("decoding queued push %d: %w", h.queueID, err)
	}
	h.pusher = pusher
	return h, true, nil
}

// send POSTs the notification to the pusher's gateway and returns the
// pushkeys it rejected. Any answer but 2xx is an error.
func (s *Service) send(ctx context.Context, h head) ([]string, error) {
	gateway, body, err := s.request(ctx, h)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, gateway, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("building the gateway request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("posting to the push gateway: %w", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("push gateway answered HTTP %d", resp.StatusCode)
	}
	// A 2xx whose body is not the spec's object still means the gateway
	// took the notification; retrying it would alert the user twice.
	var out struct {
		Rejected []string `json:"rejected"`
	}
	_ = json.Unmarshal(raw, &out)
	return out.Rejected, nil
}
