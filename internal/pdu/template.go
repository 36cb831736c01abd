package pdu

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"

	jsonv2 "encoding/json/v2"

	mpdu "maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

// FromTemplate completes a membership template from make_join,
// make_leave or make_knock: it sets the content and timestamp, then
// hashes and signs the event as this server's.
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
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	var p mpdu.PDU
	if err := jsonv2.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("decoding template: %w", err)
	}
	if err := p.Sign(v, serverName, keyID, key); err != nil {
		return nil, fmt.Errorf("signing event: %w", err)
	}
	evID, err := p.GetEventID(v)
	if err != nil {
		return nil, fmt.Errorf("computing event ID: %w", err)
	}
	p.InternalMeta.EventID = evID
	return &Event{PDU: &p, ID: evID, Version: v}, nil
}
