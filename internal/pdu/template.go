package pdu

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"

	"maunium.net/go/mautrix/id"
)

// FromTemplate completes a membership template from make_join,
// make_leave or make_knock: it sets the content and timestamp (and, in
// room versions 1 and 2, a fresh event ID of ours), then hashes and signs
// the event as this server's.
func FromTemplate(v id.RoomVersion, tmpl json.RawMessage, content json.RawMessage, ts int64, serverName string, keyID id.KeyID, key ed25519.PrivateKey) (*Event, error) {
	if !IsSupported(v) {
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedVersion, v)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(tmpl, &m); err != nil {
		return nil, fmt.Errorf("decoding template: %w", err)
	}
	for _, k := range []string{"signatures", "hashes", "unsigned", "event_id"} {
		delete(m, k)
	}
	m["content"] = content
	m["origin_server_ts"], _ = json.Marshal(ts)
	m["origin"], _ = json.Marshal(serverName)
	if hasV1Format(v) {
		m["event_id"], _ = json.Marshal(NewV1EventID(serverName))
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	ev, err := Parse(v, raw)
	if err != nil {
		return nil, fmt.Errorf("decoding template: %w", err)
	}
	if err := ev.Sign(serverName, keyID, key); err != nil {
		return nil, err
	}
	// Signing filled in the content hash, which the event ID covers.
	return Parse(v, ev.JSON())
}
