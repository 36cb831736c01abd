package clientsync

import (
	"context"
	"encoding/json"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/e2ee"
	"github.com/myelin-chat/myelin/internal/notifier"
)

// Option configures a Service.
type Option func(*Service)

// WithE2EE fills the encryption sections of /sync (to_device,
// device_lists, device_one_time_keys_count,
// device_unused_fallback_key_types) from keys.
func WithE2EE(keys *e2ee.Service) Option {
	return func(s *Service) { s.e2ee = keys }
}

// encryption fills the encryption sections for the request's device. The
// to-device inbox is read up to now; the since token acknowledges (deletes)
// the messages an earlier response carried.
func (s *Service) encryption(ctx context.Context, req Request, since, now int64, resp *Response) error {
	if s.e2ee == nil || req.Device == "" {
		return nil
	}
	acked := e2ee.WholePosition(-1)
	cut := req.Since != nil && req.Since.ToDevice != (e2ee.ToDeviceCursor{})
	switch {
	case cut:
		acked = req.Since.ToDevice
	case req.Since != nil:
		acked = e2ee.WholePosition(since)
	}
	// With no new message, messages the token acknowledges stay stored
	// until a later sync reads the inbox; they are never sent again, as
	// every later token acknowledges them too. A token cut off in the
	// inbox has more waiting.
	if req.changed&notifier.ToDevice != 0 || cut {
		msgs, last, more, err := s.e2ee.ToDevice(ctx, req.User, req.Device, acked, now, e2ee.MaxToDevicePerSync)
		if err != nil {
			return err
		}
		// Messages from ignored users are dropped: acknowledged with the
		// rest, never shown.
		resp.ToDevice.Events = withoutIgnoredSenders(req.ignored, msgs)
		if more {
			resp.toDeviceCut = last
		}
	}
	var err error
	if resp.OneTimeKeysCount, resp.UnusedFallbackKeyTypes, err = s.keyCountsOf(ctx, req); err != nil {
		return err
	}
	if req.Since != nil && req.changed&(notifier.DeviceLists|notifier.Membership) != 0 {
		if resp.DeviceLists.Changed, resp.DeviceLists.Left, err = s.e2ee.DeviceListChanges(ctx, req.User, since, now); err != nil {
			return err
		}
	}
	return nil
}

// keyCountsOf returns the device's one-time key counts and unused fallback
// key types, from the cache while no change to them was notified after it
// was filled: every response carries them, and they rarely change.
func (s *Service) keyCountsOf(ctx context.Context, req Request) (map[string]int, []string, error) {
	k := deviceKey{req.User, req.Device}
	if c, ok := s.keyCounts.Get(k); ok && s.changedSince(req.User, c.wake)&notifier.OneTimeKeys == 0 {
		return c.counts, c.fallback, nil
	}
	counts, fallback, err := s.e2ee.KeyCounts(ctx, req.User, req.Device)
	if err != nil {
		return nil, nil, err
	}
	s.keyCounts.Add(k, cachedKeyCounts{wake: req.wake, counts: counts, fallback: fallback})
	return counts, fallback, nil
}

// withoutIgnoredSenders returns the events whose sender is not ignored.
func withoutIgnoredSenders(ignored map[id.UserID]bool, evs []json.RawMessage) []json.RawMessage {
	if len(ignored) == 0 {
		return evs
	}
	out := evs[:0:0]
	for _, ev := range evs {
		if !ignored[id.UserID(gjson.GetBytes(ev, "sender").Str)] {
			out = append(out, ev)
		}
	}
	return out
}
