package homeserver_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

const previewPage = `<!doctype html><html><head>
<meta property="og:title" content="Myelin test page">
<meta property="og:description" content="A page served on loopback">
<meta property="og:site_name" content="Loopback">
<meta property="og:type" content="website">
<title>ignored</title></head><body>hello</body></html>`

// countingSite serves previewPage on addr (127.0.0.1:0 when empty) and
// counts the requests it gets.
func countingSite(t *testing.T, addr string, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, previewPage)
		}
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		h(w, r)
	}))
	if addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("cannot listen on %s: %v", addr, err)
		}
		srv.Listener.Close()
		srv.Listener = ln
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &hits
}

func previewing(whitelist ...string) mxtest.Option {
	return func(c *config.Config) {
		c.URLPreview.Enabled = true
		c.URLPreview.IPRangeWhitelist = whitelist
	}
}

func previewErr(t *testing.T, err error) (int, string) {
	t.Helper()
	var he mautrix.HTTPError
	if !errors.As(err, &he) || he.RespError == nil {
		t.Fatalf("want a Matrix error, got %v", err)
	}
	return he.Response.StatusCode, he.RespError.ErrCode
}

func TestURLPreviewAllowlisted(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		site, hits := countingSite(t, "", nil)
		srv := mxtest.Start(t, engine, previewing("127.0.0.0/8"))
		alice := srv.Client("alice")
		ctx := context.Background()

		p, err := alice.GetURLPreview(ctx, site.URL+"/post")
		if err != nil {
			t.Fatalf("preview of an allowlisted page: %v", err)
		}
		if p.Title != "Myelin test page" || p.Description != "A page served on loopback" || p.SiteName != "Loopback" || p.Type != "website" {
			t.Errorf("preview = %+v", p)
		}
		if p.ImageURL != "" {
			t.Errorf("og:image = %q without a page image", p.ImageURL)
		}
		// Cached: a second ask, by another user and on the legacy path,
		// does not fetch again.
		if _, err := alice.GetURLPreview(ctx, site.URL+"/post"); err != nil {
			t.Fatal(err)
		}
		bob := srv.Client("bob")
		status, _ := do(t, "GET", srv.URL+"/_matrix/media/v3/preview_url?url="+site.URL+"/post&ts=1510610716656", bob.AccessToken, nil)
		if status != http.StatusOK {
			t.Errorf("legacy preview_url: HTTP %d", status)
		}
		if n := hits.Load(); n != 1 {
			t.Errorf("three previews fetched the page %d times, want 1", n)
		}

		// No token: 401 on both paths.
		for _, path := range []string{"/_matrix/client/v1/media/preview_url", "/_matrix/media/r0/preview_url"} {
			if status, eb := do(t, "GET", srv.URL+path+"?url="+site.URL, "", nil); status != http.StatusUnauthorized || eb.Errcode != "M_MISSING_TOKEN" {
				t.Errorf("%s without token: HTTP %d %s, want 401 M_MISSING_TOKEN", path, status, eb.Errcode)
			}
		}
		// Bad parameters.
		for q, want := range map[string]string{"": "M_MISSING_PARAM", "?url=ftp://x.org/": "M_INVALID_PARAM", "?url=" + site.URL + "&ts=soon": "M_INVALID_PARAM"} {
			if status, eb := do(t, "GET", srv.URL+"/_matrix/client/v1/media/preview_url"+q, alice.AccessToken, nil); status != 400 || eb.Errcode != want {
				t.Errorf("preview_url%s: HTTP %d %s, want 400 %s", q, status, eb.Errcode, want)
			}
		}
	})
}

func TestURLPreviewRefusedByDefault(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		site, hits := countingSite(t, "", nil)
		_, port, _ := net.SplitHostPort(site.Listener.Addr().String())
		srv := mxtest.Start(t, engine, previewing())
		alice := srv.Client("alice")
		ctx := context.Background()
		for _, c := range []struct {
			url    string
			status int
		}{
			{site.URL, http.StatusForbidden},                          // 127.0.0.1
			{"http://10.0.0.1/", http.StatusForbidden},                // refused before any packet
			{"http://[::1]:" + port + "/", http.StatusForbidden},      // IPv6 loopback
			{"http://localhost:" + port + "/", http.StatusBadGateway}, // a name resolving to loopback
		} {
			_, err := alice.GetURLPreview(ctx, c.url)
			if err == nil {
				t.Errorf("preview of %s succeeded, want refusal", c.url)
				continue
			}
			if status, code := previewErr(t, err); status != c.status || code != "M_UNKNOWN" {
				t.Errorf("preview of %s: HTTP %d %s, want %d M_UNKNOWN", c.url, status, code, c.status)
			}
		}
		if n := hits.Load(); n != 0 {
			t.Errorf("the loopback page was fetched %d times despite the refusal", n)
		}
	})
}

func TestURLPreviewRedirectToRefused(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		// Only the origin, on 127.0.0.2, is allowlisted; the target listens
		// on 127.0.0.1, which localhost resolves to.
		target, targetHits := countingSite(t, "127.0.0.1:0", nil)
		origin, _ := countingSite(t, "127.0.0.2:0", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/by-name" {
				_, port, _ := net.SplitHostPort(target.Listener.Addr().String())
				http.Redirect(w, r, "http://localhost:"+port+"/", http.StatusFound)
				return
			}
			http.Redirect(w, r, target.URL+"/", http.StatusFound)
		})
		srv := mxtest.Start(t, engine, previewing("127.0.0.2/32"))
		alice := srv.Client("alice")
		ctx := context.Background()
		for _, path := range []string{"/by-ip", "/by-name"} {
			_, err := alice.GetURLPreview(ctx, origin.URL+path)
			if err == nil {
				t.Fatalf("preview following a redirect (%s) to a refused address succeeded", path)
			}
			if status, _ := previewErr(t, err); status != http.StatusForbidden && status != http.StatusBadGateway {
				t.Errorf("redirect %s: HTTP %d, want 403 or 502", path, status)
			}
		}
		if n := targetHits.Load(); n != 0 {
			t.Errorf("the refused target got %d requests", n)
		}
	})
}

func TestURLPreviewDisabled(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		srv := mxtest.Start(t, engine)
		alice := srv.Client("alice")
		_, err := alice.GetURLPreview(context.Background(), "https://matrix.org/")
		if status, code := previewErr(t, err); status != http.StatusNotFound || code != "M_UNRECOGNIZED" {
			t.Errorf("preview with previews off: HTTP %d %s, want 404 M_UNRECOGNIZED", status, code)
		}
		if !strings.Contains(err.Error(), "Unrecognized") {
			t.Logf("error: %v", err)
		}
	})
}
