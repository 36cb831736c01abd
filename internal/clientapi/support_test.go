package clientapi_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

// TestWellknownSupport checks GET /.well-known/matrix/support: 404 with
// nothing configured, the contacts and page otherwise.
func TestWellknownSupport(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		get := func(s *mxtest.Server) (int, map[string]any) {
			t.Helper()
			resp, err := http.Get(s.URL + "/.well-known/matrix/support")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				t.Fatalf("status %d, body is not JSON: %v", resp.StatusCode, err)
			}
			return resp.StatusCode, out
		}
		st, body := get(mxtest.Start(t, engine))
		acctWantErr(t, "unconfigured", st, body, 404, "M_NOT_FOUND")

		s := mxtest.Start(t, engine, func(c *config.Config) {
			c.Support = config.Support{
				Contacts: []config.SupportContact{
					{MatrixID: "@admin:localhost", EmailAddress: "admin@example.org", Role: "m.role.admin"},
					{EmailAddress: "security@example.org", Role: "m.role.security"},
				},
				SupportPage: "https://example.org/support",
			}
		})
		st, body = get(s)
		raw, _ := json.Marshal(body)
		want := `{"contacts":[{"email_address":"admin@example.org","matrix_id":"@admin:localhost","role":"m.role.admin"},{"email_address":"security@example.org","role":"m.role.security"}],"support_page":"https://example.org/support"}`
		if st != 200 || string(raw) != want {
			t.Errorf("support: %d %s\nwant %s", st, raw, want)
		}

		page := mxtest.Start(t, engine, func(c *config.Config) { c.Support.SupportPage = "https://example.org/help" })
		st, body = get(page)
		if st != 200 || body["support_page"] != "https://example.org/help" || body["contacts"] != nil {
			t.Errorf("page only: %d %v", st, body)
		}
	})
}
