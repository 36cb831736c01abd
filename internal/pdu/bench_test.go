package pdu_test

import (
	"crypto/ed25519"
	"encoding/json"
	"runtime/debug"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/pdu"
)

// benchKey is a fixed signing key, so runs are comparable.
var benchKey = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))

// benchMessage is a typical m.room.message as the bench sends it: a room
// with one forward extremity and three auth events.
func benchMessage(v id.RoomVersion) (pdu.Proto, pdu.BuildArgs) {
	p := pdu.Proto{
		Type: "m.room.message", Sender: "@alice:bench.example", RoomID: "!abcdefghijklmnop:bench.example",
		Content: json.RawMessage(`{"msgtype":"m.text","body":"myelin-bench run 1234 5678 1764096000000000000"}`),
	}
	a := pdu.BuildArgs{
		Version: v,
		AuthEvents: []id.EventID{
			"$aGVsbG8gd29ybGQgdGhpcyBpcyBhIGNyZWF0ZSBldmVudA", "$cG93ZXIgbGV2ZWxzIGV2ZW50IGlkIGZvciB0aGUgcm9vbQ",
			"$bWVtYmVyIGV2ZW50IGlkIG9mIHRoZSBzZW5kZXIgaGVyZQ",
		},
		PrevEvents: []id.EventID{"$cHJldmlvdXMgZXZlbnQgaW4gdGhlIHJvb20gdGltZWxpbmU"},
		Depth:      1234, Timestamp: 1764096000000,
		ServerName: "bench.example", KeyID: "ed25519:bench", Key: benchKey,
	}
	return p, a
}

// BenchmarkBuild measures building a local event: content hash, signature
// over the redacted form, and the reference-hash event ID.
func BenchmarkBuild(b *testing.B) {
	for _, v := range []id.RoomVersion{"10", "12"} {
		b.Run("v"+string(v), func(b *testing.B) {
			p, a := benchMessage(v)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := pdu.Build(p, a); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEventID measures the reference hash alone (what receiving a
// federated event costs before any verification).
func BenchmarkEventID(b *testing.B) {
	p, a := benchMessage("12")
	ev, err := pdu.Build(p, a)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ev.GetEventID("12"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkContentHash measures the content hash (canonical JSON + SHA-256).
func BenchmarkContentHash(b *testing.B) {
	p, a := benchMessage("12")
	ev, err := pdu.Build(p, a)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ev.CalculateContentHash(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParse compares decoding a received PDU (which computes its event
// ID) with decoding a stored one whose ID is known.
func BenchmarkParse(b *testing.B) {
	p, a := benchMessage("12")
	ev, err := pdu.Build(p, a)
	if err != nil {
		b.Fatal(err)
	}
	raw := ev.JSON()
	b.Run("received", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := pdu.Parse("12", raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stored", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := pdu.ParseTrusted("12", ev.ID, raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestAllocBudgets keeps the per-event hot paths from quietly growing
// allocations. The budgets are about 1.5× what was measured when they were
// set (Go 1.27, mautrix v0.32); raise them only with a reason.
func TestAllocBudgets(t *testing.T) {
	if raceEnabled() {
		t.Skip("allocation counts are not comparable under the race detector")
	}
	p, a := benchMessage("12")
	ev, err := pdu.Build(p, a)
	if err != nil {
		t.Fatal(err)
	}
	raw := ev.JSON()
	tests := []struct {
		name   string
		budget float64
		fn     func() error
	}{
		{"Build", buildBudget, func() error { _, err := pdu.Build(p, a); return err }},
		{"ParseTrusted", parseTrustedBudget, func() error { _, err := pdu.ParseTrusted("12", ev.ID, raw); return err }},
		{"EventID", eventIDBudget, func() error { _, err := ev.GetEventID("12"); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ferr error
			got := testing.AllocsPerRun(50, func() {
				if err := tt.fn(); err != nil {
					ferr = err
				}
			})
			if ferr != nil {
				t.Fatal(ferr)
			}
			if got > tt.budget {
				t.Errorf("%s: %v allocations per call, budget %v", tt.name, got, tt.budget)
			}
			t.Logf("%s: %v allocations per call (budget %v)", tt.name, got, tt.budget)
		})
	}
}

// Allocation budgets, see TestAllocBudgets.
const (
	buildBudget        = 80 // measured 53
	parseTrustedBudget = 30 // measured 20
	eventIDBudget      = 24 // measured 16
)

// raceEnabled reports whether the test binary was built with -race, whose
// instrumentation adds allocations of its own.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}
