package pushers_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"

	"github.com/myelin-chat/myelin/internal/push"
	"github.com/myelin-chat/myelin/internal/pushers"
	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
)

// BenchmarkNotified measures what the Sink adds to the transaction that
// records a notification: one write transaction per op that writes a
// counter (standing for the producer's own writes, so every case pays a
// real commit), alone (the baseline), with Notified for a user without
// pushers, and for a user with one (a queue row). Delivery is not
// started.
func BenchmarkNotified(b *testing.B) {
	storagetest.RunB(b, func(b *testing.B, db *storage.DB) {
		ctx := context.Background()
		svc := pushers.New(db, slog.New(slog.NewTextHandler(io.Discard, nil)))
		err := svc.Set(ctx, "@alice:localhost", "DEV", pushers.Pusher{
			Kind: pushers.KindHTTP, AppID: "org.example.app", PushKey: "k", AppDisplayName: "A", DeviceDisplayName: "D",
			Lang: "en", Data: json.RawMessage(`{"url":"https://push.example.org/_matrix/push/v1/notify"}`),
		}, false)
		if err != nil {
			b.Fatal(err)
		}
		ev := json.RawMessage(`{"type":"m.room.message","sender":"@bob:localhost","content":{"msgtype":"m.text","body":"hello"},"origin_server_ts":1}`)
		for _, bc := range []struct {
			name string
			fn   func(tx *storage.Tx) error
		}{
			{"baseline", func(*storage.Tx) error { return nil }},
			{"no-pushers", func(tx *storage.Tx) error {
				return svc.Notified(ctx, tx, push.Notification{UserID: "@carol:localhost", RoomID: "!r:localhost", EventID: "$e", Event: ev, Unread: 1})
			}},
			{"one-pusher", func(tx *storage.Tx) error {
				return svc.Notified(ctx, tx, push.Notification{UserID: "@alice:localhost", RoomID: "!r:localhost", EventID: "$e", Event: ev,
					Tweaks: map[string]any{"sound": "default"}, Unread: 1})
			}},
		} {
			b.Run(bc.name, func(b *testing.B) {
				b.ReportAllocs()
				report := storagetest.ReportCPU(b)
				for b.Loop() {
					if err := db.WriteTx(ctx, func(tx *storage.Tx) error {
						if _, err := storage.NextID(ctx, tx, "bench", 1); err != nil {
							return err
						}
						return bc.fn(tx)
					}); err != nil {
						b.Fatal(err)
					}
				}
				report()
			})
		}
	})
}
