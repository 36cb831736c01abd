package homeserver_test

import (
	"bytes"
	"crypto/tls"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

// TestMediaOlderOrigins fetches remote media from a stand-in origin over
// TLS: one that predates the federation media endpoints (the legacy
// download with allow_remote=false), one that answers with a Location to
// follow, a 404, and media over max_upload_size.
func TestMediaOlderOrigins(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		hs := mxtest.Federation(t, engine, 1, func(c *config.Config) { c.Media.MaxUploadSize = 1 << 20 })[0]
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		origin := ln.Addr().String()
		cert, err := hs.TestCA.CA.Issue("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		legacyBody, cdnBody := testPNG(t, 40, 30), []byte("from the CDN")
		mux := http.NewServeMux()
		unrecognized := func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}`))
		}
		mux.HandleFunc("GET /_matrix/federation/v1/media/download/old", unrecognized)
		mux.HandleFunc("GET /_matrix/federation/v1/media/download/big", unrecognized)
		mux.HandleFunc("GET /_matrix/media/v3/download/{server}/old", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("allow_remote") != "false" || r.PathValue("server") != origin {
				http.Error(w, "bad legacy request", http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "image/png")
			w.Header().Set("Content-Disposition", "inline; filename*=utf-8''%C3%A9t%C3%A9.png")
			_, _ = w.Write(legacyBody)
		})
		mux.HandleFunc("GET /_matrix/media/v3/download/{server}/big", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = w.Write(make([]byte, 2<<20))
		})
		mux.HandleFunc("GET /_matrix/federation/v1/media/download/cdn", func(w http.ResponseWriter, r *http.Request) {
			mw := multipart.NewWriter(w)
			w.Header().Set("Content-Type", "multipart/mixed; boundary="+mw.Boundary())
			p, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/json"}})
			_, _ = p.Write([]byte("{}"))
			_, _ = mw.CreatePart(textproto.MIMEHeader{"Location": {"https://" + origin + "/cdn/file"}})
			_ = mw.Close()
		})
		mux.HandleFunc("GET /cdn/file", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Disposition", `inline; filename="cdn.txt"`)
			_, _ = w.Write(cdnBody)
		})
		mux.HandleFunc("GET /_matrix/federation/v1/media/download/gone", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"errcode":"M_NOT_FOUND","error":"Not found"}`))
		})
		srv := httptest.NewUnstartedServer(mux)
		srv.Listener.Close()
		srv.Listener = ln
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		srv.StartTLS()
		t.Cleanup(srv.Close)

		bob := hs.Client("bob")
		uri := func(mediaID string) id.ContentURI { return id.ContentURI{Homeserver: origin, FileID: mediaID} }
		f := mediaGet(t, hs.URL, downloadPath(uri("old")), bob.AccessToken)
		if f.status != http.StatusOK || !bytes.Equal(f.body, legacyBody) || f.header.Get("Content-Type") != "image/png" ||
			f.header.Get("Content-Disposition") != "inline; filename*=utf-8''%C3%A9t%C3%A9.png" {
			t.Errorf("legacy origin: %d, %d bytes, %q %q", f.status, len(f.body), f.header.Get("Content-Type"), f.header.Get("Content-Disposition"))
		}
		f = mediaGet(t, hs.URL, downloadPath(uri("cdn")), bob.AccessToken)
		if f.status != http.StatusOK || !bytes.Equal(f.body, cdnBody) || f.header.Get("Content-Disposition") != `inline; filename="cdn.txt"` {
			t.Errorf("Location part: %d %q %q", f.status, f.body, f.header.Get("Content-Disposition"))
		}
		if f := mediaGet(t, hs.URL, downloadPath(uri("gone")), bob.AccessToken); f.status != http.StatusNotFound || f.err.Errcode != "M_NOT_FOUND" {
			t.Errorf("origin 404: %d %s", f.status, f.err.Errcode)
		}
		if f := mediaGet(t, hs.URL, downloadPath(uri("big")), bob.AccessToken); f.status != http.StatusBadGateway || f.err.Errcode != "M_TOO_LARGE" {
			t.Errorf("remote media over max_upload_size: %d %s", f.status, f.err.Errcode)
		}
		// The legacy endpoints are frozen: what is cached now is not theirs.
		if f := mediaGet(t, hs.URL, legacyPath(uri("old")), ""); f.status != http.StatusNotFound {
			t.Errorf("legacy download of media cached after the freeze: %d", f.status)
		}
	})
}
