package homeserver_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// relEvent is the part of a client event these tests read.
type relEvent struct {
	EventID  id.EventID `json:"event_id"`
	Sender   id.UserID  `json:"sender"`
	Unsigned struct {
		Relations struct {
			Thread *struct {
				Count        int      `json:"count"`
				Latest       relEvent `json:"latest_event"`
				Participated bool     `json:"current_user_participated"`
			} `json:"m.thread"`
			Replace *struct {
				EventID id.EventID `json:"event_id"`
			} `json:"m.replace"`
			Reference *struct {
				Chunk []struct {
					EventID id.EventID `json:"event_id"`
				} `json:"chunk"`
			} `json:"m.reference"`
		} `json:"m.relations"`
	} `json:"unsigned"`
}

// relPage is a /relations, /threads or /messages answer.
type relPage struct {
	Chunk          []relEvent `json:"chunk"`
	NextBatch      string     `json:"next_batch"`
	PrevBatch      string     `json:"prev_batch"`
	RecursionDepth int        `json:"recursion_depth"`
	End            string     `json:"end"`
}

func getPage(t *testing.T, cli *mautrix.Client, query map[string]string, path ...any) relPage {
	t.Helper()
	var p relPage
	u := cli.BuildURLWithQuery(mautrix.ClientURLPath(path), query)
	if _, err := cli.MakeRequest(context.Background(), "GET", u, nil, &p); err != nil {
		t.Fatalf("GET %v: %v", path, err)
	}
	return p
}

func ids(evs []relEvent) []id.EventID {
	out := make([]id.EventID, len(evs))
	for i, e := range evs {
		out[i] = e.EventID
	}
	return out
}

func send(t *testing.T, cli *mautrix.Client, roomID id.RoomID, content map[string]any) id.EventID {
	t.Helper()
	// Distinct origin_server_ts, which orders edits.
	time.Sleep(3 * time.Millisecond)
	resp, err := cli.SendMessageEvent(context.Background(), roomID, event.EventMessage, content)
	if err != nil {
		t.Fatalf("sending: %v", err)
	}
	return resp.EventID
}

func threadReply(root id.EventID, body string) map[string]any {
	return map[string]any{"msgtype": "m.text", "body": body,
		"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}}
}

// TestThreadsAcrossServers: a thread with replies from two servers looks
// the same to both users in /relations, /threads, /messages, /event and
// /sync (issue #13).
func TestThreadsAcrossServers(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Federation(t, engine, 2)
		alice, bob, carol := hs[0].Client("alice"), hs[1].Client("bob"), hs[1].Client("carol")
		roomID := publicRoom(t, alice, hs[0].Config.ServerName, bob, carol)
		root := send(t, alice, roomID, map[string]any{"msgtype": "m.text", "body": "root"})
		waitFor(t, "bob to see the root", func() (bool, error) {
			_, err := bob.GetEvent(ctx, roomID, root)
			return err == nil, err
		})
		r1 := send(t, alice, roomID, threadReply(root, "one"))
		waitFor(t, "bob to see alice's reply", func() (bool, error) {
			_, err := bob.GetEvent(ctx, roomID, r1)
			return err == nil, err
		})
		r2 := send(t, bob, roomID, threadReply(root, "two"))
		waitFor(t, "alice to see bob's reply", func() (bool, error) {
			_, err := alice.GetEvent(ctx, roomID, r2)
			return err == nil, err
		})
		checkThread := func(what string, who *mautrix.Client, root relEvent, participated bool) {
			t.Helper()
			th := root.Unsigned.Relations.Thread
			if th == nil {
				t.Fatalf("%s for %s: no bundled m.thread", what, who.UserID)
			}
			if th.Count != 2 || th.Latest.EventID != r2 || th.Participated != participated {
				t.Errorf("%s for %s: m.thread count %d latest %s participated %v, want 2 %s %v",
					what, who.UserID, th.Count, th.Latest.EventID, th.Participated, r2, participated)
			}
		}
		for _, c := range []*mautrix.Client{alice, bob, carol} {
			participated := c != carol
			p := getPage(t, c, nil, "v1", "rooms", roomID, "relations", root)
			if got := ids(p.Chunk); !slices.Equal(got, []id.EventID{r2, r1}) {
				t.Errorf("/relations for %s: %v, want %v", c.UserID, got, []id.EventID{r2, r1})
			}
			th := getPage(t, c, nil, "v1", "rooms", roomID, "threads")
			if len(th.Chunk) != 1 || th.Chunk[0].EventID != root {
				t.Fatalf("/threads for %s: %v, want [%s]", c.UserID, ids(th.Chunk), root)
			}
			checkThread("/threads", c, th.Chunk[0], participated)
			mine := getPage(t, c, map[string]string{"include": "participated"}, "v1", "rooms", roomID, "threads")
			if want := map[bool]int{true: 1, false: 0}[participated]; len(mine.Chunk) != want {
				t.Errorf("/threads?include=participated for %s: %d roots, want %d", c.UserID, len(mine.Chunk), want)
			}
			var ev relEvent
			if _, err := c.MakeRequest(ctx, "GET", c.BuildClientURL("v3", "rooms", roomID, "event", root), nil, &ev); err != nil {
				t.Fatal(err)
			}
			checkThread("/event", c, ev, participated)
			msgs := getPage(t, c, map[string]string{"dir": "b", "limit": "50"}, "v3", "rooms", roomID, "messages")
			i := slices.Index(ids(msgs.Chunk), root)
			if i < 0 {
				t.Fatalf("/messages for %s lacks the root", c.UserID)
			}
			checkThread("/messages", c, msgs.Chunk[i], participated)
			var sync struct {
				Rooms struct {
					Join map[id.RoomID]struct {
						Timeline struct {
							Events []relEvent `json:"events"`
						} `json:"timeline"`
					} `json:"join"`
				} `json:"rooms"`
			}
			u := c.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "sync"}, map[string]string{"filter": `{"room":{"timeline":{"limit":50}}}`})
			if _, err := c.MakeRequest(ctx, "GET", u, nil, &sync); err != nil {
				t.Fatal(err)
			}
			tl := sync.Rooms.Join[roomID].Timeline.Events
			if i = slices.Index(ids(tl), root); i < 0 {
				t.Fatalf("/sync for %s lacks the root: %v", c.UserID, ids(tl))
			}
			checkThread("/sync", c, tl[i], participated)
		}
	})
}

// TestEditsBundled: the latest valid edit is bundled as m.replace; an edit
// by another user is ignored; a redacted edit falls back to the one
// before it.
func TestEditsBundled(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice, bob := srv.Client("alice"), srv.Client("bob")
		roomID := publicRoom(t, alice, "", bob)
		orig := send(t, alice, roomID, map[string]any{"msgtype": "m.text", "body": "orig"})
		edit := func(cli *mautrix.Client, body string) id.EventID {
			return send(t, cli, roomID, map[string]any{"msgtype": "m.text", "body": "* " + body,
				"m.new_content": map[string]any{"msgtype": "m.text", "body": body},
				"m.relates_to":  map[string]any{"rel_type": "m.replace", "event_id": orig}})
		}
		replaced := func() id.EventID {
			t.Helper()
			var ev relEvent
			if _, err := alice.MakeRequest(ctx, "GET", alice.BuildClientURL("v3", "rooms", roomID, "event", orig), nil, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Unsigned.Relations.Replace == nil {
				return ""
			}
			return ev.Unsigned.Relations.Replace.EventID
		}
		e1 := edit(alice, "one")
		e2 := edit(alice, "two")
		bobs := edit(bob, "not yours")
		if got := replaced(); got != e2 {
			t.Errorf("m.replace is %q, want alice's latest edit %s", got, e2)
		}
		if _, err := alice.RedactEvent(ctx, roomID, e2); err != nil {
			t.Fatal(err)
		}
		if got := replaced(); got != e1 {
			t.Errorf("after redacting the latest edit, m.replace is %q, want %s", got, e1)
		}
		// A redacted relation leaves /relations too.
		p := getPage(t, alice, nil, "v1", "rooms", roomID, "relations", orig, "m.replace")
		if got := ids(p.Chunk); !slices.Equal(got, []id.EventID{bobs, e1}) {
			t.Errorf("/relations after the redaction: %v, want %v", got, []id.EventID{bobs, e1})
		}
		ref := send(t, bob, roomID, map[string]any{"msgtype": "m.text", "body": "see above",
			"m.relates_to": map[string]any{"rel_type": "m.reference", "event_id": orig}})
		var ev relEvent
		if _, err := bob.MakeRequest(ctx, "GET", bob.BuildClientURL("v3", "rooms", roomID, "event", orig), nil, &ev); err != nil {
			t.Fatal(err)
		}
		if r := ev.Unsigned.Relations.Reference; r == nil || len(r.Chunk) != 1 || r.Chunk[0].EventID != ref {
			t.Errorf("m.reference is %+v, want [%s]", r, ref)
		}
	})
}

// TestRelationsPagination: /relations pages in both directions with
// next_batch tokens, filters by type, follows relations of relations with
// recurse, and hides a parent the user cannot see.
func TestRelationsPagination(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		srv := mxtest.Start(t, engine)
		alice, bob := srv.Client("alice"), srv.Client("bob")
		roomID := publicRoom(t, alice, "", bob)
		root := send(t, alice, roomID, map[string]any{"msgtype": "m.text", "body": "root"})
		var replies []id.EventID
		for i := range 5 {
			replies = append(replies, send(t, bob, roomID, threadReply(root, fmt.Sprint(i))))
		}
		path := []any{"v1", "rooms", roomID, "relations", root}
		walk := func(dir string) []id.EventID {
			var got []id.EventID
			q := map[string]string{"dir": dir, "limit": "2"}
			for range 10 {
				p := getPage(t, alice, q, path...)
				got = append(got, ids(p.Chunk)...)
				if p.NextBatch == "" {
					return got
				}
				if q["from"] != "" && p.PrevBatch != q["from"] {
					t.Errorf("prev_batch %q, want the from token %q", p.PrevBatch, q["from"])
				}
				q = map[string]string{"dir": dir, "limit": "2", "from": p.NextBatch}
			}
			t.Fatalf("dir=%s: pagination does not end", dir)
			return nil
		}
		if got := walk("f"); !slices.Equal(got, replies) {
			t.Errorf("dir=f: %v, want %v", got, replies)
		}
		back := slices.Clone(replies)
		slices.Reverse(back)
		if got := walk("b"); !slices.Equal(got, back) {
			t.Errorf("dir=b: %v, want %v", got, back)
		}

		// A reaction to a reply is a relation of a relation.
		reaction, err := alice.SendMessageEvent(context.Background(), roomID, event.EventReaction, map[string]any{
			"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": replies[0], "key": "👍"}})
		if err != nil {
			t.Fatal(err)
		}
		flat := getPage(t, alice, map[string]string{"limit": "50"}, path...)
		if slices.Contains(ids(flat.Chunk), reaction.EventID) {
			t.Errorf("without recurse, /relations has the reaction to a reply")
		}
		deep := getPage(t, alice, map[string]string{"limit": "50", "recurse": "true"}, path...)
		if !slices.Contains(ids(deep.Chunk), reaction.EventID) || len(deep.Chunk) != 6 || deep.RecursionDepth != 3 {
			t.Errorf("recurse: %v (depth %d), want the 5 replies and the reaction, depth 3", ids(deep.Chunk), deep.RecursionDepth)
		}
		annotations := getPage(t, alice, map[string]string{"recurse": "true"}, append(path, "m.annotation", "m.reaction")...)
		if !slices.Equal(ids(annotations.Chunk), []id.EventID{reaction.EventID}) {
			t.Errorf("recurse with rel_type m.annotation: %v, want [%s]", ids(annotations.Chunk), reaction.EventID)
		}
		threadOnly := getPage(t, alice, map[string]string{"limit": "50"}, append(path, "m.thread")...)
		if len(threadOnly.Chunk) != 5 {
			t.Errorf("/relations/…/m.thread: %d events, want 5", len(threadOnly.Chunk))
		}

		// A redacted parent keeps its relations.
		if _, err := alice.RedactEvent(context.Background(), roomID, root); err != nil {
			t.Fatal(err)
		}
		if p := getPage(t, alice, map[string]string{"limit": "50"}, append(path, "m.thread")...); len(p.Chunk) != 5 {
			t.Errorf("after redacting the parent, /relations has %d events, want 5", len(p.Chunk))
		}

		// An unknown parent is 404.
		u := alice.BuildClientURL("v1", "rooms", roomID, "relations", "$nope")
		_, err = alice.MakeRequest(context.Background(), "GET", u, nil, nil)
		var herr mautrix.HTTPError
		if !asHTTP(err, &herr) || herr.Response.StatusCode != 404 {
			t.Errorf("unknown parent: %v, want 404", err)
		}
	})
}

func asHTTP(err error, out *mautrix.HTTPError) bool {
	h, ok := err.(mautrix.HTTPError)
	if ok {
		*out = h
	}
	return ok
}
