package presence

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/notifier"
)

// maxBatch bounds the announcements one round of the worker handles.
const maxBatch = 500

// run is the fan-out worker: it takes the announcements queued so far, in
// order, and for the batch wakes the local audience, persists the states
// and queues one m.presence EDU per group of servers. Handling a batch at a
// time coalesces bursts into few writes and transactions.
func (t *Tracker) run() {
	defer close(t.done)
	for it := range t.work {
		batch := []item{it}
	drain:
		for len(batch) < maxBatch {
			select {
			case next, ok := <-t.work:
				if !ok {
					break drain
				}
				batch = append(batch, next)
			default:
				break drain
			}
		}
		t.fanOut(t.ctx, batch)
	}
}

// fanOut handles one batch; failures are logged: presence is best effort.
func (t *Tracker) fanOut(ctx context.Context, batch []item) {
	var persist []row
	var outbound []item
	for _, it := range batch {
		if it.joined != "" {
			t.joined(ctx, it.joined, it.user)
			continue
		}
		if it.ping {
			outbound = append(outbound, it)
			continue
		}
		rooms, err := joinedRooms(ctx, t.db, it.user)
		if err != nil {
			t.log.Warn("listing rooms for a presence change", "user_id", it.user, "err", err)
		}
		audience := map[id.UserID]bool{}
		if t.local(it.user) {
			audience[it.user] = true
		}
		for _, r := range rooms {
			users, err := t.rooms.LocalJoined(ctx, r)
			if err != nil {
				continue
			}
			for _, u := range users {
				audience[u] = true
			}
		}
		t.mu.Lock()
		t.appendLocked(it.user, it.snap, audience)
		t.mu.Unlock()
		wake := make([]id.UserID, 0, len(audience))
		for u := range audience {
			wake = append(wake, u)
		}
		t.notifier.Notify(notifier.Presence, wake...)
		if len(audience) > 0 || t.local(it.user) {
			persist = append(persist, row{user: it.user, snapshot: it.snap})
		}
		if t.local(it.user) {
			outbound = append(outbound, it)
		}
	}
	if err := save(ctx, t.db, persist); err != nil && ctx.Err() == nil {
		t.log.Warn("persisting presence", "users", len(persist), "err", err)
	}
	t.send(ctx, outbound)
}

// push is one user's entry of an m.presence EDU.
type push struct {
	UserID id.UserID `json:"user_id"`
	Status
}

// send queues the local users' presence for the servers sharing a room
// with each: users with the same servers share one EDU.
func (t *Tracker) send(ctx context.Context, items []item) {
	if t.edus == nil || len(items) == 0 {
		return
	}
	now := t.now().UnixMilli()
	byUser := map[id.UserID]item{}
	for _, it := range items {
		byUser[it.user] = it // the latest of a user's changes in the batch
	}
	groups := map[string][]push{}
	dests := map[string][]string{}
	for user, it := range byUser {
		servers, err := t.servers(ctx, user)
		if err != nil {
			t.log.Warn("listing servers for a presence change", "user_id", user, "err", err)
			continue
		}
		if len(servers) == 0 {
			continue
		}
		key := strings.Join(servers, " ")
		groups[key] = append(groups[key], push{UserID: user, Status: render(it.snap, now)})
		dests[key] = servers
	}
	for key, pushes := range groups {
		for len(pushes) > 0 {
			n := min(len(pushes), 100)
			raw, err := json.Marshal(map[string]any{"push": pushes[:n]})
			pushes = pushes[n:]
			if err != nil {
				continue
			}
			if err := t.edus.EnqueueEDU(ctx, dests[key], "m.presence", raw); err != nil && ctx.Err() == nil {
				t.log.Warn("queueing m.presence", "servers", len(dests[key]), "err", err)
			}
		}
	}
}

// servers lists the other servers sharing a joined room with user, sorted.
func (t *Tracker) servers(ctx context.Context, user id.UserID) ([]string, error) {
	rooms, err := joinedRooms(ctx, t.db, user)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, r := range rooms {
		svs, err := t.rooms.Servers(ctx, r)
		if err != nil {
			continue
		}
		for _, s := range svs {
			if s != t.serverName {
				set[s] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	slices.Sort(out)
	return out, nil
}

// maxUnshared bounds the users known before a remote user's presence is
// dropped unless they share a room with a local user.
const maxUnshared = 100000

// known returns how many users have a presence entry.
func (t *Tracker) known() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.users)
}

// Receive applies an m.presence EDU from origin. Only pushes for users of
// origin are taken, as in Synapse.
func (t *Tracker) Receive(ctx context.Context, origin string, content json.RawMessage) {
	if !t.enabled {
		return
	}
	var c struct {
		Push []struct {
			UserID          id.UserID `json:"user_id"`
			Presence        string    `json:"presence"`
			LastActiveAgo   *int64    `json:"last_active_ago"`
			CurrentlyActive bool      `json:"currently_active"`
			StatusMsg       *string   `json:"status_msg"`
		} `json:"push"`
	}
	if json.Unmarshal(content, &c) != nil {
		return
	}
	for _, p := range c.Push {
		if p.UserID.Homeserver() != origin || origin == t.serverName || !Valid(p.Presence) {
			continue
		}
		// A user sharing no room with ours yet is kept too: the EDU a
		// server sends when one of our users joins its user's room may
		// overtake our own commit of the join. Such users are bounded, so
		// that a server cannot fill our memory with made-up ones.
		if shared, err := sharedWithLocal(ctx, t.db, p.UserID); err != nil || (!shared && t.known() >= maxUnshared) {
			continue
		}
		t.update(p.UserID, func(st *state, now int64) {
			st.presence = p.Presence
			st.statusMsg = p.StatusMsg
			st.currentlyActive = p.CurrentlyActive
			st.lastFederation = now
			if p.LastActiveAgo != nil && *p.LastActiveAgo >= 0 {
				st.lastActive = now - *p.LastActiveAgo
			}
		})
	}
}

// joined announces presence between user, who just joined roomID, and
// the room's other members (see Joined).
func (t *Tracker) joined(ctx context.Context, roomID id.RoomID, user id.UserID) {
	members, err := roomMembers(ctx, t.db, roomID)
	if err != nil {
		t.log.Warn("listing members for presence on join", "room_id", roomID, "err", err)
		return
	}
	localMembers, err := t.rooms.LocalJoined(ctx, roomID)
	if err != nil {
		return
	}
	t.mu.Lock()
	snaps := map[id.UserID]snapshot{}
	for _, m := range members {
		if st := t.users[m]; st != nil && st.presence != Offline {
			snaps[m] = st.snapshot()
		}
	}
	joiner, online := snaps[user]
	var wake []id.UserID
	if t.local(user) {
		for m, snap := range snaps {
			if m != user {
				t.appendLocked(m, snap, map[id.UserID]bool{user: true})
				wake = append(wake, user)
			}
		}
	}
	if online {
		audience := map[id.UserID]bool{}
		for _, u := range localMembers {
			if u != user {
				audience[u] = true
				wake = append(wake, u)
			}
		}
		t.appendLocked(user, joiner, audience)
	}
	t.mu.Unlock()
	t.notifier.Notify(notifier.Presence, wake...)
	if t.edus == nil {
		return
	}
	now := t.now().UnixMilli()
	var dests []string
	var pushes []push
	if t.local(user) {
		if !online {
			return
		}
		servers, err := t.rooms.Servers(ctx, roomID)
		if err != nil {
			return
		}
		for _, s := range servers {
			if s != t.serverName {
				dests = append(dests, s)
			}
		}
		pushes = []push{{UserID: user, Status: render(joiner, now)}}
	} else {
		dests = []string{user.Homeserver()}
		for _, m := range localMembers {
			if snap, ok := snaps[m]; ok {
				pushes = append(pushes, push{UserID: m, Status: render(snap, now)})
			}
		}
	}
	for len(pushes) > 0 && len(dests) > 0 {
		n := min(len(pushes), 100)
		raw, err := json.Marshal(map[string]any{"push": pushes[:n]})
		pushes = pushes[n:]
		if err == nil {
			if err := t.edus.EnqueueEDU(ctx, dests, "m.presence", raw); err != nil && ctx.Err() == nil {
				t.log.Warn("queueing m.presence for a join", "room_id", roomID, "err", err)
			}
		}
	}
}

// appendLocked adds an announcement to the change log. t.mu must be held.
func (t *Tracker) appendLocked(user id.UserID, snap snapshot, audience map[id.UserID]bool) {
	t.serial++
	t.changes = append(t.changes, change{serial: t.serial, user: user, snap: snap, audience: audience})
	t.weight += len(audience)
	drop := 0
	for drop < len(t.changes)-1 && (len(t.changes)-drop > maxLog || t.weight > maxWeight) {
		t.weight -= len(t.changes[drop].audience)
		drop++
	}
	if drop > 0 {
		t.floor = t.changes[drop-1].serial
		t.changes = slices.Clone(t.changes[drop:])
	}
}
