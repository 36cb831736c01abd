package homeserver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxtest"
	"github.com/myelin-chat/myelin/internal/storage"
)

// Words of the search measurement: the common one is in a tenth of the
// messages, the rare one in ten of them.
const (
	commonWord = "hello"
	rareWord   = "quokka"
)

// TestMeasureSearch reports /search latency over a million indexed
// messages (MYELIN_MEASURE_MESSAGES to change), p50 and p99 for a common
// and a rare word in both orders, and the disk the full-text index takes
// per message. The messages are written through the storage layer, not
// the send path (a million sends would take an hour): copies of a real
// message of each room with new IDs, positions and bodies, indexed with
// the statement migration 00018 uses for events stored before it. It only
// runs with MYELIN_MEASURE=1.
func TestMeasureSearch(t *testing.T) {
	if os.Getenv("MYELIN_MEASURE") == "" {
		t.Skip("set MYELIN_MEASURE=1 to measure")
	}
	total := 1_000_000
	if v := os.Getenv("MYELIN_MEASURE_MESSAGES"); v != "" {
		total, _ = strconv.Atoi(v)
	}
	runs := 30
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			srv := mxtest.Start(t, engine)
			alice := srv.Client("alice")
			db := srv.DB()
			const rooms = 10
			type template struct {
				room     id.RoomID
				snapshot int64
				json     string
			}
			var tmpl []template
			for range rooms {
				created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
				if err != nil {
					t.Fatal(err)
				}
				evID := sendText(t, alice, created.RoomID, "template-body")
				var tp template
				tp.room = created.RoomID
				if err := db.QueryRowContext(ctx, `SELECT snapshot_nid, json FROM events WHERE event_id = $1`, evID.String()).Scan(&tp.snapshot, &tp.json); err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(tp.json, `"body":"template-body"`) {
					t.Fatalf("template %s has no body to replace", tp.json)
				}
				tmpl = append(tmpl, tp)
			}

			// Zipf-distributed words of a 20,000-word vocabulary, 8 a message.
			rng := rand.New(rand.NewPCG(1, 2))
			zipf := rand.NewZipf(rng, 1.1, 2, 20000)
			word := func() string { return "w" + strconv.FormatUint(zipf.Uint64(), 36) + "x" }
			t0 := time.Now()
			var firstNID, lastNID int64
			const batch = 500
			base := time.Now().Add(-time.Duration(total) * time.Second).UnixMilli()
			for done := 0; done < total; done += batch {
				n := min(batch, total-done)
				err := db.WriteTx(ctx, func(tx *storage.Tx) error {
					lastN, err := storage.NextID(ctx, tx, "event_nid", int64(n))
					if err != nil {
						return err
					}
					lastPos, err := storage.NextID(ctx, tx, "stream", int64(n))
					if err != nil {
						return err
					}
					if firstNID == 0 {
						firstNID = lastN - int64(n) + 1
					}
					lastNID = lastN
					var vals []string
					var args []any
					for i := range n {
						k := done + i
						words := make([]string, 8)
						for j := range words {
							words[j] = word()
						}
						if k%10 == 3 {
							words[rng.IntN(8)] = commonWord
						}
						if k%(total/10) == 7 {
							words[rng.IntN(8)] = rareWord
						}
						body, _ := json.Marshal(strings.Join(words, " "))
						tp := tmpl[k%rooms]
						evID := fmt.Sprintf("$bench%d", k)
						raw := strings.Replace(tp.json, `"body":"template-body"`, `"body":`+string(body), 1)
						nid, pos := lastN-int64(n)+1+int64(i), lastPos-int64(n)+1+int64(i)
						p := len(args)
						vals = append(vals, fmt.Sprintf("($%d, $%d, $%d, 'm.room.message', $%d, 10, $%d, $%d, $%d, $%d)", p+1, p+2, p+3, p+4, p+5, p+6, p+7, p+8))
						args = append(args, nid, evID, tp.room.String(), alice.UserID.String(), base+int64(k)*1000, pos, tp.snapshot, raw)
					}
					_, err = tx.ExecContext(ctx, `INSERT INTO events (event_nid, event_id, room_id, type, sender, depth, origin_server_ts, stream_pos, snapshot_nid, json)
						VALUES `+strings.Join(vals, ", "), args...)
					return err
				})
				if err != nil {
					t.Fatalf("writing messages: %v", err)
				}
			}
			fillEvents := time.Since(t0)
			sizeBefore := indexBytes(t, db)
			t0 = time.Now()
			index := `INSERT INTO event_search (rowid, document, room_id, field)
				SELECT event_nid, json_extract(json, '$.content.body'), room_id, 'content.body' FROM events WHERE event_nid BETWEEN $1 AND $2`
			if engine == "postgres" {
				index = `INSERT INTO event_search (event_nid, vector, room_id, field)
					SELECT event_nid, to_tsvector('english', (json::jsonb) -> 'content' ->> 'body'), room_id, 'content.body' FROM events WHERE event_nid BETWEEN $1 AND $2`
			}
			for from := firstNID; from <= lastNID; from += 10000 {
				if err := db.WriteTx(ctx, func(tx *storage.Tx) error {
					_, err := tx.ExecContext(ctx, index, from, min(from+9999, lastNID))
					return err
				}); err != nil {
					t.Fatalf("indexing: %v", err)
				}
			}
			fillIndex := time.Since(t0)
			if engine == "postgres" {
				if _, err := db.ExecContext(ctx, `VACUUM ANALYZE event_search`); err != nil {
					t.Fatal(err)
				}
			}
			perMessage := float64(indexBytes(t, db)-sizeBefore) / float64(total)
			t.Logf("%s: %d messages written in %v, indexed in %v; index %.0f bytes per message",
				engine, total, fillEvents.Round(time.Second), fillIndex.Round(time.Second), perMessage)

			for _, tc := range []struct{ term, order string }{
				{rareWord, "rank"}, {rareWord, "recent"}, {commonWord, "rank"}, {commonWord, "recent"},
			} {
				var lat []time.Duration
				var count, results int
				for range runs {
					t0 := time.Now()
					resp, err := alice.Search(ctx, &mautrix.ReqSearch{SearchTerm: tc.term, OrderBy: tc.order})
					if err != nil {
						t.Fatal(err)
					}
					lat = append(lat, time.Since(t0))
					count, results = resp.Count, len(resp.Results)
				}
				slices.Sort(lat)
				t.Logf("%s: /search %q order %s: count %d, %d results; p50 %v p99 %v",
					engine, tc.term, tc.order, count, results,
					lat[len(lat)/2].Round(100*time.Microsecond), lat[len(lat)*99/100].Round(100*time.Microsecond))
			}
		})
	}
}

// indexBytes is the disk the full-text index takes: its tables on SQLite
// (dbstat), the table with its indexes and TOAST on PostgreSQL.
func indexBytes(t *testing.T, db *storage.DB) int64 {
	t.Helper()
	ctx := context.Background()
	q := `SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name LIKE 'event_search%'`
	if db.Dialect() == storage.Postgres {
		q = `SELECT pg_total_relation_size('event_search')`
	}
	var n int64
	if err := db.QueryRowContext(ctx, q).Scan(&n); err != nil {
		t.Fatalf("measuring the index: %v", err)
	}
	return n
}

// TestMeasureRelations reports the latency of a /relations page (50
// events) of a thread of 10,000 replies, sent through the real send path:
// the newest page and one from the middle of the thread. It only runs
// with MYELIN_MEASURE=1.
func TestMeasureRelations(t *testing.T) {
	if os.Getenv("MYELIN_MEASURE") == "" {
		t.Skip("set MYELIN_MEASURE=1 to measure")
	}
	replies, runs := 10000, 50
	if v := os.Getenv("MYELIN_MEASURE_REPLIES"); v != "" {
		replies, _ = strconv.Atoi(v)
	}
	if v := os.Getenv("MYELIN_MEASURE_RUNS"); v != "" {
		runs, _ = strconv.Atoi(v)
	}
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			srv := mxtest.Start(t, engine)
			alice := srv.Client("alice")
			created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
			if err != nil {
				t.Fatal(err)
			}
			root, err := alice.SendText(ctx, created.RoomID, "root")
			if err != nil {
				t.Fatal(err)
			}
			t0 := time.Now()
			for i := range replies {
				if _, err := alice.SendMessageEvent(ctx, created.RoomID, event.EventMessage, threadReply(root.EventID, fmt.Sprintf("reply %d", i))); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("%s: %d thread replies sent in %v", engine, replies, time.Since(t0).Round(time.Second))
			// The middle of the thread, as a token.
			// (pages of at most 1,000, the server's cap).
			mid := ""
			for seen := 0; seen < replies/2; {
				q := map[string]string{"limit": strconv.Itoa(min(1000, replies/2-seen))}
				if mid != "" {
					q["from"] = mid
				}
				p := getPage(t, alice, q, "v1", "rooms", created.RoomID, "relations", root.EventID)
				seen += len(p.Chunk)
				mid = p.NextBatch
			}
			for _, tc := range []struct {
				name  string
				query map[string]string
				path  []any
			}{
				{"newest page", map[string]string{"limit": "50"}, []any{"v1", "rooms", created.RoomID, "relations", root.EventID}},
				{"middle page", map[string]string{"limit": "50", "from": mid}, []any{"v1", "rooms", created.RoomID, "relations", root.EventID}},
				{"newest page, m.thread", map[string]string{"limit": "50"}, []any{"v1", "rooms", created.RoomID, "relations", root.EventID, "m.thread"}},
			} {
				var lat []time.Duration
				for range runs {
					t0 := time.Now()
					p := getPage(t, alice, tc.query, tc.path...)
					lat = append(lat, time.Since(t0))
					if len(p.Chunk) != 50 {
						t.Fatalf("%s: %d events, want 50", tc.name, len(p.Chunk))
					}
				}
				slices.Sort(lat)
				t.Logf("%s: /relations %s of %d: p50 %v p99 %v", engine, tc.name, replies,
					lat[len(lat)/2].Round(100*time.Microsecond), lat[len(lat)*99/100].Round(100*time.Microsecond))
			}
		})
	}
}
