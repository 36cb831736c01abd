package keys

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"maunium.net/go/mautrix/id"
)

// Notarise answers a notary query about server: the signed key responses we
// hold for it, each countersigned by us. Responses are fetched afresh when
// none is valid until minValidUntil, a wanted key ID is missing, or the
// newest response is past half its lifetime (the spec's advice for
// notaries); when that fetch fails, the last responses are served anyway so
// that old signatures can still be checked. Our own server is answered with
// OwnKeys. The result is empty when nothing is known.
func (r *Ring) Notarise(ctx context.Context, server string, keyIDs []id.KeyID, minValidUntil time.Time) ([]json.RawMessage, error) {
	if server == r.serverName {
		own, err := r.OwnKeys(ctx)
		if err != nil {
			return nil, err
		}
		return []json.RawMessage{own}, nil
	}
	responses, fresh, err := r.storedResponses(ctx, server, keyIDs, minValidUntil)
	if err != nil {
		return nil, err
	}
	if !fresh && r.fetcher != nil {
		if err := r.once(ctx, server, func() error { return r.fetchDirect(ctx, server) }); err != nil {
			r.log.Debug("notary fetch failed; serving cached keys", "server", server, "err", err)
		}
		if responses, _, err = r.storedResponses(ctx, server, keyIDs, minValidUntil); err != nil {
			return nil, err
		}
	}
	out := make([]json.RawMessage, 0, len(responses))
	for _, raw := range responses {
		signed, err := r.own.SignJSON(r.serverName, raw)
		if err != nil {
			return nil, err
		}
		out = append(out, signed)
	}
	return out, nil
}

// storedResponses returns the distinct stored responses of server and
// whether they satisfy the query without a refetch.
func (r *Ring) storedResponses(ctx context.Context, server string, keyIDs []id.KeyID, minValidUntil time.Time) ([]json.RawMessage, bool, error) {
	rows, err := loadRows(ctx, r.db, server)
	if err != nil {
		return nil, false, err
	}
	now := r.now()
	var out []json.RawMessage
	var seen []string
	fresh := false
	for _, row := range rows {
		if !row.response.Valid || slices.Contains(seen, row.response.String) {
			continue
		}
		seen = append(seen, row.response.String)
		out = append(out, json.RawMessage(row.response.String))
		until := time.UnixMilli(row.validUntil)
		half := time.UnixMilli(row.fetched + (row.validUntil-row.fetched)/2)
		if !until.Before(minValidUntil) && now.Before(half) {
			fresh = true
		}
	}
	for _, keyID := range keyIDs {
		if !slices.ContainsFunc(rows, func(rw row) bool { return rw.keyID == keyID }) {
			fresh = false
		}
	}
	return out, fresh, nil
}
