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
type Token struct {
	Pos    int64
	Typing int64
}

// String renders the token as s<pos>_<typing>.
func (t Token) String() string {
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
	return t, nil
}

// CurrentPosition returns the newest persisted stream position.
func (s *Service) CurrentPosition(ctx context.Context) (int64, error) {
	return s.db.CurrentID(ctx, "stream")
}
