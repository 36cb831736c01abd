package clientsync

import (
	"context"
	"fmt"
	"strconv"
	"strings"

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
type Token struct {
	Pos    int64
	Typing int64
	Wake   Wake
}

// Wake is a notifier generation with the epoch it belongs to; the zero
// Wake matches no notifier.
type Wake struct {
	Epoch uint32
	Gen   uint64
}

// String renders the token as s<pos>_<typing>, followed by
// _<epoch>.<generation> when it carries a Wake.
func (t Token) String() string {
	if t.Wake != (Wake{}) {
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
	return t, nil
}

// CurrentPosition returns the newest persisted stream position.
func (s *Service) CurrentPosition(ctx context.Context) (int64, error) {
	return s.db.CurrentID(ctx, "stream")
}
