package pushers_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/netguard"
	"github.com/myelin-chat/myelin/internal/push"
	"github.com/myelin-chat/myelin/internal/pushers"
	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/storage/storagetest"
)

// TestDeliveryGivesUp: once a pusher has failed for longer than the
// give-up time, its failing notification is dropped and the next one
// tried, as Synapse does, rather than retried for ever.
func TestDeliveryGivesUp(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		gw := newGateway(t)
		gw.setReply(func(int) (int, string) { return 502, `` })
		svc := pushers.New(db, slog.New(slog.NewTextHandler(io.Discard, nil)),
			pushers.WithGuard(netguard.AllowAll()), pushers.WithBackoff(10*time.Millisecond, 40*time.Millisecond),
			pushers.WithGiveUpAfter(time.Millisecond), pushers.WithConcurrency(1))
		svc.Start(ctx)
		t.Cleanup(svc.Close)
		err := svc.Set(ctx, "@alice:localhost", "DEV", pushers.Pusher{
			Kind: pushers.KindHTTP, AppID: "org.example.app", PushKey: "k", AppDisplayName: "A", DeviceDisplayName: "D",
			Lang: "en", Data: json.RawMessage(`{"url":"` + gw.URL + pushers.NotifyPath + `"}`),
		}, false)
		if err != nil {
			t.Fatal(err)
		}
		err = db.WriteTx(ctx, func(tx *storage.Tx) error {
			for _, e := range []string{"$one", "$two"} {
				n := push.Notification{UserID: "@alice:localhost", RoomID: "!r:localhost", EventID: id.EventID(e),
					Event: json.RawMessage(`{"type":"m.room.message","sender":"@bob:localhost","content":{"body":"hi"}}`), Unread: 1}
				if err := svc.Notified(ctx, tx, n); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "both notifications dropped", 10*time.Second, func() bool { return svc.Stats().Dropped == 2 })
		var order []string
		for _, n := range gw.requests() {
			order = append(order, n["event_id"].(string))
		}
		// Each is tried, fails (failing starts), is tried again past the
		// give-up time and dropped; the second starts afresh.
		if len(order) != 4 || order[0] != "$one" || order[1] != "$one" || order[2] != "$two" || order[3] != "$two" {
			t.Errorf("gateway got %v, want $one twice then $two twice", order)
		}
		// Nothing is left to send, and the pusher stays.
		var queued int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM pusher_queue`).Scan(&queued); err != nil || queued != 0 {
			t.Errorf("queue holds %d rows (%v) after giving up, want 0", queued, err)
		}
		if list, err := svc.List(ctx, "@alice:localhost"); err != nil || len(list) != 1 {
			t.Errorf("pushers = %v, %v; want the pusher kept", list, err)
		}
	})
}
