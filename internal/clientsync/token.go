package clientsync

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/myelin-chat/myelin/internal/e2ee"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

// Token is a position in the streams a sync covers. Pos is the persisted
// stream (events, account data, receipts, memberships share one counter);
// Typing is the in-memory typing serial.
//
// Pagination tokens (prev_batch, /messages from/to) use the same form: a
// token means "after everything at or below Pos".
//
// A next_batch also carries Wake, the notifier generation of the user read
// before the response was built, with the notifier's epoch. While the
// user's generation has not moved since, nothing has happened to them,
// so a long-poll with that token can wait without building an empty
// response first (the build costs several queries, and every client
// reconnects with its new token at once).
//
// ToDevice, when set, is where the device's to-device inbox was cut off
// because a response carries at most e2ee.MaxToDevicePerSync messages:
// the token acknowledges the inbox up to it rather than up to Pos.
//
// Presence is the presence serial (presence.Tracker.Serial) the response
// covered; zero in tokens that predate presence or carry none.
//
// Counted, when set, is the position up to which events had been
// evaluated for notification counts when the response was built, if that
// was below Pos: the counts of later events were not in it, so the next
// sync sends the rooms whose counts changed after Counted.
type Token struct {
	Pos      int64
	Typing   int64
	Wake     Wake
	ToDevice e2ee.ToDeviceCursor
	Presence int64
	Counted  int64
}

// Wake is a notifier generation with the epoch it belongs to; the zero
// Wake matches no notifier.
type Wake struct {
	Epoch uint32
	Gen   uint64
}

// String renders the token as s<pos>_<typing>, followed by
// _<epoch>.<generation> when it carries a Wake or a to-device cursor, and
// then _<pos>.<seq> for the cursor, and then _<presence> (the earlier
// parts written as zeros when only the presence serial is set), then
// _c<counted>.
func (t Token) String() string {
	switch {
	case t.Counted > 0:
		return fmt.Sprintf("s%d_%d_%d.%d_%d.%d_%d_c%d", t.Pos, t.Typing, t.Wake.Epoch, t.Wake.Gen, t.ToDevice.Pos, t.ToDevice.Seq, t.Presence, t.Counted)
	case t.Presence != 0:
		return fmt.Sprintf("s%d_%d_%d.%d_%d.%d_%d", t.Pos, t.Typing, t.Wake.Epoch, t.Wake.Gen, t.ToDevice.Pos, t.ToDevice.Seq, t.Presence)
	case t.ToDevice != (e2ee.ToDeviceCursor{}):
		return fmt.Sprintf("s%d_%d_%d.%d_%d.%d", t.Pos, t.Typing, t.Wake.Epoch, t.Wake.Gen, t.ToDevice.Pos, t.ToDevice.Seq)
	case t.Wake != (Wake{}):
		return fmt.Sprintf("s%d_%d_%d.%d", t.Pos, t.Typing, t.Wake.Epoch, t.Wake.Gen)
	}
	return fmt.Sprintf("s%d_%d", t.Pos, t.Typing)
}

// ParseToken reads a token; malformed tokens give 400 M_INVALID_PARAM.
func ParseToken(s string) (Token, error) {
	rest, ok := strings.CutPrefix(s, "s")
	if !ok {
		return Token{}, mxerr.InvalidParam.With("malformed token %q", s)
	}
	parts := strings.Split(rest, "_")
	var t Token
	var err error
	// Positions below zero are backfilled history, which pagination
	// tokens may point into.
	if t.Pos, err = strconv.ParseInt(parts[0], 10, 64); err != nil {
		return Token{}, mxerr.InvalidParam.With("malformed token %q", s)
	}
	if len(parts) > 1 {
		if t.Typing, err = strconv.ParseInt(parts[1], 10, 64); err != nil || t.Typing < 0 {
			return Token{}, mxerr.InvalidParam.With("malformed token %q", s)
		}
	}
	if len(parts) > 2 {
		// The wake-up hint is only an optimisation: a token whose hint
		// does not parse is used without it.
		if e, g, ok := strings.Cut(parts[2], "."); ok {
			epoch, err1 := strconv.ParseUint(e, 10, 32)
			gen, err2 := strconv.ParseUint(g, 10, 64)
			if err1 == nil && err2 == nil {
				t.Wake = Wake{Epoch: uint32(epoch), Gen: gen}
			}
		}
	}
	if len(parts) > 3 {
		// The to-device cursor is not a hint: acknowledging past it would
		// drop messages the device never got.
		p, q, ok := strings.Cut(parts[3], ".")
		pos, err1 := strconv.ParseInt(p, 10, 64)
		seq, err2 := strconv.ParseInt(q, 10, 64)
		if !ok || err1 != nil || err2 != nil || pos > t.Pos {
			return Token{}, mxerr.InvalidParam.With("malformed token %q", s)
		}
		t.ToDevice = e2ee.ToDeviceCursor{Pos: pos, Seq: seq}
	}
	if len(parts) > 4 {
		// Like the wake-up hint, a presence serial that does not parse
		// only costs sending every presence again.
		if p, err := strconv.ParseInt(parts[4], 10, 64); err == nil && p > 0 {
			t.Presence = p
		}
	}
	if len(parts) > 5 {
		// Not a hint: counts after it were not sent.
		c, ok := strings.CutPrefix(parts[5], "c")
		n, err := strconv.ParseInt(c, 10, 64)
		if !ok || err != nil || n <= 0 || n > t.Pos {
			return Token{}, mxerr.InvalidParam.With("malformed token %q", s)
		}
		t.Counted = n
	}
	return t, nil
}

// CurrentPosition returns the newest persisted stream position.
func (s *Service) CurrentPosition(ctx context.Context) (int64, error) {
	return s.db.CurrentID(ctx, "stream")
}
