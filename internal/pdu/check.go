package pdu

import (
	"bytes"
	"encoding/json/jsontext"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/crypto/canonicaljson"
	mpdu "maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

// MaxSize is the spec's limit on a whole PDU in canonical JSON, signatures
// included.
const MaxSize = 65536

// Sentinel errors of the checks on received PDUs; test with errors.Is.
var (
	// ErrNotCanonical: the JSON breaks the rules of the room version
	// (duplicate keys, invalid UTF-8, floats or unsafe integers in v6+).
	ErrNotCanonical = errors.New("PDU is not valid canonical JSON for its room version")
	// ErrBadFormat: a field is missing or of the wrong type or form for
	// the room version's event format.
	ErrBadFormat = errors.New("PDU does not match the event format of its room version")
	// ErrTooLarge: the PDU exceeds MaxSize.
	ErrTooLarge = errors.New("PDU is larger than 65536 bytes")
	// ErrBadSignature: a required signature is missing or invalid.
	ErrBadSignature = errors.New("PDU is not validly signed")
)

// ParseIncoming parses a PDU received over federation, applying check 1 of
// "Checks performed on receipt of a PDU": the size limit, the room
// version's JSON rules (CheckCanonical) and its event format, then Parse.
// Signatures and hashes are checked separately (VerifySignatures,
// VerifyContentHash), since they need the origin's keys.
func ParseIncoming(v id.RoomVersion, raw []byte) (*Event, error) {
	if !IsSupported(v) {
		return nil, fmt.Errorf("%w: %q", ErrUnsupportedVersion, v)
	}
	if err := CheckCanonical(v, raw); err != nil {
		return nil, err
	}
	if len(raw) > MaxSize {
		// The limit applies to the canonical form, which may be smaller
		// than what was sent.
		c := jsontext.Value(bytes.Clone(raw))
		if err := canonicaljson.Canonicalize(&c); err != nil || len(c) > MaxSize {
			return nil, fmt.Errorf("%w (%d bytes as received)", ErrTooLarge, len(raw))
		}
	}
	if err := checkFormat(v, raw); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadFormat, err)
	}
	ev, err := Parse(v, raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadFormat, err)
	}
	return ev, nil
}

// VerifyContentHash reports whether the event's hashes.sha256 matches its
// content hash. A mismatch means the event must be processed in its
// redacted form.
func (e *Event) VerifyContentHash() bool {
	if e.v1 != nil {
		return e.v1.VerifyContentHash()
	}
	return e.PDU.VerifyContentHash()
}

// VerifySignature checks the event's signatures by one server, over the
// redacted form of the event's room version.
func (e *Event) VerifySignature(v id.RoomVersion, serverName string, getKey mpdu.GetKeyFunc) error {
	if e.v1 != nil {
		return e.v1.VerifySignature(v, serverName, getKey)
	}
	return e.PDU.VerifySignature(v, serverName, getKey)
}

// RequiredSigners returns the servers whose signatures a received event
// must carry ("Validating hashes and signatures on received events"):
//
//  1. the sender's server, except for an invite made from a third-party
//     invite (content.third_party_invite), which another server may send
//     on the sender's behalf; the auth rules check that invite's own
//     signature instead;
//  2. in room versions 1 and 2, the server of the event ID as well;
//  3. for a member event naming join_authorised_via_users_server in room
//     versions with restricted joins (8 and later), that user's server,
//     which auth rule 5.2.1 requires too.
func (e *Event) RequiredSigners() []string {
	var servers []string
	add := func(s string) {
		if s != "" && !slices.Contains(servers, s) {
			servers = append(servers, s)
		}
	}
	isMember := e.Type == "m.room.member"
	if !(isMember && e.Membership() == "invite" && gjson.GetBytes(e.Content, "third_party_invite").Exists()) {
		add(e.Sender.Homeserver())
	}
	if e.v1 != nil {
		_, server, _ := strings.Cut(e.ID.String(), ":")
		add(server)
	}
	if isMember && e.Version.RestrictedJoins() {
		if via := gjson.GetBytes(e.Content, "join_authorised_via_users_server"); via.Type == gjson.String {
			add(id.UserID(via.Str).Homeserver())
		}
	}
	return servers
}

// VerifySignatures checks the signature of every server in
// RequiredSigners, each with mautrix's algorithm ("Checking for a
// signature"): keys getKey cannot find are skipped, and at least one key
// of each server must verify. Errors wrap ErrBadSignature.
func (e *Event) VerifySignatures(getKey mpdu.GetKeyFunc) error {
	for _, server := range e.RequiredSigners() {
		if len(e.Signatures[server]) == 0 {
			return fmt.Errorf("%w: no signature from %s", ErrBadSignature, server)
		}
		if err := e.VerifySignature(e.Version, server, getKey); err != nil {
			return fmt.Errorf("%w: by %s: %w", ErrBadSignature, server, err)
		}
	}
	return nil
}
