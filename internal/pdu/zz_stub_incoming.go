package pdu

import (
	"errors"

	mpdu "maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

// Stubs until the pduver branch lands.
var (
	ErrNotCanonical = errors.New("not canonical")
	ErrBadFormat    = errors.New("bad format")
	ErrTooLarge     = errors.New("too large")
)

func ParseIncoming(v id.RoomVersion, raw []byte) (*Event, error) { return Parse(v, raw) }

func (e *Event) VerifySignatures(getKey mpdu.GetKeyFunc) error {
	return e.PDU.VerifySignature(e.Version, e.Sender.Homeserver(), getKey)
}

func (e *Event) VerifyContentHash() bool { return e.PDU.VerifyContentHash() }
