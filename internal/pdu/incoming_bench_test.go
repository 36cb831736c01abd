package pdu

import (
	"testing"

	"maunium.net/go/mautrix/id"
)

// BenchmarkParseIncoming measures the checks on a received message event
// (canonical scan, format, decoding, event ID) for the v1 and the v12
// event format.
func BenchmarkParseIncoming(b *testing.B) {
	for _, v := range []id.RoomVersion{"1", "12"} {
		b.Run("v"+string(v), func(b *testing.B) {
			raw := newRoom(b, v).message("hello world").JSON()
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				if _, err := ParseIncoming(v, raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
