package pushers

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
)

// notifyReq is the body of POST /_matrix/push/v1/notify
// (push_notifier.yaml).
type notifyReq struct {
	Notification notification `json:"notification"`
}

type notification struct {
	EventID           string          `json:"event_id"`
	RoomID            string          `json:"room_id"`
	Type              string          `json:"type,omitempty"`
	Sender            string          `json:"sender,omitempty"`
	SenderDisplayName string          `json:"sender_display_name,omitempty"`
	RoomName          string          `json:"room_name,omitempty"`
	RoomAlias         string          `json:"room_alias,omitempty"`
	Membership        string          `json:"membership,omitempty"`
	UserIsTarget      *bool           `json:"user_is_target,omitempty"`
	Prio              string          `json:"prio"`
	Content           json.RawMessage `json:"content,omitempty"`
	Counts            counts          `json:"counts"`
	Devices           []device        `json:"devices"`
}

// counts leaves out zero counts, as the spec asks.
type counts struct {
	Unread      int `json:"unread,omitempty"`
	MissedCalls int `json:"missed_calls,omitempty"`
}

type device struct {
	AppID     string                     `json:"app_id"`
	PushKey   string                     `json:"pushkey"`
	PushKeyTS int64                      `json:"pushkey_ts"`
	Data      map[string]json.RawMessage `json:"data"`
	Tweaks    map[string]any             `json:"tweaks,omitempty"`
}

// clientEvent is what the request takes from the event.
type clientEvent struct {
	Type     string          `json:"type"`
	Sender   string          `json:"sender"`
	StateKey *string         `json:"state_key"`
	Content  json.RawMessage `json:"content"`
}

// request builds the gateway URL and body for h.
func (s *Service) request(ctx context.Context, h head) (string, []byte, error) {
	var data map[string]json.RawMessage
	if err := json.Unmarshal([]byte(h.data), &data); err != nil {
		return "", nil, fmt.Errorf("decoding the data of pusher %d: %w", h.pusher, err)
	}
	var gateway string
	if err := json.Unmarshal(data["url"], &gateway); err != nil {
		return "", nil, fmt.Errorf("decoding the url of pusher %d: %w", h.pusher, err)
	}
	var format string
	_ = json.Unmarshal(data["format"], &format)
	// The device's data is the pusher's data minus url, format and any
	// custom keys kept (pusher.yaml).
	minusURL := maps.Clone(data)
	delete(minusURL, "url")
	var ev clientEvent
	if len(h.notification.Event) > 0 {
		if err := json.Unmarshal(h.notification.Event, &ev); err != nil {
			return "", nil, fmt.Errorf("decoding the event of queued push %d: %w", h.queueID, err)
		}
	}
	tweaks := h.notification.Tweaks
	n := notification{
		EventID: h.eventID.String(), RoomID: h.roomID.String(),
		Prio:   prio(ev.Type, h.notification.Highlight, tweaks),
		Counts: counts{Unread: h.notification.Unread},
	}
	dev := device{AppID: h.appID, PushKey: h.pushKey, PushKeyTS: h.pushKeyTS / 1000, Data: minusURL}
	if format != "event_id_only" {
		n.Type, n.Sender = ev.Type, ev.Sender
		if c := ev.Content; len(c) > 0 && string(c) != "{}" && string(c) != "null" {
			n.Content = c
		}
		if ev.Type == "m.room.member" && ev.StateKey != nil {
			var m struct {
				Membership string `json:"membership"`
			}
			_ = json.Unmarshal(ev.Content, &m)
			target := *ev.StateKey == h.user.String()
			n.Membership, n.UserIsTarget = m.Membership, &target
		}
		s.describeRoom(ctx, h, ev.Sender, &n)
		dev.Tweaks = tweaks
	}
	n.Devices = []device{dev}
	body, err := json.Marshal(notifyReq{Notification: n})
	if err != nil {
		return "", nil, fmt.Errorf("encoding a push of %s: %w", h.eventID, err)
	}
	return gateway, body, nil
}

// prio is Synapse's priority rule: high for an encrypted event (its
// effect is unknown) and for a notification that highlights or makes a
// sound, low otherwise.
func prio(evType string, highlight bool, tweaks map[string]any) string {
	if evType == "m.room.encrypted" || highlight || truthy(tweaks["highlight"]) || truthy(tweaks["sound"]) {
		return "high"
	}
	return "low"
}

func truthy(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case bool:
		return v
	case string:
		return v != ""
	case float64:
		return v != 0
	}
	return true
}

// describeRoom fills in the sender's display name, the room name and
// alias from the room's current state. They are extras: a failed lookup
// leaves them out rather than holding the notification back.
func (s *Service) describeRoom(ctx context.Context, h head, sender string, n *notification) {
	if s.rooms == nil {
		return
	}
	str := func(evType, stateKey, field string) string {
		raw, err := s.rooms.StateContent(ctx, h.roomID, evType, stateKey)
		if err != nil {
			s.log.Warn("reading room state for a push failed", "room_id", h.roomID, "type", evType, "err", err)
			return ""
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			return ""
		}
		var v string
		_ = json.Unmarshal(m[field], &v)
		return v
	}
	if sender != "" {
		n.SenderDisplayName = str("m.room.member", sender, "displayname")
	}
	n.RoomAlias = str("m.room.canonical_alias", "", "alias")
	n.RoomName = str("m.room.name", "", "name")
	if n.RoomName == "" {
		n.RoomName = n.RoomAlias
	}
}
