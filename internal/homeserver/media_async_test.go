package homeserver_test

import (
	"bytes"
	"errors"
	"net/http"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

func wantHTTPError(t *testing.T, what string, err error, status int, code string) {
	t.Helper()
	var httpErr mautrix.HTTPError
	if !errors.As(err, &httpErr) || httpErr.Response == nil || httpErr.Response.StatusCode != status ||
		httpErr.RespError == nil || httpErr.RespError.ErrCode != code {
		t.Errorf("%s: %v, want %d %s", what, err, status, code)
	}
}

func TestMediaAsyncUpload(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		srv := mxtest.Start(t, engine)
		alice, bob := srv.Client("alice"), srv.Client("bob")
		ctx := t.Context()
		created, err := alice.CreateMXC(ctx)
		if err != nil {
			t.Fatal(err)
		}
		uri := created.ContentURI
		if exp := created.UnusedExpiresAt.Time; exp.Before(time.Now().Add(23*time.Hour)) || exp.After(time.Now().Add(25*time.Hour)) {
			t.Errorf("unused_expires_at %v is not a day away", exp)
		}
		// Nothing uploaded yet: a short wait ends in 504.
		f := mediaGet(t, srv.URL, downloadPath(uri)+"?timeout_ms=100", bob.AccessToken)
		if f.status != http.StatusGatewayTimeout || f.err.Errcode != "M_NOT_YET_UPLOADED" {
			t.Errorf("download before the upload: %d %s", f.status, f.err.Errcode)
		}
		// A download waiting for the upload gets the bytes when they come.
		waiting := make(chan fetched, 1)
		go func() { waiting <- mediaGet(t, srv.URL, downloadPath(uri)+"?timeout_ms=30000", bob.AccessToken) }()
		data := randomBytes(t, 100<<10)
		// Only the creator may upload.
		_, err = bob.UploadMedia(ctx, mautrix.ReqUploadMedia{MXC: uri, ContentBytes: data, ContentType: "image/png"})
		wantHTTPError(t, "upload by another user", err, http.StatusForbidden, "M_FORBIDDEN")
		if _, err := alice.UploadMedia(ctx, mautrix.ReqUploadMedia{MXC: uri, ContentBytes: data, ContentType: "image/png", FileName: "late.png"}); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-waiting:
			if got.status != http.StatusOK || !bytes.Equal(got.body, data) || got.header.Get("Content-Disposition") != `inline; filename="late.png"` {
				t.Errorf("waiting download: %d, %d bytes, %q", got.status, len(got.body), got.header.Get("Content-Disposition"))
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the waiting download was not woken by the upload")
		}
		_, err = alice.UploadMedia(ctx, mautrix.ReqUploadMedia{MXC: uri, ContentBytes: []byte("again"), ContentType: "text/plain"})
		wantHTTPError(t, "second upload", err, http.StatusConflict, "M_CANNOT_OVERWRITE_MEDIA")
		_, err = alice.UploadMedia(ctx, mautrix.ReqUploadMedia{MXC: id.ContentURI{Homeserver: uri.Homeserver, FileID: "neverCreated"}, ContentBytes: data})
		wantHTTPError(t, "upload to an unknown ID", err, http.StatusNotFound, "M_NOT_FOUND")
		// At most 5 pending IDs per user (Synapse's default).
		for i := 0; i < 5; i++ {
			if _, err := bob.CreateMXC(ctx); err != nil {
				t.Fatalf("create %d: %v", i, err)
			}
		}
		_, err = bob.CreateMXC(ctx)
		wantHTTPError(t, "sixth pending ID", err, http.StatusTooManyRequests, "M_LIMIT_EXCEEDED")
	})
}

func TestMediaAsyncExpiry(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		srv := mxtest.Start(t, engine, func(c *config.Config) { c.Media.UnusedExpirationTime = config.Duration(time.Millisecond) })
		alice := srv.Client("alice")
		ctx := t.Context()
		created, err := alice.CreateMXC(ctx)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond) // let the 1 ms lifetime pass
		_, err = alice.UploadMedia(ctx, mautrix.ReqUploadMedia{MXC: created.ContentURI, ContentBytes: []byte("late"), ContentType: "text/plain"})
		wantHTTPError(t, "upload after expiry", err, http.StatusNotFound, "M_NOT_FOUND")
		if f := mediaGet(t, srv.URL, downloadPath(created.ContentURI), alice.AccessToken); f.status != http.StatusNotFound {
			t.Errorf("download of an expired ID: %d %s", f.status, f.err.Errcode)
		}
		// The janitor's pass forgets it, and expired IDs do not count as pending.
		if n, err := srv.Media.Retain(ctx); err != nil || n != 1 {
			t.Errorf("Retain = %d, %v; want the expired ID deleted", n, err)
		}
		for i := 0; i < 6; i++ {
			if _, err := alice.CreateMXC(ctx); err != nil {
				t.Fatalf("create %d after expiries: %v", i, err)
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
}
