package pdu

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"encoding/json/jsontext"
	jsonv2 "encoding/json/v2"

	"maunium.net/go/mautrix/id"
)

// Limits of the event format (server-server API PDU schemas and the
// client-server API "Size limits").
const (
	maxIDLength   = 255 // bytes of sender, room_id, event_id, type, state_key
	maxAuthEvents = 10
	maxPrevEvents = 20
)

// checkFormat checks the top-level fields of a PDU against the event
// format of room version v: required fields present with the right JSON
// types, identifiers of the right form and size, and auth_events and
// prev_events in the version's reference form. It reports the first
// problem found.
func checkFormat(v id.RoomVersion, raw []byte) error {
	var f map[string]jsontext.Value
	if err := jsonv2.Unmarshal(raw, &f); err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	typ, err := stringField(f, "type", true)
	if err != nil {
		return err
	}
	if typ == "" {
		return errors.New("type is empty")
	}
	sender, err := stringField(f, "sender", true)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(sender, "@") || id.UserID(sender).Homeserver() == "" {
		return fmt.Errorf("sender %q is not a user ID", sender)
	}
	stateKey, hasStateKey := f["state_key"]
	if hasStateKey {
		if _, err := stringField(f, "state_key", true); err != nil {
			return err
		}
	}
	isCreate := typ == "m.room.create" && hasStateKey && string(stateKey) == `""`
	if err := checkRoomID(v, f, isCreate); err != nil {
		return err
	}
	if hasV1Format(v) {
		evID, err := stringField(f, "event_id", true)
		if err != nil {
			return err
		}
		if opaque, server, ok := strings.Cut(evID, ":"); !ok || len(opaque) < 2 || opaque[0] != '$' || server == "" {
			return fmt.Errorf("event_id %q is not of the form $opaque:server", evID)
		}
	}
	if _, err := stringField(f, "redacts", false); err != nil {
		return err
	}
	if _, err := intField(f, "origin_server_ts"); err != nil {
		return err
	}
	depth, err := intField(f, "depth")
	if err != nil {
		return err
	}
	if depth < 0 {
		return fmt.Errorf("depth %d is negative", depth)
	}
	for _, name := range []string{"content", "hashes", "signatures"} {
		if err := objectField(f, name, true); err != nil {
			return err
		}
	}
	if err := objectField(f, "unsigned", false); err != nil {
		return err
	}
	if err := checkHashes(f["hashes"]); err != nil {
		return fmt.Errorf("hashes: %w", err)
	}
	if err := checkSignatures(f["signatures"]); err != nil {
		return err
	}
	if err := checkRefs(v, f, "auth_events", maxAuthEvents); err != nil {
		return err
	}
	return checkRefs(v, f, "prev_events", maxPrevEvents)
}

// checkRoomID: room_id is required and names a room, except on v12 create
// events, where the room ID is derived from the event ID and room_id must
// be absent.
func checkRoomID(v id.RoomVersion, f map[string]jsontext.Value, isCreate bool) error {
	if v.RoomIDIsCreateEventID() && isCreate {
		if _, ok := f["room_id"]; ok {
			return errors.New("a create event of this room version must not have room_id")
		}
		return nil
	}
	roomID, err := stringField(f, "room_id", true)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(roomID, "!") {
		return fmt.Errorf("room_id %q is not a room ID", roomID)
	}
	return nil
}

// stringField returns the string field name; the size limit applies to
// every identifier-like field.
func stringField(f map[string]jsontext.Value, name string, required bool) (string, error) {
	val, ok := f[name]
	if !ok {
		if required {
			return "", fmt.Errorf("%s is missing", name)
		}
		return "", nil
	}
	var s string
	if val.Kind() != '"' || jsonv2.Unmarshal(val, &s) != nil {
		return "", fmt.Errorf("%s is not a string", name)
	}
	if len(s) > maxIDLength {
		return "", fmt.Errorf("%s is longer than %d bytes", name, maxIDLength)
	}
	return s, nil
}

// intField returns the required integer field name; it must fit in 64
// bits and have no fraction or exponent.
func intField(f map[string]jsontext.Value, name string) (int64, error) {
	val, ok := f[name]
	if !ok {
		return 0, fmt.Errorf("%s is missing", name)
	}
	if val.Kind() != '0' {
		return 0, fmt.Errorf("%s is not an integer", name)
	}
	n, err := strconv.ParseInt(string(val), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s is not a 64-bit integer: %s", name, val)
	}
	return n, nil
}

func objectField(f map[string]jsontext.Value, name string, required bool) error {
	val, ok := f[name]
	if !ok {
		if required {
			return fmt.Errorf("%s is missing", name)
		}
		return nil
	}
	if val.Kind() != '{' {
		return fmt.Errorf("%s is not an object", name)
	}
	return nil
}

// checkHashes checks an event hash object: sha256 is required and is
// unpadded base64 of 32 bytes.
func checkHashes(val jsontext.Value) error {
	var h map[string]jsontext.Value
	if err := jsonv2.Unmarshal(val, &h); err != nil {
		return fmt.Errorf("not an object: %w", err)
	}
	var s string
	if raw, ok := h["sha256"]; !ok || raw.Kind() != '"' || jsonv2.Unmarshal(raw, &s) != nil {
		return errors.New("sha256 is missing or not a string")
	}
	if b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "=")); err != nil || len(b) != 32 {
		return fmt.Errorf("sha256 %q is not a base64 SHA-256 hash", s)
	}
	return nil
}

// checkSignatures checks that signatures maps server names to objects
// mapping key IDs to strings.
func checkSignatures(val jsontext.Value) error {
	var sigs map[string]map[string]jsontext.Value
	if err := jsonv2.Unmarshal(val, &sigs); err != nil {
		return fmt.Errorf("signatures is not a map of servers to key IDs: %w", err)
	}
	for server, keys := range sigs {
		for keyID, sig := range keys {
			if sig.Kind() != '"' {
				return fmt.Errorf("signature %s of %s is not a string", keyID, server)
			}
		}
	}
	return nil
}

// checkRefs checks auth_events or prev_events: an array of at most max
// references, each an event ID in room versions 3 and later, and an
// [event ID, hashes] pair in versions 1 and 2.
func checkRefs(v id.RoomVersion, f map[string]jsontext.Value, name string, max int) error {
	val, ok := f[name]
	if !ok {
		return fmt.Errorf("%s is missing", name)
	}
	var items []jsontext.Value
	if val.Kind() != '[' || jsonv2.Unmarshal(val, &items) != nil {
		return fmt.Errorf("%s is not an array", name)
	}
	if len(items) > max {
		return fmt.Errorf("%s has %d entries, more than %d", name, len(items), max)
	}
	for i, item := range items {
		if hasV1Format(v) {
			var pair []jsontext.Value
			if item.Kind() != '[' || jsonv2.Unmarshal(item, &pair) != nil || len(pair) != 2 {
				return fmt.Errorf("%s[%d] is not an [event ID, hashes] pair", name, i)
			}
			if err := checkEventIDValue(pair[0]); err != nil {
				return fmt.Errorf("%s[%d]: %w", name, i, err)
			}
			if err := checkHashes(pair[1]); err != nil {
				return fmt.Errorf("%s[%d] hashes: %w", name, i, err)
			}
			continue
		}
		if err := checkEventIDValue(item); err != nil {
			return fmt.Errorf("%s[%d]: %w", name, i, err)
		}
	}
	return nil
}

func checkEventIDValue(val jsontext.Value) error {
	var s string
	if val.Kind() != '"' || jsonv2.Unmarshal(val, &s) != nil {
		return errors.New("event ID is not a string")
	}
	if len(s) < 2 || s[0] != '$' || len(s) > maxIDLength {
		return fmt.Errorf("%q is not an event ID", s)
	}
	return nil
}
