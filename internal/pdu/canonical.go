package pdu

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

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
	strictNumbers := v.ForbidFloatsAndBigInts()
	dec := jsontext.NewDecoder(bytes.NewReader(raw),
		jsontext.AllowDuplicateNames(false), jsontext.AllowInvalidUTF8(false))
	for {
		tok, err := dec.ReadToken()
		if err != nil {
			// io.EOF here means the input ended before a whole value.
			return fmt.Errorf("%w: %w", ErrNotCanonical, err)
		}
		if tok.Kind() == '0' && strictNumbers {
			if err := checkInteger(tok.String()); err != nil {
				return fmt.Errorf("%w: at %q: %w", ErrNotCanonical, dec.StackPointer(), err)
			}
		}
		if dec.StackDepth() == 0 {
			// One value only: the decoder would otherwise read a stream.
			if _, err := dec.ReadToken(); err != io.EOF {
				return fmt.Errorf("%w: data after the top-level value", ErrNotCanonical)
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
