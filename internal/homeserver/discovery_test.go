package homeserver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

func getJSON(t *testing.T, url string, into any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if into != nil {
		if err := json.Unmarshal(raw, into); err != nil {
			t.Fatalf("GET %s: %v in %q", url, err, raw)
		}
	}
	return resp.StatusCode
}

func TestDiscoveryAndHealth(t *testing.T) {
	srv := mxtest.Start(t, "sqlite", func(c *config.Config) { c.PublicBaseURL = "https://matrix.example.org/" })
	var versions struct{ Versions []string }
	if getJSON(t, srv.URL+"/_matrix/client/versions", &versions) != 200 || len(versions.Versions) == 0 {
		t.Fatalf("versions = %v", versions)
	}
	var wk map[string]map[string]string
	if getJSON(t, srv.URL+"/.well-known/matrix/client", &wk) != 200 || wk["m.homeserver"]["base_url"] != "https://matrix.example.org" {
		t.Fatalf("well-known = %v", wk)
	}
	resp, err := http.Get(srv.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "OK" {
		t.Fatalf("/health = %d %q", resp.StatusCode, body)
	}
	cli := srv.Client("alice")
	caps, err := cli.Capabilities(context.Background())
	if err != nil || caps.RoomVersions == nil || caps.RoomVersions.Default != "12" {
		t.Fatalf("capabilities = %+v, %v", caps, err)
	}
	// matrix-js-sdk will not start syncing without push rules.
	rules, err := cli.GetPushRules(context.Background())
	if err != nil || len(rules.Override) == 0 || len(rules.Underride) == 0 {
		t.Fatalf("push rules = %+v, %v", rules, err)
	}
}

func TestFiltersR0AndForwardPagination(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		srv := mxtest.Start(t, engine)
		alice := srv.Client("alice")
		created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 6 {
			if _, err := alice.SendText(ctx, created.RoomID, fmt.Sprintf("n%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		limit := 2
		f, err := alice.CreateFilter(ctx, &mautrix.Filter{Room: &mautrix.RoomFilter{Timeline: &mautrix.FilterPart{
			Limit: limit, Types: []event.Type{event.EventMessage}}}})
		if err != nil {
			t.Fatal(err)
		}
		var back mautrix.Filter
		_, err = alice.MakeRequest(ctx, http.MethodGet, alice.BuildClientURL("v3", "user", alice.UserID, "filter", f.FilterID), nil, &back)
		if err != nil || back.Room.Timeline.Limit != 2 {
			t.Fatalf("stored filter = %+v, %v", back, err)
		}
		resp, err := alice.SyncRequest(ctx, 0, "", f.FilterID, false, "")
		if err != nil {
			t.Fatal(err)
		}
		tl := resp.Rooms.Join[created.RoomID].Timeline
		if len(tl.Events) != 2 || tl.Events[1].Content.Raw["body"] != "n5" || !tl.Limited {
			t.Fatalf("filtered timeline = %d events, limited %v", len(tl.Events), tl.Limited)
		}
		// Paginate forwards from the start of the room over r0.
		alice.Client = &http.Client{}
		r0 := alice.BuildURLWithQuery(mautrix.ClientURLPath{"r0", "rooms", created.RoomID, "messages"}, map[string]string{"dir": "f", "limit": "100"})
		var page mautrix.RespMessages
		if _, err := alice.MakeRequest(ctx, http.MethodGet, r0, nil, &page); err != nil {
			t.Fatalf("r0 messages: %v", err)
		}
		var bodies []string
		for _, ev := range page.Chunk {
			if ev.Type == event.EventMessage {
				bodies = append(bodies, ev.Content.Raw["body"].(string))
			}
		}
		if fmt.Sprint(bodies) != "[n0 n1 n2 n3 n4 n5]" || page.Chunk[0].Type != event.StateCreate {
			t.Fatalf("forward pagination = %v (first %s)", bodies, page.Chunk[0].Type)
		}
	})
}
