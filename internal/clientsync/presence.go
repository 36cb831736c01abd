package clientsync

import (
	"context"
	"encoding/json"

	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/presence"
)

// WithPresence adds the presence section, read from p.
func WithPresence(p *presence.Tracker) Option {
	return func(s *Service) { s.presence = p }
}

// presenceSerial returns the presence serial next_batch carries.
func (s *Service) presenceSerial() int64 {
	if s.presence == nil || !s.presence.Enabled() {
		return 0
	}
	return s.presence.Serial()
}

// presenceSection fills the top-level presence section: the presence
// announced after the token of the users sharing a room with the user
// (and the user), or, in an initial sync, of those not offline; ignored
// users' presence is left out (spec: Ignoring Users), and so is what the
// filter's presence section refuses.
func (s *Service) presenceSection(ctx context.Context, req Request, resp *Response) error {
	if req.presenceUpto == 0 || req.changed&notifier.Presence == 0 {
		return nil
	}
	f := &req.Filter.Presence
	if (f.Types != nil && !globMatch(*f.Types, "m.presence")) || globMatch(f.NotTypes, "m.presence") {
		return nil
	}
	var since int64
	if req.Since != nil {
		since = req.Since.Presence
		if since == 0 {
			since = 1 // a token without a serial: everything, offline users too
		}
	}
	evs, err := s.presence.Changes(ctx, req.User, since, req.presenceUpto)
	if err != nil {
		return err
	}
	limit := -1
	if f.Limit != nil {
		limit = *f.Limit
	}
	for _, ev := range evs {
		if limit >= 0 && len(resp.Presence.Events) >= limit {
			break
		}
		if req.ignored[ev.User] || !f.Match("m.presence", ev.User) {
			continue
		}
		raw, err := json.Marshal(map[string]any{"type": "m.presence", "sender": ev.User, "content": ev.Status})
		if err != nil {
			return err
		}
		resp.Presence.Events = append(resp.Presence.Events, raw)
	}
	return nil
}
