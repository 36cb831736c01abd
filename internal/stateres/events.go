package stateres

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/myelin-chat/myelin/internal/pdu"
	"maunium.net/go/mautrix/federation/eventauth"
	mpdu "maunium.net/go/mautrix/federation/pdu"
	"maunium.net/go/mautrix/id"
)

// set is a set of event IDs.
type set = map[id.EventID]struct{}

// resolver holds what one Resolve call has loaded and computed. It lives for
// that call only.
type resolver struct {
	ctx     context.Context
	v       id.RoomVersion
	f       Fetcher
	chainer AuthChainer // nil unless f implements it

	evs     map[id.EventID]*pdu.Event
	missing set // requested but not found

	power  map[id.EventID]int64   // sender power of an event, for the power ordering
	levels map[id.EventID]*levels // parsed power levels content

	createID id.EventID         // v12: the create event, derived from the room ID
	creators map[id.UserID]bool // v12: users with infinite power

	signKey ed25519.PrivateKey // see authorize
}

func newResolver(ctx context.Context, v id.RoomVersion, f Fetcher) *resolver {
	r := &resolver{
		ctx: ctx, v: v, f: f,
		evs:     map[id.EventID]*pdu.Event{},
		missing: set{},
		power:   map[id.EventID]int64{},
		levels:  map[id.EventID]*levels{},
	}
	r.chainer, _ = f.(AuthChainer)
	return r
}

// load fetches the events of ids that are not loaded yet, in one call.
func (r *resolver) load(ids []id.EventID) error {
	var need []id.EventID
	asked := set{}
	for _, x := range ids {
		if _, ok := r.evs[x]; ok {
			continue
		}
		if _, ok := r.missing[x]; ok {
			continue
		}
		if _, ok := asked[x]; ok {
			continue
		}
		asked[x] = struct{}{}
		need = append(need, x)
	}
	if len(need) == 0 {
		return nil
	}
	got, err := r.f.Events(r.ctx, need)
	if err != nil {
		return fmt.Errorf("loading %d events: %w", len(need), err)
	}
	if len(got) > 1024 {
		// Grow once rather than rehashing step by step (the unconflicted
		// state's auth chain walk loads thousands at once).
		evs := make(map[id.EventID]*pdu.Event, len(r.evs)+len(got))
		maps.Copy(evs, r.evs)
		r.evs = evs
	}
	for _, e := range got {
		if e != nil && e.PDU != nil {
			r.evs[e.ID] = e
		}
	}
	for _, x := range need {
		if _, ok := r.evs[x]; !ok {
			r.missing[x] = struct{}{}
		}
	}
	return nil
}

// chain returns the union of the auth chains of ids.
func (r *resolver) chain(ids []id.EventID) (set, error) {
	if len(ids) == 0 {
		return set{}, nil
	}
	if r.chainer != nil {
		c, err := r.chainer.AuthChain(r.ctx, ids)
		if err != nil {
			return nil, fmt.Errorf("loading auth chain of %d events: %w", len(ids), err)
		}
		return c, nil
	}
	return r.walk(ids, nil)
}

// walk returns the union of the auth chains of starts by following
// auth_events breadth first, loading one level per Fetcher call. If want is
// not nil, walk stops as soon as every event of want has been reached, and
// the result is then only the part walked so far.
func (r *resolver) walk(starts []id.EventID, want set) (set, error) {
	out := set{}
	found := 0
	frontier := starts
	for len(frontier) > 0 {
		if err := r.load(frontier); err != nil {
			return nil, err
		}
		var next []id.EventID
		for _, x := range frontier {
			e := r.evs[x]
			if e == nil {
				continue
			}
			for _, a := range e.AuthEvents {
				if _, ok := out[a]; ok {
					continue
				}
				out[a] = struct{}{}
				next = append(next, a)
				if _, ok := want[a]; ok {
					found++
					if found == len(want) {
						return out, nil
					}
				}
			}
		}
		frontier = next
	}
	return out, nil
}

// inChainOf returns the events of targets that are in the auth chain of ids.
func (r *resolver) inChainOf(ids []id.EventID, targets set) (set, error) {
	var c set
	var err error
	if r.chainer != nil {
		c, err = r.chain(ids)
	} else {
		c, err = r.walk(ids, targets)
	}
	if err != nil {
		return nil, err
	}
	out := set{}
	for x := range targets {
		if _, ok := c[x]; ok {
			out[x] = struct{}{}
		}
	}
	return out, nil
}

// getEvents serves eventauth's lookups by ID (the create event in v12) from
// the loaded events, loading what is missing.
func (r *resolver) getEvents(ids []id.EventID) ([]*mpdu.PDU, error) {
	if err := r.load(ids); err != nil {
		return nil, err
	}
	out := make([]*mpdu.PDU, 0, len(ids))
	for _, x := range ids {
		if e := r.evs[x]; e != nil {
			out = append(out, e.PDU)
		}
	}
	return out, nil
}

// signKeyID names the throwaway key of authorize.
const signKeyID = id.KeyID("ed25519:stateres")

// authorize applies the authorisation rules to e with the given auth events.
//
// The rules make eventauth verify the signature of the server named by a
// restricted join's join_authorised_via_users_server. Signatures are checked
// when an event is received, and state resolution re-applies only the
// state-dependent rules (no event rejected against its auth chain takes part,
// per the spec), so Resolve needs no signing keys: it checks a copy of the
// event signed with a throwaway key that getKey then vouches for. Everything
// else about the event is checked unchanged.
func (r *resolver) authorize(e *pdu.Event, authEvents []*mpdu.PDU) error {
	p := e.PDU
	if e.Type == "m.room.member" && r.v.RestrictedJoins() {
		if via := authorisedVia(p); via != "" {
			resigned, err := r.resign(p, via.Homeserver())
			if err != nil {
				return err
			}
			p = resigned
		}
	}
	return eventauth.Authorize(r.v, p, authEvents, r.getEvents, r.getKey)
}

func (r *resolver) resign(p *mpdu.PDU, server string) (*mpdu.PDU, error) {
	if r.signKey == nil {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generating throwaway signing key: %w", err)
		}
		r.signKey = priv
	}
	c := p.Clone()
	c.Signatures = nil
	if err := c.Sign(r.v, server, signKeyID, r.signKey); err != nil {
		return nil, fmt.Errorf("re-signing restricted join: %w", err)
	}
	return c, nil
}

var errNoKey = errors.New("state resolution does not verify signatures")

func (r *resolver) getKey(server string, keyID id.KeyID, _ time.Time) (id.SigningKey, time.Time, error) {
	if keyID != signKeyID || r.signKey == nil {
		return "", time.Time{}, errNoKey
	}
	pub := r.signKey.Public().(ed25519.PublicKey)
	return id.SigningKey(base64.RawStdEncoding.EncodeToString(pub)), time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), nil
}

// roomIDOf returns the room ID shared by the loaded events.
func (r *resolver) roomIDOf(ids []id.EventID) id.RoomID {
	for _, x := range ids {
		if e := r.evs[x]; e != nil && e.PDU.RoomID != "" {
			return e.PDU.RoomID
		}
	}
	return ""
}

// loadCreators finds the v12 room creators: the sender of the create event,
// whose ID is the room ID with the $ sigil, and its additional_creators.
func (r *resolver) loadCreators(someIDs []id.EventID) error {
	r.creators = map[id.UserID]bool{}
	roomID := r.roomIDOf(someIDs)
	if !strings.HasPrefix(string(roomID), "!") {
		return nil
	}
	r.createID = id.EventID("$" + roomID[1:])
	if err := r.load([]id.EventID{r.createID}); err != nil {
		return err
	}
	create := r.evs[r.createID]
	if create == nil {
		return nil
	}
	r.creators[create.Sender] = true
	for _, u := range additionalCreators(create.PDU) {
		r.creators[u] = true
	}
	return nil
}
