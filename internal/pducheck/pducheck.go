// Package pducheck runs the checks on receipt of a PDU that need no room
// state (server-server API, "Checks performed on receipt of a PDU", steps
// 1–3): the format of the room version, strict canonical JSON and size,
// signatures, and the content hash, redacting an event whose hash does not
// match.
//
// The federation API runs it on pushed PDUs and the remote fetcher on
// pulled ones; both then hand the event to room, which does the auth
// checks. pducheck imports pdu and nothing else of Myelin.
package pducheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	mpdu "maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/pdu"
)

// KeySource returns a server's verify key valid at minValidUntil.
type KeySource interface {
	VerifyKey(ctx context.Context, server string, keyID id.KeyID, minValidUntil time.Time) (id.SigningKey, time.Time, error)
}

// ErrBadSignature marks a PDU whose signatures do not verify.
var ErrBadSignature = errors.New("signature check failed")

// Checker checks received PDUs.
type Checker struct {
	keys KeySource
}

// New returns a Checker that fetches keys from ks.
func New(ks KeySource) *Checker { return &Checker{keys: ks} }

// Check parses raw as a PDU of room version v and verifies it. A PDU
// whose content hash does not match is returned redacted, as the spec
// asks. Errors wrap pdu.ErrNotCanonical, pdu.ErrBadFormat, pdu.ErrTooLarge
// or ErrBadSignature.
func (c *Checker) Check(ctx context.Context, v id.RoomVersion, raw json.RawMessage) (*pdu.Event, error) {
	ev, err := pdu.ParseIncoming(v, raw)
	if err != nil {
		return nil, err
	}
	getKey := func(server string, keyID id.KeyID, minValidUntil time.Time) (id.SigningKey, time.Time, error) {
		return c.keys.VerifyKey(ctx, server, keyID, minValidUntil)
	}
	if err := ev.VerifySignatures(mpdu.GetKeyFunc(getKey)); err != nil {
		return nil, fmt.Errorf("%w: event %s: %w", ErrBadSignature, ev.ID, err)
	}
	if !ev.VerifyContentHash() {
		return ev.Redacted(), nil
	}
	return ev, nil
}

// CheckAll checks a batch of PDUs of room version v (the state and auth
// chain of a join answer, a backfill page), spreading the signature checks
// over the CPUs. PDUs that fail are dropped; whatever depended on them then
// fails on its own terms. The order of the survivors is kept.
func (c *Checker) CheckAll(ctx context.Context, v id.RoomVersion, raws []json.RawMessage) []*pdu.Event {
	out := make([]*pdu.Event, len(raws))
	workers := min(runtime.GOMAXPROCS(0), len(raws))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(raws) {
					return
				}
				if ev, err := c.Check(ctx, v, raws[i]); err == nil {
					out[i] = ev
				}
			}
		}()
	}
	wg.Wait()
	kept := out[:0]
	for _, ev := range out {
		if ev != nil {
			kept = append(kept, ev)
		}
	}
	return kept
}
