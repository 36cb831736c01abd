package pdu

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"encoding/json/jsontext"

	"maunium.net/go/mautrix/id"
)

// maxSafeInt is the largest integer canonical JSON allows, 2^53-1; the
// smallest is its negation.
const maxSafeInt = 1<<53 - 1

// CheckCanonical checks the raw bytes of a received PDU against the JSON
// rules of room version v, before any decoder can normalise them: every
// version rejects invalid UTF-8 (including lone surrogate escapes) and
// duplicate object keys at any depth; room versions 6 and later, which
// enforce canonical JSON, also reject fractions, exponents, negative zero
// and integers outside [-(2^53)+1, 2^53-1]. Key order and whitespace are
// not checked: they do not change the event. Errors wrap ErrNotCanonical.
func CheckCanonical(v id.RoomVersion, raw []byte) error {
	if err := checkJSON(raw, v.ForbidFloatsAndBigInts()); err != nil {
		return fmt.Errorf("%w: %w", ErrNotCanonical, err)
	}
	return nil
}

// ErrBadContent is the error of CheckProto: what a local sender asked for
// cannot be made into an event.
var ErrBadContent = errors.New("event content cannot be encoded as canonical JSON")

// CheckProto checks what a local sender asks to send before an event is
// built from it: the content must be a JSON object that canonical JSON can
// encode with the strict rules of room versions 6 and later (integers in
// [-(2^53)+1, 2^53-1], no fractions, exponents or negative zero, valid
// UTF-8, no duplicate keys), whatever the room version, because signing
// applies those rules to every event; and the type, state key and redacted
// event ID must be valid UTF-8 without NUL. Errors wrap ErrBadContent, so
// that a client's bad input is told apart from a failure to sign.
func CheckProto(p Proto) error {
	for _, s := range []string{p.Type, string(p.Redacts)} {
		if !cleanString(s) {
			return fmt.Errorf("%w: a name holds invalid UTF-8 or a NUL", ErrBadContent)
		}
	}
	if p.StateKey != nil && !cleanString(*p.StateKey) {
		return fmt.Errorf("%w: the state key holds invalid UTF-8 or a NUL", ErrBadContent)
	}
	content := bytes.TrimSpace(p.Content)
	if len(content) == 0 {
		return nil // built as {}
	}
	if content[0] != '{' {
		return fmt.Errorf("%w: content is not a JSON object", ErrBadContent)
	}
	if err := checkJSON(content, true); err != nil {
		return fmt.Errorf("%w: %w", ErrBadContent, err)
	}
	return nil
}

func cleanString(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// checkJSON checks raw for invalid UTF-8 and duplicate names, and with
// strictNumbers for the numbers canonical JSON forbids.
func checkJSON(raw []byte, strictNumbers bool) error {
	dec := jsontext.NewDecoder(bytes.NewReader(raw),
		jsontext.AllowDuplicateNames(false), jsontext.AllowInvalidUTF8(false))
	for {
		tok, err := dec.ReadToken()
		if err != nil {
			// io.EOF here means the input ended before a whole value.
			return err
		}
		if tok.Kind() == '0' && strictNumbers {
			if err := checkInteger(tok.String()); err != nil {
				return fmt.Errorf("at %q: %w", dec.StackPointer(), err)
			}
		}
		if dec.StackDepth() == 0 {
			// One value only: the decoder would otherwise read a stream.
			if _, err := dec.ReadToken(); err != io.EOF {
				return errors.New("data after the top-level value")
			}
			return nil
		}
	}
}

var errNotInteger = errors.New("number is not an integer")

// checkInteger checks a JSON number literal against the canonical JSON
// grammar for room versions 6 and later.
func checkInteger(lit string) error {
	if strings.ContainsAny(lit, ".eE") {
		return fmt.Errorf("%w: %s", errNotInteger, lit)
	}
	if lit == "-0" {
		return errors.New("negative zero")
	}
	n, err := strconv.ParseInt(lit, 10, 64)
	if err != nil || n > maxSafeInt || n < -maxSafeInt {
		return fmt.Errorf("integer %s outside [-(2^53)+1, 2^53-1]", lit)
	}
	return nil
}
