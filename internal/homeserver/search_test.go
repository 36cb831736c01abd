package homeserver_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// searchIDs returns the event IDs of a page of results, in order.
func searchIDs(resp *mautrix.RespSearch) []id.EventID {
	var out []id.EventID
	for _, r := range resp.Results {
		out = append(out, r.Event.ID)
	}
	return out
}

func doSearch(t *testing.T, cli *mautrix.Client, req *mautrix.ReqSearch) *mautrix.RespSearch {
	t.Helper()
	resp, err := cli.Search(context.Background(), req)
	if err != nil {
		t.Fatalf("searching %q as %s: %v", req.SearchTerm, cli.UserID, err)
	}
	if resp == nil {
		t.Fatalf("searching %q: no room_events in the answer", req.SearchTerm)
	}
	return resp
}

// searchAll pages through every result with next_batch.
func searchAll(t *testing.T, cli *mautrix.Client, req mautrix.ReqSearch) []id.EventID {
	t.Helper()
	var all []id.EventID
	for range 50 {
		resp := doSearch(t, cli, &req)
		all = append(all, searchIDs(resp)...)
		if resp.NextBatch == "" {
			return all
		}
		req.NextBatch = resp.NextBatch
	}
	t.Fatalf("searching %q: next_batch never ends", req.SearchTerm)
	return nil
}

func sendText(t *testing.T, cli *mautrix.Client, roomID id.RoomID, body string) id.EventID {
	t.Helper()
	return send(t, cli, roomID, map[string]any{"msgtype": "m.text", "body": body})
}

// TestSearchRoomEvents: words are found across the user's rooms, in rank
// and recent order, page by page, with highlights, count, groups, context
// with profiles and room state; rooms the user never joined give nothing
// (issue #13).
func TestSearchRoomEvents(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice, bob, carol := srv.Client("alice"), srv.Client("bob"), srv.Client("carol")
		if err := alice.SetDisplayName(ctx, "Alice Liddell"); err != nil {
			t.Fatal(err)
		}
		r1 := publicRoom(t, alice, "", bob)
		r2 := publicRoom(t, bob, "", alice)
		secret := publicRoom(t, carol, "")
		sendText(t, carol, secret, "the fox of carol's room")
		a1 := sendText(t, alice, r1, "the quick brown fox")
		b1 := sendText(t, bob, r1, "nothing to see here")
		a2 := sendText(t, alice, r2, "foxes are running fox fox")
		b2 := sendText(t, bob, r2, "a fox in the henhouse")
		a3 := sendText(t, alice, r1, "after the fox")

		req := mautrix.ReqSearch{SearchTerm: "fox", Keys: []string{"content.body"}}
		rank := doSearch(t, alice, &req)
		got := searchIDs(rank)
		if want := []id.EventID{a1, a2, b2, a3}; !sameSet(got, want) {
			t.Fatalf("rank results %v, want %v (in any order)", got, want)
		}
		if got[0] != a2 {
			t.Errorf("rank order %v: the message saying fox three times should come first", got)
		}
		if rank.Count != 4 {
			t.Errorf("count %d, want 4", rank.Count)
		}
		for i := 1; i < len(rank.Results); i++ {
			if rank.Results[i].Rank > rank.Results[i-1].Rank {
				t.Errorf("rank %v after %v", rank.Results[i].Rank, rank.Results[i-1].Rank)
			}
		}
		if !slices.Contains(rank.Highlights, "fox") || !slices.Contains(rank.Highlights, "foxes") {
			t.Errorf("highlights %v, want fox and foxes", rank.Highlights)
		}

		req.OrderBy = "recent"
		if got, want := searchIDs(doSearch(t, alice, &req)), []id.EventID{a3, b2, a2, a1}; !slices.Equal(got, want) {
			t.Errorf("recent results %v, want %v", got, want)
		}
		// One per page, through next_batch, in both orders.
		for _, order := range []string{"recent", "rank"} {
			paged := req
			paged.OrderBy = order
			paged.Filter = &mautrix.FilterPart{Limit: 1}
			all := searchAll(t, alice, paged)
			full := paged
			full.Filter = nil
			if want := searchIDs(doSearch(t, alice, &full)); !slices.Equal(all, want) {
				t.Errorf("%s order paged one by one: %v, want %v", order, all, want)
			}
		}

		// The filter narrows rooms and senders.
		narrowed := req
		narrowed.Filter = &mautrix.FilterPart{Rooms: []id.RoomID{r2}, Senders: []id.UserID{bob.UserID}}
		if got := searchIDs(doSearch(t, alice, &narrowed)); !slices.Equal(got, []id.EventID{b2}) {
			t.Errorf("bob's results in r2: %v, want %v", got, []id.EventID{b2})
		}
		// Carol's room is not alice's: nothing of it, under any key.
		carolReq := mautrix.ReqSearch{SearchTerm: "carol"}
		if got := doSearch(t, alice, &carolReq); len(got.Results) != 0 || got.Count != 0 {
			t.Errorf("alice found %v (count %d) in a room she never joined", searchIDs(got), got.Count)
		}
		_ = b1

		// Groups by room and sender.
		grouped := req
		grouped.Groupings = mautrix.SearchGroupings{GroupBy: []mautrix.SearchGroup{{Key: "room_id"}, {Key: "sender"}}}
		g := doSearch(t, alice, &grouped)
		if got := g.Groups["room_id"][r1.String()].Results; !slices.Equal(got, []string{a3.String(), a1.String()}) {
			t.Errorf("room group r1: %v, want [%s %s]", got, a3, a1)
		}
		if got := g.Groups["room_id"][r2.String()].Results; !slices.Equal(got, []string{b2.String(), a2.String()}) {
			t.Errorf("room group r2: %v, want [%s %s]", got, b2, a2)
		}
		if got := g.Groups["sender"][bob.UserID.String()].Results; !slices.Equal(got, []string{b2.String()}) {
			t.Errorf("sender group bob: %v, want [%s]", got, b2)
		}
		if o1, o2 := g.Groups["room_id"][r1.String()].Order, g.Groups["room_id"][r2.String()].Order; o1 >= o2 {
			t.Errorf("group orders r1 %d, r2 %d: r1 holds the newest result", o1, o2)
		}
		// A group's next_batch pages within the group.
		byRoom := grouped
		byRoom.Filter = &mautrix.FilterPart{Limit: 1}
		first := doSearch(t, alice, &byRoom)
		nb := first.Groups["room_id"][r1.String()].NextBatch
		if nb == "" {
			t.Fatalf("no next_batch in r1's group: %+v", first.Groups)
		}
		byRoom.NextBatch = nb
		if got := searchIDs(doSearch(t, alice, &byRoom)); !slices.Equal(got, []id.EventID{a1}) {
			t.Errorf("r1's group, page 2: %v, want [%s]", got, a1)
		}

		// Context with profiles, and state.
		var raw struct {
			SearchCategories struct {
				RoomEvents struct {
					Results []struct {
						Result struct {
							EventID id.EventID `json:"event_id"`
						} `json:"result"`
						Context struct {
							Start, End   string
							EventsBefore []struct {
								EventID id.EventID `json:"event_id"`
							} `json:"events_before"`
							EventsAfter []struct {
								EventID id.EventID `json:"event_id"`
							} `json:"events_after"`
							ProfileInfo map[id.UserID]struct {
								DisplayName string `json:"displayname"`
							} `json:"profile_info"`
						} `json:"context"`
					} `json:"results"`
					State map[id.RoomID][]struct {
						Type string `json:"type"`
					} `json:"state"`
				} `json:"room_events"`
			} `json:"search_categories"`
		}
		body := map[string]any{"search_categories": map[string]any{"room_events": map[string]any{
			"search_term": "quick", "include_state": true,
			"event_context": map[string]any{"before_limit": 1, "after_limit": 1, "include_profile": true},
		}}}
		if _, err := alice.MakeRequest(ctx, http.MethodPost, alice.BuildClientURL("v3", "search"), body, &raw); err != nil {
			t.Fatal(err)
		}
		res := raw.SearchCategories.RoomEvents.Results
		if len(res) != 1 || res[0].Result.EventID != a1 {
			t.Fatalf("results for quick: %+v, want %s", res, a1)
		}
		c := res[0].Context
		if len(c.EventsAfter) != 1 || c.EventsAfter[0].EventID != b1 || len(c.EventsBefore) != 1 || c.Start == "" || c.End == "" {
			t.Errorf("context %+v: want one event before, %s after, and tokens", c, b1)
		}
		if c.ProfileInfo[alice.UserID].DisplayName != "Alice Liddell" {
			t.Errorf("profile_info %+v: want alice's display name", c.ProfileInfo)
		}
		if _, ok := c.ProfileInfo[bob.UserID]; !ok {
			t.Errorf("profile_info %+v: want bob, who sent the event after", c.ProfileInfo)
		}
		st := raw.SearchCategories.RoomEvents.State[r1]
		if !slices.ContainsFunc(st, func(e struct {
			Type string `json:"type"`
		}) bool {
			return e.Type == "m.room.create"
		}) {
			t.Errorf("state of r1: %+v, want its create event", st)
		}
		// The context's tokens page on in /messages.
		if _, err := alice.Messages(ctx, r1, c.End, "", mautrix.DirectionForward, nil, 10); err != nil {
			t.Errorf("paging on from the context's end: %v", err)
		}

		// Room names and topics are found under their keys.
		if _, err := alice.SendStateEvent(ctx, r1, event.StateRoomName, "", map[string]any{"name": "Vulpine Lounge"}); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.SendStateEvent(ctx, r1, event.StateTopic, "", map[string]any{"topic": "all about vulpine things"}); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			keys []string
			want int
		}{{nil, 2}, {[]string{"content.name"}, 1}, {[]string{"content.topic"}, 1}, {[]string{"content.body"}, 0}} {
			if got := doSearch(t, alice, &mautrix.ReqSearch{SearchTerm: "vulpine", Keys: tc.keys}); len(got.Results) != tc.want {
				t.Errorf("vulpine under keys %v: %d results, want %d", tc.keys, len(got.Results), tc.want)
			}
		}
	})
}

// TestSearchVisibility: a user finds nothing from before they joined a
// room whose history is visible to joined members only, and nothing sent
// after they left (issue #13).
func TestSearchVisibility(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice, bob := srv.Client("alice"), srv.Client("bob")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat",
			InitialState: []*event.Event{{Type: event.StateHistoryVisibility, StateKey: new(string),
				Content: event.Content{Raw: map[string]any{"history_visibility": "joined"}}}}})
		if err != nil {
			t.Fatal(err)
		}
		roomID := created.RoomID
		sendText(t, alice, roomID, "apple before bob")
		if _, err := bob.JoinRoomByID(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		during := sendText(t, alice, roomID, "apple while bob is here")
		if _, err := bob.LeaveRoom(ctx, roomID); err != nil {
			t.Fatal(err)
		}
		sendText(t, alice, roomID, "apple after bob left")
		req := mautrix.ReqSearch{SearchTerm: "apple", OrderBy: "recent"}
		if got := searchIDs(doSearch(t, bob, &req)); !slices.Equal(got, []id.EventID{during}) {
			t.Errorf("bob found %v, want only %s", got, during)
		}
		if got := searchIDs(doSearch(t, alice, &req)); len(got) != 3 {
			t.Errorf("alice found %v, want all three", got)
		}
	})
}

// TestSearchRedactionsAndEdits: a redacted message is no longer found; an
// edit is found by its own content.body, as Synapse indexes it, and the
// original by its words, with the edit bundled; encrypted events have
// nothing to find (issue #13).
func TestSearchRedactionsAndEdits(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice := srv.Client("alice")
		roomID := publicRoom(t, alice, "")
		gone := sendText(t, alice, roomID, "banana split")
		if _, err := alice.RedactEvent(ctx, roomID, gone); err != nil {
			t.Fatal(err)
		}
		if got := doSearch(t, alice, &mautrix.ReqSearch{SearchTerm: "banana"}); len(got.Results) != 0 || got.Count != 0 {
			t.Errorf("redacted message still found: %v (count %d)", searchIDs(got), got.Count)
		}

		orig := sendText(t, alice, roomID, "cherry pie")
		edit := send(t, alice, roomID, map[string]any{"msgtype": "m.text", "body": "* cherry tart",
			"m.new_content": map[string]any{"msgtype": "m.text", "body": "cherry tart"},
			"m.relates_to":  map[string]any{"rel_type": "m.replace", "event_id": orig}})
		if got := searchIDs(doSearch(t, alice, &mautrix.ReqSearch{SearchTerm: "tart"})); !slices.Equal(got, []id.EventID{edit}) {
			t.Errorf("tart found %v, want the edit %s", got, edit)
		}
		pie := doSearch(t, alice, &mautrix.ReqSearch{SearchTerm: "pie"})
		if got := searchIDs(pie); !slices.Equal(got, []id.EventID{orig}) {
			t.Fatalf("pie found %v, want the original %s", got, orig)
		}
		if r := pie.Results[0].Event.Unsigned.Relations; r.GetLatestEdit() == nil || r.GetLatestEdit().ID != edit {
			t.Errorf("original's bundled m.replace: %+v, want %s", r, edit)
		}

		if _, err := alice.SendMessageEvent(ctx, roomID, event.EventEncrypted, map[string]any{
			"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "grape", "body": "grape"}); err != nil {
			t.Fatal(err)
		}
		if got := doSearch(t, alice, &mautrix.ReqSearch{SearchTerm: "grape"}); len(got.Results) != 0 {
			t.Errorf("an encrypted event was found: %v", searchIDs(got))
		}
	})
}

// TestSearchBadInput: malformed criteria get 400 with the spec's codes.
func TestSearchBadInput(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice := srv.Client("alice")
		publicRoom(t, alice, "")
		re := func(m map[string]any) map[string]any {
			return map[string]any{"search_categories": map[string]any{"room_events": m}}
		}
		for _, tc := range []struct {
			name  string
			query map[string]string
			body  any
			code  string
		}{
			{"no categories", nil, map[string]any{}, "M_MISSING_PARAM"},
			{"unknown category", nil, map[string]any{"search_categories": map[string]any{"rooms": map[string]any{}}}, "M_INVALID_PARAM"},
			{"no search term", nil, re(map[string]any{}), "M_MISSING_PARAM"},
			{"bad key", nil, re(map[string]any{"search_term": "x", "keys": []string{"content.url"}}), "M_INVALID_PARAM"},
			{"bad order", nil, re(map[string]any{"search_term": "x", "order_by": "oldest"}), "M_INVALID_PARAM"},
			{"bad group", nil, re(map[string]any{"search_term": "x", "groupings": map[string]any{"group_by": []any{map[string]any{"key": "type"}}}}), "M_INVALID_PARAM"},
			{"bad filter", nil, re(map[string]any{"search_term": "x", "filter": map[string]any{"rooms": []string{"not a room"}}}), "M_BAD_JSON"},
			{"filter of the wrong type", nil, re(map[string]any{"search_term": "x", "filter": 5}), "M_BAD_JSON"},
			{"negative context", nil, re(map[string]any{"search_term": "x", "event_context": map[string]any{"before_limit": -1}}), "M_INVALID_PARAM"},
			{"bad next_batch", map[string]string{"next_batch": "!!!"}, re(map[string]any{"search_term": "x"}), "M_INVALID_PARAM"},
			{"next_batch of the other order", map[string]string{"next_batch": "eyJyIjp0cnVlfQ"}, re(map[string]any{"search_term": "x"}), "M_INVALID_PARAM"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := alice.MakeRequest(ctx, http.MethodPost, alice.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "search"}, tc.query), tc.body, nil)
				var herr mautrix.HTTPError
				if !errors.As(err, &herr) || herr.RespError == nil || herr.Response.StatusCode != 400 || herr.RespError.ErrCode != tc.code {
					t.Errorf("got %v, want 400 %s", err, tc.code)
				}
			})
		}
		// Terms that are only operators or stop words find nothing, without error.
		for _, term := range []string{"", "-", "or", "the", `""`, `"-"`, "AND OR NOT", "*", "NEAR(a b)", "a:b", "\u0301", `"\u0301 \u0301"`, "_", "a-", "--x", strings.Repeat("word ", 5000)} {
			if _, err := alice.Search(ctx, &mautrix.ReqSearch{SearchTerm: term}); err != nil {
				t.Errorf("search %q: %v", term, err)
			}
		}
	})
}

func sameSet(a, b []id.EventID) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestSearchTermSyntax: search terms take phrases, exclusions and "or",
// as Synapse's (and websearch_to_tsquery's) syntax has them, and stemmed
// words match, the same on both engines.
func TestSearchTermSyntax(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		srv := mxtest.Start(t, engine)
		alice := srv.Client("alice")
		roomID := publicRoom(t, alice, "")
		pie := sendText(t, alice, roomID, "red apple pie")
		green := sendText(t, alice, roomID, "green apples")
		cherry := sendText(t, alice, roomID, "red cherry")
		for _, tc := range []struct {
			term string
			want []id.EventID
		}{
			{"apple", []id.EventID{pie, green}},
			{"APPLES", []id.EventID{pie, green}},
			{"red apple", []id.EventID{pie}},
			{`"apple pie"`, []id.EventID{pie}},
			{`"pie apple"`, nil},
			{"apple -green", []id.EventID{pie}},
			{`red -"apple pie"`, []id.EventID{cherry}},
			{"cherry or green", []id.EventID{green, cherry}},
			{"cherry OR green OR", []id.EventID{green, cherry}},
			{"-green", nil},
			{"the apple", []id.EventID{pie, green}},
			{"red, cherry!", []id.EventID{cherry}},
		} {
			got := searchIDs(doSearch(t, alice, &mautrix.ReqSearch{SearchTerm: tc.term}))
			if !sameSet(got, tc.want) {
				t.Errorf("search %q: %v, want %v", tc.term, got, tc.want)
			}
		}
	})
}
