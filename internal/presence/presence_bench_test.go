package presence

import (
	"io"
	"log/slog"
	"strconv"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/notifier"
)

// What presence adds to the messaging path once users are online: each
// /sync calls Syncing and its done function, each send calls Active.
// Neither announces anything, so neither writes, wakes or allocates
// beyond the done closure.
func BenchmarkSteadyState(b *testing.B) {
	tr := New(nil, notifier.New(), nil, nil, "bench.example", slog.New(slog.NewTextHandler(io.Discard, nil)),
		Options{Enabled: true})
	defer tr.Close()
	users := make([]id.UserID, 1000)
	for i := range users {
		users[i] = id.NewUserID("u"+strconv.Itoa(i), "bench.example")
		tr.Syncing(users[i], "")() // online; the announcement is dropped (not started)
	}
	b.Run("sync", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			tr.Syncing(users[i%len(users)], "")()
			i++
		}
	})
	b.Run("send", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			tr.Active(users[i%len(users)])
			i++
		}
	})
	b.Run("sync-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				tr.Syncing(users[i%len(users)], "")()
				i++
			}
		})
	})
}
