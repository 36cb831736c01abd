package pdu

import (
	"crypto/ed25519"

	"maunium.net/go/mautrix/id"
)

// Countersign returns a copy of e carrying this server's signature as
// well, leaving e untouched: what an invited user's server returns from
// /invite, and what a resident server adds to a restricted join.
func (e *Event) Countersign(serverName string, keyID id.KeyID, key ed25519.PrivateKey) (*Event, error) {
	c, err := ParseTrusted(e.Version, e.ID, e.JSON())
	if err != nil {
		return nil, err
	}
	if err := c.Sign(serverName, keyID, key); err != nil {
		return nil, err
	}
	return c, nil
}
