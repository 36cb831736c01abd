package pdu

import (
	"crypto/ed25519"
	"fmt"

	"maunium.net/go/mautrix/id"
)

// Countersign returns a copy of e carrying this server's signature as
// well: what an invited user's server returns from /invite, and what a
// resident server adds to a restricted join.
func (e *Event) Countersign(serverName string, keyID id.KeyID, key ed25519.PrivateKey) (*Event, error) {
	c := e.PDU.Clone()
	c.InternalMeta = e.PDU.InternalMeta
	if err := c.Sign(e.Version, serverName, keyID, key); err != nil {
		return nil, fmt.Errorf("signing event %s: %w", e.ID, err)
	}
	return &Event{PDU: c, ID: e.ID, Version: e.Version}, nil
}
