package slidingsync

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/accountdata"
	"github.com/myelin-chat/myelin/internal/clientsync"
	"github.com/myelin-chat/myelin/internal/e2ee"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/receipts"
)

// extensions fills the enabled extensions and reports whether any has
// news.
func (s *Service) extensions(ctx context.Context, b *build, resp *Resp) (bool, error) {
	ext := &b.ext
	news := false
	if ext.ToDevice != nil && ext.ToDevice.on() {
		n, err := s.toDevice(ctx, b, resp)
		if err != nil {
			return false, err
		}
		news = news || n
	}
	if ext.E2EE.on() {
		n, err := s.encryption(ctx, b, resp)
		if err != nil {
			return false, err
		}
		news = news || n
	}
	if ext.AccountData != nil && ext.AccountData.on() {
		n, err := s.accountDataExt(ctx, b, resp)
		if err != nil {
			return false, err
		}
		news = news || n
	}
	if ext.Receipts != nil && ext.Receipts.on() {
		n, err := s.receiptsExt(ctx, b, resp)
		if err != nil {
			return false, err
		}
		news = news || n
	}
	if ext.Typing != nil && ext.Typing.on() {
		news = s.typingExt(b, resp) || news
	}
	return news, nil
}

// stickyExtensions merges the request's extension configs over the
// connection's: a client may send an extension's config only in its first
// request (matrix-js-sdk does), and a field it leaves out keeps its value.
// The to-device since is never kept: it is the request's alone.
func stickyExtensions(old ExtensionsReq, req ExtensionsReq) ExtensionsReq {
	out := old
	if td := req.ToDevice; td != nil {
		merged := ToDeviceReq{}
		if old.ToDevice != nil {
			merged = *old.ToDevice
		}
		if td.Enabled != nil {
			merged.Enabled = td.Enabled
		} else if td.Since != "" && merged.Enabled == nil {
			// A since only makes sense with the extension on.
			on := true
			merged.Enabled = &on
		}
		if td.Limit != nil {
			merged.Limit = td.Limit
		}
		merged.Since = td.Since
		out.ToDevice = &merged
	} else if old.ToDevice != nil {
		merged := *old.ToDevice
		merged.Since = ""
		out.ToDevice = &merged
	}
	if req.E2EE != nil {
		merged := EnabledReq{}
		if old.E2EE != nil {
			merged = *old.E2EE
		}
		if req.E2EE.Enabled != nil {
			merged.Enabled = req.E2EE.Enabled
		}
		out.E2EE = &merged
	}
	out.AccountData = stickyScoped(old.AccountData, req.AccountData)
	out.Receipts = stickyScoped(old.Receipts, req.Receipts)
	out.Typing = stickyScoped(old.Typing, req.Typing)
	return out
}

func stickyScoped(old, req *ScopedReq) *ScopedReq {
	if req == nil {
		return old
	}
	merged := ScopedReq{}
	if old != nil {
		merged = *old
	}
	if req.Enabled != nil {
		merged.Enabled = req.Enabled
	}
	if req.Lists != nil {
		merged.Lists = req.Lists
	}
	if req.Rooms != nil {
		merged.Rooms = req.Rooms
	}
	return &merged
}

// formatCursor renders a to-device next_batch: the position, with the
// sequence number when the inbox was cut off inside it.
func formatCursor(c e2ee.ToDeviceCursor) string {
	if c == e2ee.WholePosition(c.Pos) {
		return strconv.FormatInt(c.Pos, 10)
	}
	return fmt.Sprintf("%d.%d", c.Pos, c.Seq)
}

func parseCursor(s string) (e2ee.ToDeviceCursor, error) {
	p, q, cut := strings.Cut(s, ".")
	pos, err := strconv.ParseInt(p, 10, 64)
	if err != nil || pos < 0 {
		return e2ee.ToDeviceCursor{}, mxerr.InvalidParam.With("malformed to_device since")
	}
	if !cut {
		return e2ee.WholePosition(pos), nil
	}
	seq, err := strconv.ParseInt(q, 10, 64)
	if err != nil || seq < 0 {
		return e2ee.ToDeviceCursor{}, mxerr.InvalidParam.With("malformed to_device since")
	}
	return e2ee.ToDeviceCursor{Pos: pos, Seq: seq}, nil
}

// toDevice fills the to-device extension. since acknowledges (deletes)
// what the response that issued it carried; the rest comes again until
// acknowledged, as in /sync.
func (s *Service) toDevice(ctx context.Context, b *build, resp *Resp) (bool, error) {
	td := b.ext.ToDevice
	if s.e2ee == nil || b.device == "" {
		return false, nil
	}
	acked := e2ee.WholePosition(-1)
	if td.Since != "" {
		c, err := parseCursor(td.Since)
		if err != nil {
			return false, err
		}
		acked = c
	}
	// With the since the last response handed out (not cut off inside the
	// inbox) and no to-device message notified since, nothing waits.
	if !b.base.fresh && td.Since != "" && td.Since == b.base.toDevice && b.changed&notifier.ToDevice == 0 {
		resp.Extensions.ToDevice = &ToDeviceResp{NextBatch: td.Since, Events: []json.RawMessage{}}
		b.next.toDevice = td.Since
		return false, nil
	}
	limit := e2ee.MaxToDevicePerSync
	if td.Limit != nil && *td.Limit > 0 {
		limit = min(limit, *td.Limit)
	}
	msgs, last, more, err := s.e2ee.ToDevice(ctx, b.user, b.device, acked, b.now, limit)
	if err != nil {
		return false, err
	}
	next := formatCursor(e2ee.WholePosition(max(b.now, acked.Pos)))
	b.next.toDevice = next
	if more {
		next = formatCursor(last)
		b.next.toDevice = "" // more wait without a notification
	}
	if msgs == nil {
		msgs = []json.RawMessage{}
	}
	resp.Extensions.ToDevice = &ToDeviceResp{NextBatch: next, Events: msgs}
	return len(msgs) > 0, nil
}

// encryption fills the e2ee extension like /sync's sections: key counts
// always, device list changes since the connection's last response.
func (s *Service) encryption(ctx context.Context, b *build, resp *Resp) (bool, error) {
	if s.e2ee == nil || b.device == "" {
		return false, nil
	}
	out := &E2EEResp{}
	var err error
	if out.OneTimeKeysCount, out.UnusedFallbackKeyTypes, err = s.sync.KeyCounts(ctx, b.user, b.device, b.wake); err != nil {
		return false, err
	}
	if out.OneTimeKeysCount == nil {
		out.OneTimeKeysCount = map[string]int{}
	}
	if out.UnusedFallbackKeyTypes == nil {
		out.UnusedFallbackKeyTypes = []string{}
	}
	news := !b.base.fresh && b.changed&notifier.OneTimeKeys != 0
	if !b.base.fresh && b.changed&(notifier.DeviceLists|notifier.Membership) != 0 {
		if out.DeviceLists.Changed, out.DeviceLists.Left, err = s.e2ee.DeviceListChanges(ctx, b.user, b.since, b.now); err != nil {
			return false, err
		}
		news = news || len(out.DeviceLists.Changed) > 0 || len(out.DeviceLists.Left) > 0
	}
	resp.Extensions.E2EE = out
	return news, nil
}

// scope returns the rooms an extension covers: those of the named lists'
// windows (every list when lists is absent) and the named subscriptions
// (every one when rooms is absent, or for "*"), joined ones only, with
// whether the client had each before this response.
func (b *build) scope(sr *ScopedReq) (current, fresh []id.RoomID) {
	allSubs := sr.Rooms == nil || slices.Contains(sr.Rooms, "*")
	seen := map[id.RoomID]bool{}
	add := func(roomID id.RoomID) {
		w := b.wanted[roomID]
		if seen[roomID] || w == nil || w.c.m.Membership != "join" {
			return
		}
		seen[roomID] = true
		// A room the client did not have up to the last response may
		// have older changes it never got.
		if sent, ok := b.base.rooms[roomID]; ok && sent.membership == "join" && sent.pos >= b.since && !b.base.fresh {
			current = append(current, roomID)
		} else {
			fresh = append(fresh, roomID)
		}
	}
	for _, roomID := range b.order {
		w := b.wanted[roomID]
		allLists := sr.Lists == nil || slices.Contains(sr.Lists, "*")
		inList := slices.ContainsFunc(w.lists, func(l string) bool { return allLists || slices.Contains(sr.Lists, l) })
		inSubs := (w.subscribed && allSubs) || slices.Contains(sr.Rooms, roomID)
		if inList || inSubs {
			add(roomID)
		}
	}
	return current, fresh
}

// accountDataExt fills the account data extension: global changes since
// the last response (all of it on a new connection), and those of the
// rooms in scope (all of a room's the client did not have).
func (s *Service) accountDataExt(ctx context.Context, b *build, resp *Resp) (bool, error) {
	current, fresh := b.scope(b.ext.AccountData)
	out := &AccountDataResp{Rooms: map[id.RoomID][]json.RawMessage{}}
	if b.base.fresh || b.changed&notifier.AccountData != 0 {
		var entries []accountdata.Entry
		if b.base.fresh {
			all, err := s.accountEntries(ctx, b)
			if err != nil {
				return false, err
			}
			entries = all
		} else {
			var err error
			if entries, err = s.accountData.Since(ctx, b.user, b.since, b.now); err != nil {
				return false, err
			}
		}
		for _, e := range entries {
			switch {
			case e.RoomID == "":
				out.Global = append(out.Global, clientsync.AccountDataEvent(e))
			case slices.Contains(current, e.RoomID):
				out.Rooms[e.RoomID] = append(out.Rooms[e.RoomID], clientsync.AccountDataEvent(e))
			}
		}
	}
	if len(fresh) > 0 {
		all, err := s.accountEntries(ctx, b)
		if err != nil {
			return false, err
		}
		for _, e := range all {
			if e.RoomID != "" && slices.Contains(fresh, e.RoomID) {
				out.Rooms[e.RoomID] = append(out.Rooms[e.RoomID], clientsync.AccountDataEvent(e))
			}
		}
	}
	resp.Extensions.AccountData = out
	return len(out.Global) > 0 || len(out.Rooms) > 0, nil
}

// receiptsExt fills the receipts extension with the receipts of the rooms
// in scope changed since the last response, or all of a room's the client
// did not have.
func (s *Service) receiptsExt(ctx context.Context, b *build, resp *Resp) (bool, error) {
	current, fresh := b.scope(b.ext.Receipts)
	out := &RoomEventsResp{Rooms: map[id.RoomID]json.RawMessage{}}
	add := func(rooms []id.RoomID, after int64) error {
		if len(rooms) == 0 {
			return nil
		}
		got, err := s.receipts.Since(ctx, rooms, b.user, after, b.now)
		if err != nil {
			return err
		}
		for roomID, rs := range got {
			if len(rs) > 0 {
				out.Rooms[roomID] = receipts.Event(rs)
			}
		}
		return nil
	}
	if b.changed&notifier.Receipts != 0 {
		if err := add(current, b.since); err != nil {
			return false, err
		}
	}
	if err := add(fresh, -1); err != nil {
		return false, err
	}
	resp.Extensions.Receipts = out
	return len(out.Rooms) > 0, nil
}

// typingExt fills the typing extension: the lists of the rooms in scope
// that changed since the last response, and the non-empty ones of rooms
// the client did not have.
func (s *Service) typingExt(b *build, resp *Resp) bool {
	current, fresh := b.scope(b.ext.Typing)
	out := &RoomEventsResp{Rooms: map[id.RoomID]json.RawMessage{}}
	since := b.base.typing
	if since > b.next.typing {
		since = 0 // a serial of another process: send the lists again
	}
	for _, roomID := range current {
		users, serial := s.typing.Room(roomID)
		if serial > since && serial <= b.next.typing {
			out.Rooms[roomID] = clientsync.TypingEvent(users)
		}
	}
	for _, roomID := range fresh {
		if users, serial := s.typing.Room(roomID); len(users) > 0 && serial <= b.next.typing {
			out.Rooms[roomID] = clientsync.TypingEvent(users)
		}
	}
	resp.Extensions.Typing = out
	return len(out.Rooms) > 0
}
