package e2ee

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/storage"
)

// ToDeviceMessages maps recipient user and device ID ("*" for all of the
// user's devices) to message content.
type ToDeviceMessages map[id.UserID]map[string]json.RawMessage

// directToDevice is the content of an m.direct_to_device EDU.
type directToDevice struct {
	Sender    id.UserID        `json:"sender"`
	Type      string           `json:"type"`
	MessageID string           `json:"message_id"`
	Messages  ToDeviceMessages `json:"messages"`
}

// SendToDevice delivers messages of evType from sender's device (PUT
// /sendToDevice/{eventType}/{txnId}). A transaction ID already used by the
// device is a no-op, so client retries deliver once. Messages to remote
// users leave as one m.direct_to_device EDU per server.
func (s *Service) SendToDevice(ctx context.Context, sender id.UserID, device id.DeviceID, txnID, evType string, messages ToDeviceMessages) error {
	remote := map[string]ToDeviceMessages{}
	fresh := false
	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO e2ee_to_device_txns (user_id, device_id, txn_id, created_ts) VALUES ($1, $2, $3, $4)
			ON CONFLICT (user_id, device_id, txn_id) DO NOTHING`, sender.String(), device.String(), txnID, time.Now().UnixMilli())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		fresh = true
		local := ToDeviceMessages{}
		for user, byDev := range messages {
			if s.local(user) {
				local[user] = byDev
				continue
			}
			srv := user.Homeserver()
			if remote[srv] == nil {
				remote[srv] = ToDeviceMessages{}
			}
			remote[srv][user] = byDev
		}
		return s.deliver(ctx, tx, sender, evType, local)
	})
	if err != nil {
		return fmt.Errorf("sending %s to-device messages from %s: %w", evType, sender, err)
	}
	if !fresh || s.edus == nil {
		return nil
	}
	for srv, msgs := range remote {
		raw, err := json.Marshal(directToDevice{Sender: sender, Type: evType,
			MessageID: device.String() + "_" + txnID, Messages: msgs})
		if err != nil {
			return err
		}
		if err := s.edus.EnqueueEDU(ctx, []string{srv}, "m.direct_to_device", raw); err != nil {
			return fmt.Errorf("queueing to-device messages for %s: %w", srv, err)
		}
	}
	return nil
}

// ReceiveToDevice stores the to-device messages of an m.direct_to_device
// EDU from origin, once per message ID. Messages for users of other servers
// and senders not of origin are dropped.
func (s *Service) ReceiveToDevice(ctx context.Context, origin string, content json.RawMessage) error {
	var d directToDevice
	if err := json.Unmarshal(content, &d); err != nil {
		return fmt.Errorf("parsing m.direct_to_device from %s: %w", origin, err)
	}
	if d.Sender.Homeserver() != origin || d.Type == "" {
		return fmt.Errorf("m.direct_to_device from %s for sender %s", origin, d.Sender)
	}
	local := ToDeviceMessages{}
	for user, byDev := range d.Messages {
		if s.local(user) {
			local[user] = byDev
		}
	}
	return s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		if d.MessageID != "" {
			res, err := tx.ExecContext(ctx, `INSERT INTO e2ee_to_device_txns (user_id, device_id, txn_id, created_ts) VALUES ($1, '', $2, $3)
				ON CONFLICT (user_id, device_id, txn_id) DO NOTHING`, d.Sender.String(), d.MessageID, time.Now().UnixMilli())
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil || n == 0 {
				return err
			}
		}
		return s.deliver(ctx, tx, d.Sender, d.Type, local)
	})
}

// deliver queues messages for local devices at one new stream position and
// wakes the recipients after commit.
func (s *Service) deliver(ctx context.Context, tx *storage.Tx, sender id.UserID, evType string, messages ToDeviceMessages) error {
	if len(messages) == 0 {
		return nil
	}
	pos, err := storage.NextID(ctx, tx, "stream", 1)
	if err != nil {
		return err
	}
	users := make([]id.UserID, 0, len(messages))
	for u := range messages {
		users = append(users, u)
	}
	sort.Slice(users, func(i, j int) bool { return users[i] < users[j] })
	seq := int64(0)
	for _, user := range users {
		for dev, content := range messages[user] {
			devices := []string{dev}
			if dev == "*" {
				if devices, err = s.deviceIDs(ctx, tx, user); err != nil {
					return err
				}
			}
			for _, d := range devices {
				seq++
				ev, err := json.Marshal(struct {
					Sender  id.UserID       `json:"sender"`
					Type    string          `json:"type"`
					Content json.RawMessage `json:"content"`
				}{sender, evType, content})
				if err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO e2ee_to_device (user_id, device_id, stream_pos, seq, sender, type, content)
					VALUES ($1, $2, $3, $4, $5, $6, $7)`, user.String(), d, pos, seq, sender.String(), evType, string(ev)); err != nil {
					return err
				}
			}
		}
	}
	tx.AfterCommit(func() { s.notifier.Notify(notifier.ToDevice, users...) })
	return nil
}

// deviceIDs lists a local user's devices.
func (s *Service) deviceIDs(ctx context.Context, tx *storage.Tx, user id.UserID) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT device_id FROM devices WHERE user_id = $1`, user.String())
	if err != nil {
		return nil, fmt.Errorf("listing devices of %s: %w", user, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// ToDeviceCursor is a place in a device's to-device inbox: the stream
// position and sequence number of a message. Messages at or before it
// (by position, then sequence) are covered.
type ToDeviceCursor struct {
	Pos, Seq int64
}

// WholePosition is the cursor covering every message at or below pos.
func WholePosition(pos int64) ToDeviceCursor {
	return ToDeviceCursor{Pos: pos, Seq: math.MaxInt64}
}

// MaxToDevicePerSync is how many to-device messages one /sync carries; a
// device that was offline for long gets its backlog over several syncs.
const MaxToDevicePerSync = 100

// ToDevice returns up to limit to-device events waiting for the device up
// to stream position upto, oldest first, and whether more wait (then last
// is the cursor of the last one returned, for the next sync to start
// after). Delivery is at least once: the messages at or before acked (what
// the device's since token covers) are deleted, and the rest are returned
// again until acknowledged.
func (s *Service) ToDevice(ctx context.Context, user id.UserID, device id.DeviceID, acked ToDeviceCursor, upto int64, limit int) (msgs []json.RawMessage, last ToDeviceCursor, more bool, err error) {
	var stale int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM e2ee_to_device
		WHERE user_id = $1 AND device_id = $2 AND (stream_pos < $3 OR (stream_pos = $3 AND seq <= $4)) LIMIT 1) x`,
		user.String(), device.String(), acked.Pos, acked.Seq).Scan(&stale); err != nil {
		return nil, last, false, fmt.Errorf("checking acknowledged to-device messages of %s device %s: %w", user, device, err)
	}
	if stale > 0 {
		err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
			_, err := tx.ExecContext(ctx, `DELETE FROM e2ee_to_device WHERE user_id = $1 AND device_id = $2
				AND (stream_pos < $3 OR (stream_pos = $3 AND seq <= $4))`, user.String(), device.String(), acked.Pos, acked.Seq)
			return err
		})
		if err != nil {
			return nil, last, false, fmt.Errorf("acknowledging to-device messages of %s device %s: %w", user, device, err)
		}
	}
	rows, err := s.db.QueryContext(ctx, `SELECT stream_pos, seq, content FROM e2ee_to_device
		WHERE user_id = $1 AND device_id = $2 AND (stream_pos > $3 OR (stream_pos = $3 AND seq > $4)) AND stream_pos <= $5
		ORDER BY stream_pos, seq LIMIT $6`,
		user.String(), device.String(), acked.Pos, acked.Seq, upto, limit+1)
	if err != nil {
		return nil, last, false, fmt.Errorf("loading to-device messages of %s device %s: %w", user, device, err)
	}
	defer rows.Close()
	msgs = []json.RawMessage{}
	for rows.Next() {
		var c ToDeviceCursor
		var content string
		if err := rows.Scan(&c.Pos, &c.Seq, &content); err != nil {
			return nil, last, false, err
		}
		if len(msgs) == limit {
			more = true
			break
		}
		msgs = append(msgs, json.RawMessage(content))
		last = c
	}
	return msgs, last, more, rows.Err()
}
