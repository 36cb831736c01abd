package pushers

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"unicode/utf8"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/storage"
)

// Pusher is one pusher as the client sets it and GET /pushers lists it
// (pusher.yaml).
type Pusher struct {
	PushKey           string `json:"pushkey"`
	Kind              string `json:"kind"`
	AppID             string `json:"app_id"`
	AppDisplayName    string `json:"app_display_name"`
	DeviceDisplayName string `json:"device_display_name"`
	ProfileTag        string `json:"profile_tag"`
	Lang              string `json:"lang"`
	// Data is the data object, url and format included.
	Data json.RawMessage `json:"data"`
}

// Kinds of pusher.
const (
	KindHTTP  = "http"
	KindEmail = "email"
)

// NotifyPath is the one path a gateway URL may have (pusher.yaml:
// data.url "MUST be an HTTPS URL with a path of /_matrix/push/v1/notify").
const NotifyPath = "/_matrix/push/v1/notify"

// Spec limits (pusher.yaml).
const (
	maxPushKeyBytes = 512
	maxAppIDChars   = 64
)

// validate checks a pusher to be set, with the errors the client gets.
func validate(p Pusher) error {
	switch p.Kind {
	case KindHTTP:
	case KindEmail:
		// An email pusher mails the user; without SMTP there is no way to.
		return mxerr.Unrecognized.WithStatus(400).With("email pushers are not supported: this server cannot send email")
	default:
		return mxerr.InvalidParam.With("unknown pusher kind %q", p.Kind)
	}
	if p.AppID == "" || utf8.RuneCountInString(p.AppID) > maxAppIDChars {
		return mxerr.InvalidParam.With("app_id must be 1 to %d characters", maxAppIDChars)
	}
	if p.PushKey == "" || len(p.PushKey) > maxPushKeyBytes {
		return mxerr.InvalidParam.With("pushkey must be 1 to %d bytes", maxPushKeyBytes)
	}
	var data map[string]json.RawMessage
	if err := json.Unmarshal(p.Data, &data); err != nil || data == nil {
		return mxerr.BadJSON.With("data must be an object")
	}
	raw, ok := data["url"]
	if !ok {
		return mxerr.MissingParam.With("data.url is required for an http pusher")
	}
	var u string
	if err := json.Unmarshal(raw, &u); err != nil {
		return mxerr.InvalidParam.With("data.url must be a string")
	}
	parsed, err := url.Parse(u)
	// The spec asks for HTTPS; plain HTTP is accepted, as Synapse does,
	// for gateways on the operator's own network.
	if err != nil || (parsed.Scheme != "https" && parsed.Scheme != "http") || parsed.Host == "" {
		return mxerr.InvalidParam.With("data.url must be an absolute http(s) URL")
	}
	if parsed.Path != NotifyPath {
		return mxerr.InvalidParam.With("data.url must have the path %s", NotifyPath)
	}
	if f, ok := data["format"]; ok {
		var s string
		if json.Unmarshal(f, &s) != nil {
			return mxerr.InvalidParam.With("data.format must be a string")
		}
	}
	return nil
}

// Set creates or replaces the user's pusher of p's app_id and pushkey,
// owned by device. Unless appendOthers, other users' pushers of the same
// app_id and pushkey are removed (pusher.yaml: append).
func (s *Service) Set(ctx context.Context, user id.UserID, device id.DeviceID, p Pusher, appendOthers bool) error {
	if err := validate(p); err != nil {
		return err
	}
	var compact json.RawMessage
	if err := json.Unmarshal(p.Data, &compact); err != nil {
		return mxerr.BadJSON.With("data must be an object")
	}
	now := s.now().UnixMilli()
	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		if !appendOthers {
			if err := deletePushers(ctx, tx, `SELECT pusher_id FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3`,
				p.AppID, p.PushKey, user.String()); err != nil {
				return err
			}
		}
		nid, err := storage.NextID(ctx, tx, "pushers", 1)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO pushers (pusher_id, user_id, device_id, kind, app_id, pushkey,
			app_display_name, device_display_name, profile_tag, lang, data, pushkey_ts, failing_since)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0)
			ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET device_id = excluded.device_id, kind = excluded.kind,
			app_display_name = excluded.app_display_name, device_display_name = excluded.device_display_name,
			profile_tag = excluded.profile_tag, lang = excluded.lang, data = excluded.data,
			pushkey_ts = excluded.pushkey_ts, failing_since = 0`,
			nid, user.String(), device.String(), p.Kind, p.AppID, p.PushKey, p.AppDisplayName, p.DeviceDisplayName,
			p.ProfileTag, p.Lang, string(compact), now)
		return err
	})
	if err != nil {
		return fmt.Errorf("setting a pusher of %s: %w", user, err)
	}
	return nil
}

// Delete removes the user's pusher of appID and pushKey, if any, with its
// queued notifications.
func (s *Service) Delete(ctx context.Context, user id.UserID, appID, pushKey string) error {
	err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		return deletePushers(ctx, tx, `SELECT pusher_id FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3`,
			user.String(), appID, pushKey)
	})
	if err != nil {
		return fmt.Errorf("deleting a pusher of %s: %w", user, err)
	}
	return nil
}

// DevicesRemoved deletes the pushers of devices, in the transaction that
// deletes the devices (users.WithDevicesHook): a deleted or logged-out
// device gets no more notifications.
func (s *Service) DevicesRemoved(ctx context.Context, tx *storage.Tx, user id.UserID, devices []id.DeviceID) error {
	for _, d := range devices {
		if err := deletePushers(ctx, tx, `SELECT pusher_id FROM pushers WHERE user_id = $1 AND device_id = $2`,
			user.String(), d.String()); err != nil {
			return fmt.Errorf("deleting the pushers of device %s of %s: %w", d, user, err)
		}
	}
	return nil
}

// deletePushers deletes the pushers that sel (a query of pusher_id)
// returns, and their queues.
func deletePushers(ctx context.Context, tx *storage.Tx, sel string, args ...any) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM pusher_queue WHERE pusher_id IN (`+sel+`)`, args...); err != nil {
		return fmt.Errorf("deleting queued notifications: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM pushers WHERE pusher_id IN (`+sel+`)`, args...); err != nil {
		return fmt.Errorf("deleting pushers: %w", err)
	}
	return nil
}

// List returns the user's pushers, oldest first.
func (s *Service) List(ctx context.Context, user id.UserID) ([]Pusher, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT pushkey, kind, app_id, app_display_name, device_display_name,
		profile_tag, lang, data FROM pushers WHERE user_id = $1 ORDER BY pusher_id`, user.String())
	if err != nil {
		return nil, fmt.Errorf("listing the pushers of %s: %w", user, err)
	}
	defer rows.Close()
	out := []Pusher{}
	for rows.Next() {
		var p Pusher
		var data string
		if err := rows.Scan(&p.PushKey, &p.Kind, &p.AppID, &p.AppDisplayName, &p.DeviceDisplayName,
			&p.ProfileTag, &p.Lang, &data); err != nil {
			return nil, fmt.Errorf("listing the pushers of %s: %w", user, err)
		}
		p.Data = json.RawMessage(data)
		out = append(out, p)
	}
	return out, rows.Err()
}
