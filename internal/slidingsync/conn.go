package slidingsync

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/clientsync"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

// connKey names a connection: a client may keep several per device, told
// apart by conn_id.
type connKey struct {
	user   id.UserID
	device id.DeviceID
	conn   string
}

// connection is what the server knows a connection holds, as of each of
// its last few responses: a client that lost a response retries with the
// pos before it, and must get the same answer as if the lost one had
// never been sent.
type connection struct {
	mu     sync.Mutex
	states []*connState // oldest first, at most keptStates
}

// keptStates is how many responses' worth of state a connection keeps: the
// latest, and those before it that a client retrying may still name.
const keptStates = 3

// connState is one response's view of the connection: the position its
// data covered and which rooms the client holds up to where. It is
// immutable once stored; the next build copies what it changes.
type connState struct {
	seq int64
	// pos is the stream position the response covered, typing the typing
	// serial; wake the user's notifier generation read before building.
	pos    int64
	typing int64
	wake   clientsync.Wake
	// rooms holds what the client has of each room sent.
	rooms map[id.RoomID]sentRoom
	// subs are the sticky room subscriptions; lists and ext the lists and
	// extension configs in force (see build).
	subs  map[id.RoomID]RoomDetails
	lists map[string]ListReq
	ext   ExtensionsReq
	// counts are the lists' counts last sent: a change alone is news.
	counts map[string]int
	// toDevice is the to-device next_batch last handed out.
	toDevice string
	// fresh marks the state of a connection with no response yet.
	fresh bool
}

// sentRoom is what the client was sent of one room.
type sentRoom struct {
	// pos is the stream position up to which the client has the room's
	// events and state.
	pos        int64
	membership string
	// state is the key of the required_state sent (wanted.stateConfig);
	// a different one sends the room's state in full again.
	state string
	// limit is the timeline limit last asked for: a larger one sends the
	// latest events up to it again (expanded_timeline).
	limit int
	// members holds the member events the client was sent (by user), so
	// that lazy members are not sent again. Shared between states: a
	// change makes a new map.
	members map[id.UserID]id.EventID
	// dm is whether the client was told the room is a DM.
	dm bool
}

// child returns a copy of st to build the next state in.
func (st *connState) child() *connState {
	return &connState{
		pos: st.pos, typing: st.typing, wake: st.wake,
		rooms: maps.Clone(st.rooms), subs: maps.Clone(st.subs), counts: map[string]int{},
		toDevice: st.toDevice, lists: st.lists, ext: st.ext,
	}
}

// connections holds the connections of every user, least recently used
// evicted first; a pos naming an evicted one is M_UNKNOWN_POS.
type connections struct {
	epoch uint32
	cache *lru.Cache[connKey, *connection]
	// known reports whether an earlier process issued an epoch.
	known func(ctx context.Context, epoch uint32) (bool, error)
	// seq numbers the states of every connection, so that the pos of a
	// connection replaced by a new one (same key) names nothing.
	seq atomic.Int64
}

// maxConnections bounds the connections held. A connection's state grows
// with the rooms it has been sent (about a hundred bytes each), so a
// thousand-room client with every room sent holds a few hundred kilobytes
// at most, and a typical one (a window of twenty) a few kilobytes.
const maxConnections = 10000

func newConnections(epoch uint32) *connections {
	c, _ := lru.New[connKey, *connection](maxConnections)
	return &connections{epoch: epoch, cache: c}
}

// posToken is a parsed pos: <epoch>_<seq>_<stream pos>_<typing
// serial>_<extensions>. The epoch names the process that issued it, seq
// the connection state; extensions is a bit set of the extensions enabled,
// so that a connection rebuilt after a restart keeps them (clients send
// "enabled" only once).
type posToken struct {
	epoch  uint32
	seq    int64
	pos    int64
	typing int64
	ext    uint8
}

// The bits of posToken.ext.
const (
	extToDevice uint8 = 1 << iota
	extE2EE
	extAccountData
	extReceipts
	extTyping
)

func (p posToken) String() string {
	return fmt.Sprintf("%d_%d_%d_%d_%d", p.epoch, p.seq, p.pos, p.typing, p.ext)
}

func parsePos(s string) (posToken, bool) {
	parts := strings.Split(s, "_")
	if len(parts) != 5 {
		return posToken{}, false
	}
	e, err1 := strconv.ParseUint(parts[0], 10, 32)
	seq, err2 := strconv.ParseInt(parts[1], 10, 64)
	pos, err3 := strconv.ParseInt(parts[2], 10, 64)
	ty, err4 := strconv.ParseInt(parts[3], 10, 64)
	ext, err5 := strconv.ParseUint(parts[4], 10, 8)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || err5 != nil || seq < 0 || pos < 0 || ty < 0 {
		return posToken{}, false
	}
	return posToken{epoch: uint32(e), seq: seq, pos: pos, typing: ty, ext: uint8(ext)}, true
}

// extBits returns the bit set of the extensions ext enables.
func extBits(ext ExtensionsReq) uint8 {
	var bits uint8
	if ext.ToDevice != nil && ext.ToDevice.on() {
		bits |= extToDevice
	}
	if ext.E2EE.on() {
		bits |= extE2EE
	}
	for bit, sc := range map[uint8]*ScopedReq{extAccountData: ext.AccountData, extReceipts: ext.Receipts, extTyping: ext.Typing} {
		if sc != nil && sc.on() {
			bits |= bit
		}
	}
	return bits
}

// enabledExtensions is the config of a rebuilt connection: the extensions
// of bits enabled, each covering every list and subscription.
func enabledExtensions(bits uint8) ExtensionsReq {
	on := func(bit uint8) *bool {
		v := bits&bit != 0
		return &v
	}
	return ExtensionsReq{
		ToDevice:    &ToDeviceReq{EnabledReq: EnabledReq{Enabled: on(extToDevice)}},
		E2EE:        &EnabledReq{Enabled: on(extE2EE)},
		AccountData: &ScopedReq{EnabledReq: EnabledReq{Enabled: on(extAccountData)}},
		Receipts:    &ScopedReq{EnabledReq: EnabledReq{Enabled: on(extReceipts)}},
		Typing:      &ScopedReq{EnabledReq: EnabledReq{Enabled: on(extTyping)}},
	}
}

// errUnknownPos is the answer to a pos the server cannot continue from;
// the client starts a new connection (Synapse answers the same).
var errUnknownPos = mxerr.UnknownPos.With("unknown or expired pos: start a new connection")

// load returns the connection and the state a request continues from.
// Without pos it is a new connection, replacing any of the same key. A
// pos from an earlier process (the server restarted) rebuilds the state
// from the positions the pos carries: the client holds every room up to
// there, but the server no longer knows which, so each room it asks for
// is sent whole again (initial), and the extensions continue from the
// pos's position, losing nothing.
func (c *connections) load(ctx context.Context, key connKey, pos string) (*connection, *connState, error) {
	if pos == "" {
		conn := &connection{}
		c.cache.Add(key, conn)
		return conn, &connState{fresh: true, rooms: map[id.RoomID]sentRoom{}, subs: map[id.RoomID]RoomDetails{}, counts: map[string]int{}}, nil
	}
	p, ok := parsePos(pos)
	if !ok {
		return nil, nil, errUnknownPos
	}
	if p.epoch != c.epoch {
		if ok, err := c.known(ctx, p.epoch); err != nil {
			return nil, nil, err
		} else if !ok {
			return nil, nil, errUnknownPos
		}
		conn := &connection{}
		c.cache.Add(key, conn)
		return conn, &connState{pos: p.pos, typing: p.typing, rooms: map[id.RoomID]sentRoom{},
			subs: map[id.RoomID]RoomDetails{}, counts: map[string]int{}, ext: enabledExtensions(p.ext)}, nil
	}
	conn, ok := c.cache.Get(key)
	if !ok {
		return nil, nil, errUnknownPos
	}
	conn.mu.Lock()
	defer conn.mu.Unlock()
	for _, st := range conn.states {
		if st.seq == p.seq {
			return conn, st, nil
		}
	}
	return nil, nil, errUnknownPos
}

// store records st as the connection's newest state and returns its pos.
// States older than the one the request continued from (base) are
// dropped: the client has moved past them. base itself stays, with the
// newest others, since clients cancel a request and send it again from
// the same pos when their lists change.
func (c *connections) store(conn *connection, base, st *connState) string {
	conn.mu.Lock()
	defer conn.mu.Unlock()
	st.seq = c.seq.Add(1)
	var kept []*connState
	for _, old := range conn.states {
		if base.fresh || old.seq > base.seq {
			kept = append(kept, old)
		}
	}
	kept = append(kept, st)
	if len(kept) > keptStates-1 {
		kept = kept[len(kept)-(keptStates-1):]
	}
	if !base.fresh && slices.Contains(conn.states, base) {
		kept = append([]*connState{base}, kept...)
	}
	conn.states = kept
	return posToken{epoch: c.epoch, seq: st.seq, pos: st.pos, typing: st.typing, ext: extBits(st.ext)}.String()
}
