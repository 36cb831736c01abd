package homeserver_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/fedclient"
	"github.com/myelin-chat/myelin/internal/keys"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

// fetched is one media answer read whole.
type fetched struct {
	status int
	header http.Header
	body   []byte
	err    errBody
}

// mediaGet GETs path on srv (with token when not empty).
func mediaGet(t *testing.T, base, path, token string) fetched {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	f := fetched{status: resp.StatusCode, header: resp.Header}
	f.body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		_ = json.Unmarshal(f.body, &f.err)
	}
	return f
}

func downloadPath(uri id.ContentURI) string {
	return "/_matrix/client/v1/media/download/" + uri.Homeserver + "/" + uri.FileID
}

func legacyPath(uri id.ContentURI) string {
	return "/_matrix/media/v3/download/" + uri.Homeserver + "/" + uri.FileID
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func checkMediaHeaders(t *testing.T, f fetched) {
	t.Helper()
	if csp := f.header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "sandbox; default-src 'none'; script-src 'none';") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	if f.header.Get("X-Content-Type-Options") != "nosniff" || f.header.Get("Cross-Origin-Resource-Policy") != "cross-origin" {
		t.Errorf("security headers missing: %v", f.header)
	}
}

func TestMediaUploadDownload(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		srv := mxtest.Start(t, engine)
		alice, bob := srv.Client("alice"), srv.Client("bob")
		ctx := context.Background()
		// Larger than max_request_bytes (1 MiB): uploads have their own limit.
		data := randomBytes(t, 1<<20+12345)
		cases := []struct {
			name, contentType, fileName, wantType, wantDisposition string
		}{
			{"png", "image/png", "cat.png", "image/png", `inline; filename="cat.png"`},
			{"unicode name", "application/pdf", "résumé 2024.pdf", "application/pdf", `attachment; filename*=utf-8''r%C3%A9sum%C3%A9%202024.pdf`},
			{"no name", "text/plain", "", "text/plain; charset=utf-8", "inline"},
			{"html", "text/html", "page.html", "text/html; charset=utf-8", `attachment; filename="page.html"`},
			{"svg", "image/svg+xml", "x.svg", "image/svg+xml", `attachment; filename="x.svg"`},
			{"no type", "", "blob", "application/octet-stream", `attachment; filename="blob"`},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				up, err := alice.UploadMedia(ctx, mautrix.ReqUploadMedia{ContentBytes: data, ContentType: tc.contentType, FileName: tc.fileName})
				if err != nil {
					t.Fatal(err)
				}
				if up.ContentURI.Homeserver != srv.Config.ServerName {
					t.Fatalf("content_uri %s is not on %s", up.ContentURI, srv.Config.ServerName)
				}
				// Another user of the server downloads it.
				f := mediaGet(t, srv.URL, downloadPath(up.ContentURI), bob.AccessToken)
				if f.status != http.StatusOK || !bytes.Equal(f.body, data) {
					t.Fatalf("download: %d, %d bytes (want %d identical)", f.status, len(f.body), len(data))
				}
				if got := f.header.Get("Content-Type"); got != tc.wantType {
					t.Errorf("Content-Type = %q, want %q", got, tc.wantType)
				}
				if got := f.header.Get("Content-Disposition"); got != tc.wantDisposition {
					t.Errorf("Content-Disposition = %q, want %q", got, tc.wantDisposition)
				}
				checkMediaHeaders(t, f)
				named := mediaGet(t, srv.URL, downloadPath(up.ContentURI)+"/other.bin", bob.AccessToken)
				if named.status != http.StatusOK || !strings.HasSuffix(named.header.Get("Content-Disposition"), `filename="other.bin"`) {
					t.Errorf("download with a file name: %d %q", named.status, named.header.Get("Content-Disposition"))
				}
			})
		}
		if v, err := bob.Versions(ctx); err != nil || !v.UnstableFeatures["org.matrix.msc3916.stable"] {
			t.Errorf("versions do not announce authenticated media: %+v, %v", v, err)
		}
		// The mautrix client reads the limit from the config endpoint.
		cfg, err := bob.GetMediaConfig(ctx)
		if err != nil || cfg.UploadSize != 50<<20 {
			t.Errorf("media config = %+v, %v", cfg, err)
		}
		for _, path := range []string{"/_matrix/client/v1/media/download/" + srv.Config.ServerName + "/nosuchmedia", "/_matrix/client/v1/media/download/" + srv.Config.ServerName + "/bad.id"} {
			if f := mediaGet(t, srv.URL, path, bob.AccessToken); f.status != http.StatusNotFound || f.err.Errcode != "M_NOT_FOUND" {
				t.Errorf("%s: %d %s", path, f.status, f.err.Errcode)
			}
		}
	})
}

func TestMediaNeedsToken(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		srv := mxtest.Start(t, engine)
		alice := srv.Client("alice")
		up, err := alice.UploadBytes(context.Background(), []byte("hello"), "text/plain")
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{downloadPath(up.ContentURI), downloadPath(up.ContentURI) + "/x.txt",
			"/_matrix/client/v1/media/config", "/_matrix/client/v1/media/thumbnail/" + up.ContentURI.Homeserver + "/" + up.ContentURI.FileID + "?width=32&height=32"} {
			f := mediaGet(t, srv.URL, path, "")
			if f.status != http.StatusUnauthorized || f.err.Errcode != "M_MISSING_TOKEN" {
				t.Errorf("GET %s without a token: %d %s", path, f.status, f.err.Errcode)
			}
		}
		if status, eb := do(t, http.MethodPost, srv.URL+"/_matrix/media/v3/upload", "", []byte("x")); status != http.StatusUnauthorized || eb.Errcode != "M_MISSING_TOKEN" {
			t.Errorf("upload without a token: %d %s", status, eb.Errcode)
		}
	})
}

func TestMediaLimits(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		srv := mxtest.Start(t, engine, func(c *config.Config) {
			c.Media.MaxUploadSize = 64 << 10
			c.Media.MediaUserQuota = 100 << 10
			c.Media.RcMediaCreate = config.MediaRate{PerSecond: 0.001, BurstCount: 6}
		})
		alice := srv.Client("alice")
		ctx := context.Background()
		var httpErr mautrix.HTTPError
		// Over max_upload_size, announced or not.
		_, err := alice.UploadBytes(ctx, randomBytes(t, 64<<10+1), "application/octet-stream")
		if !errors.As(err, &httpErr) || httpErr.Response.StatusCode != http.StatusRequestEntityTooLarge || httpErr.RespError.ErrCode != "M_TOO_LARGE" {
			t.Errorf("oversized upload: %v", err)
		}
		_, err = alice.UploadMedia(ctx, mautrix.ReqUploadMedia{Content: io.LimitReader(rand.Reader, 64<<10+1), ContentLength: -1, ContentType: "application/octet-stream"})
		if !errors.As(err, &httpErr) || httpErr.Response.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("oversized chunked upload: %v", err)
		}
		// A body cut short is the client's fault: 400, and nothing kept.
		conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = fmt.Fprintf(conn, "POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
			"Content-Type: application/octet-stream\r\nContent-Length: 50000\r\n\r\nonly a little", alice.AccessToken)
		_ = conn.(*net.TCPConn).CloseWrite()
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("upload cut short: %d, want 400", resp.StatusCode)
		}
		// The quota: 60 KiB fits once, not twice.
		if _, err := alice.UploadBytes(ctx, randomBytes(t, 60<<10), "application/octet-stream"); err != nil {
			t.Fatal(err)
		}
		_, err = alice.UploadBytes(ctx, randomBytes(t, 60<<10), "application/octet-stream")
		if !errors.As(err, &httpErr) || httpErr.Response.StatusCode != http.StatusForbidden || httpErr.RespError.ErrCode != "M_FORBIDDEN" {
			t.Errorf("upload past the quota: %v", err)
		}
		// The rate limit: 6 at once, of which 4 are used.
		for i := 0; ; i++ {
			_, err := alice.UploadBytes(ctx, []byte("small"), "text/plain")
			if err == nil {
				if i > 3 {
					t.Fatalf("upload %d passed the rate limit", i)
				}
				continue
			}
			if !errors.As(err, &httpErr) || httpErr.Response.StatusCode != http.StatusTooManyRequests || httpErr.RespError.ErrCode != "M_LIMIT_EXCEEDED" {
				t.Fatalf("upload %d: %v", i, err)
			}
			break
		}
	})
}

func TestMediaLegacyFreeze(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		srv := mxtest.Start(t, engine, func(c *config.Config) { c.Media.EnableAuthenticatedMedia = false })
		alice := srv.Client("alice")
		ctx := context.Background()
		before, err := alice.UploadBytesWithName(ctx, []byte("old media"), "text/plain", "old.txt")
		if err != nil {
			t.Fatal(err)
		}
		if f := mediaGet(t, srv.URL, legacyPath(before.ContentURI), ""); f.status != http.StatusOK || string(f.body) != "old media" {
			t.Fatalf("legacy download before the freeze: %d %q", f.status, f.body)
		}
		srv.Config.Media.EnableAuthenticatedMedia = true
		srv.Restart()
		after, err := alice.UploadBytes(ctx, []byte("new media"), "text/plain")
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"/_matrix/media/v3/download/", "/_matrix/media/r0/download/", "/_matrix/media/v1/download/"} {
			old := mediaGet(t, srv.URL, p+before.ContentURI.Homeserver+"/"+before.ContentURI.FileID, "")
			if old.status != http.StatusOK || string(old.body) != "old media" {
				t.Errorf("%s: media from before the freeze: %d %q", p, old.status, old.body)
			}
			checkMediaHeaders(t, old)
			frozen := mediaGet(t, srv.URL, p+after.ContentURI.Homeserver+"/"+after.ContentURI.FileID, "")
			if frozen.status != http.StatusNotFound || frozen.err.Errcode != "M_NOT_FOUND" {
				t.Errorf("%s: media from after the freeze: %d %s", p, frozen.status, frozen.err.Errcode)
			}
		}
		if f := mediaGet(t, srv.URL, downloadPath(after.ContentURI), alice.AccessToken); f.status != http.StatusOK || string(f.body) != "new media" {
			t.Errorf("authenticated download after the freeze: %d %q", f.status, f.body)
		}
	})
}

// testPNG encodes a w×h gradient.
func testPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.NRGBA{uint8(x), uint8(y), uint8(x + y), 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestMediaFederation(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		hs := mxtest.Federation(t, engine, 2, func(c *config.Config) { c.MetricsListen = "127.0.0.1:0" })
		alice, carol := hs[0].Client("alice"), hs[0].Client("carol")
		bob := hs[1].Client("bob")
		ctx := context.Background()

		avatar := testPNG(t, 200, 150)
		up, err := alice.UploadBytesWithName(ctx, avatar, "image/png", "me.png")
		if err != nil {
			t.Fatal(err)
		}
		if err := alice.SetAvatarURL(ctx, up.ContentURI); err != nil {
			t.Fatal(err)
		}
		photo := randomBytes(t, 300<<10)
		pic, err := alice.UploadBytesWithName(ctx, photo, "image/jpeg", "holiday.jpg")
		if err != nil {
			t.Fatal(err)
		}
		room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.JoinRoom(ctx, room.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{hs[0].Config.ServerName}}); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.SendMessageEvent(ctx, room.RoomID, event.EventMessage, map[string]any{
			"msgtype": "m.image", "body": "holiday.jpg", "url": pic.ContentURI.CUString(),
		}); err != nil {
			t.Fatal(err)
		}
		// Bob finds the image in the room and the avatar in alice's
		// profile, both through his own server.
		var imageURL id.ContentURI
		waitFor(t, "bob to see the image", func() (bool, error) {
			msgs, err := bob.Messages(ctx, room.RoomID, "", "", mautrix.DirectionBackward, nil, 50)
			if err != nil {
				return false, err
			}
			for _, ev := range msgs.Chunk {
				if u, ok := ev.Content.Raw["url"].(string); ok {
					imageURL, err = id.ParseContentURI(u)
					return err == nil, err
				}
			}
			return false, nil
		})
		// Federated profile queries are not served yet: bob reads the
		// avatar from alice's member event, as clients do in rooms.
		var member event.MemberEventContent
		if err := bob.StateEvent(ctx, room.RoomID, event.StateMember, alice.UserID.String(), &member); err != nil {
			t.Fatal(err)
		}
		avatarURL, err := member.AvatarURL.Parse()
		if err != nil || avatarURL != up.ContentURI {
			t.Fatalf("alice's member avatar on bob's server: %q, %v", member.AvatarURL, err)
		}
		profile := struct{ AvatarURL id.ContentURI }{avatarURL}
		for _, c := range []struct {
			name string
			cli  *mautrix.Client
			base string
			uri  id.ContentURI
			want []byte
		}{
			{"image, same server", carol, hs[0].URL, imageURL, photo},
			{"avatar, same server", carol, hs[0].URL, profile.AvatarURL, avatar},
			{"image, second server", bob, hs[1].URL, imageURL, photo},
			{"avatar, second server", bob, hs[1].URL, profile.AvatarURL, avatar},
		} {
			f := mediaGet(t, c.base, downloadPath(c.uri), c.cli.AccessToken)
			if f.status != http.StatusOK || !bytes.Equal(f.body, c.want) {
				t.Fatalf("%s: %d, %d bytes", c.name, f.status, len(f.body))
			}
			if c.uri == imageURL && f.header.Get("Content-Disposition") != `inline; filename="holiday.jpg"` {
				t.Errorf("%s: Content-Disposition %q", c.name, f.header.Get("Content-Disposition"))
			}
		}
		// Remote thumbnails are made here from the cached original.
		if _, w, h := thumbSize(t, "remote thumbnail", mediaGet(t, hs[1].URL, thumbPath(profile.AvatarURL, 96, 96, "crop", false), bob.AccessToken)); w != 96 || h != 96 {
			t.Errorf("remote avatar thumbnail: %dx%d", w, h)
		}
		// A media ID unknown at the origin is unknown here.
		missing := id.ContentURI{Homeserver: hs[0].Config.ServerName, FileID: "doesnotexist"}
		if f := mediaGet(t, hs[1].URL, downloadPath(missing), bob.AccessToken); f.status != http.StatusNotFound || f.err.Errcode != "M_NOT_FOUND" {
			t.Errorf("media missing at the origin: %d %s", f.status, f.err.Errcode)
		}
		// Concurrent first requests share one fetch; afterwards the cache
		// answers with the origin down.
		third, err := alice.UploadBytes(ctx, randomBytes(t, 2<<20), "application/octet-stream")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		results := make([]fetched, 4)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = mediaGet(t, hs[1].URL, downloadPath(third.ContentURI), bob.AccessToken)
			}()
		}
		wg.Wait()
		for i, f := range results {
			if f.status != http.StatusOK || len(f.body) != 2<<20 {
				t.Errorf("concurrent fetch %d: %d, %d bytes", i, f.status, len(f.body))
			}
		}
		// The origin was asked once per media ID: the image, the avatar
		// and the file the four requests above shared.
		if n := originFetches(t, hs[0]); n != 3 {
			t.Errorf("the origin served %d federation downloads, want 3", n)
		}
		// The federation endpoints themselves, with a request signed as
		// the second server: multipart/mixed, JSON part then the bytes.
		fed := federationClientOf(t, hs[1])
		resp, err := fed.Stream(ctx, hs[0].Config.ServerName, "/_matrix/federation/v1/media/thumbnail/"+up.ContentURI.FileID,
			url.Values{"width": {"32"}, "height": {"32"}, "method": {"crop"}})
		if err != nil {
			t.Fatal(err)
		}
		parts := readMultipart(t, resp)
		if len(parts) != 2 || string(parts[0].body) != "{}" || parts[1].header.Get("Content-Type") != "image/png" {
			t.Fatalf("federation thumbnail parts: %+v", parts)
		}
		if cfg, err := png.DecodeConfig(bytes.NewReader(parts[1].body)); err != nil || cfg.Width != 32 || cfg.Height != 32 {
			t.Errorf("federation thumbnail: %+v, %v", cfg, err)
		}
		// A server serves only its own media over federation.
		_, err = fed.Stream(ctx, hs[1].Config.ServerName, "/_matrix/federation/v1/media/download/"+imageURL.FileID, nil)
		if !fedclient.IsStatus(err, http.StatusNotFound) {
			t.Errorf("federation download of a cached remote item: %v, want 404", err)
		}
		hs[0].Down()
		for _, uri := range []id.ContentURI{imageURL, profile.AvatarURL, third.ContentURI} {
			if f := mediaGet(t, hs[1].URL, downloadPath(uri), bob.AccessToken); f.status != http.StatusOK {
				t.Errorf("cached %s with the origin down: %d %s", uri, f.status, f.err.Errcode)
			}
		}
		if _, w, h := thumbSize(t, "cached remote thumbnail", mediaGet(t, hs[1].URL, thumbPath(profile.AvatarURL, 96, 96, "crop", false), bob.AccessToken)); w != 96 || h != 96 {
			t.Errorf("cached remote avatar thumbnail: %dx%d", w, h)
		}
		hs[0].Up()
		// Purging the cache drops the copies; the next request fetches again.
		if n, err := hs[1].Media.PurgeRemoteBefore(ctx, time.Now().Add(time.Minute)); err != nil || n != 3 {
			t.Errorf("PurgeRemoteBefore = %d, %v; want the 3 cached items", n, err)
		}
		if f := mediaGet(t, hs[1].URL, downloadPath(imageURL), bob.AccessToken); f.status != http.StatusOK || !bytes.Equal(f.body, photo) {
			t.Errorf("refetch after the purge: %d, %d bytes", f.status, len(f.body))
		}
	})
}

func TestMediaQuarantineAndDelete(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		srv := mxtest.Start(t, engine, func(c *config.Config) { c.Media.EnableAuthenticatedMedia = false })
		alice, bob := srv.Client("alice"), srv.Client("bob")
		ctx := t.Context()
		img := testPNG(t, 120, 120)
		a, err := alice.UploadBytes(ctx, img, "image/png")
		if err != nil {
			t.Fatal(err)
		}
		b, err := bob.UploadBytes(ctx, img, "image/png")
		if err != nil {
			t.Fatal(err)
		}
		// Identical uploads share one blob.
		if n := blobFiles(t, srv); n != 1 {
			t.Errorf("%d blob files for two identical uploads, want 1", n)
		}
		thumb := func(u id.ContentURI) string { return thumbPath(u, 32, 32, "crop", false) }
		if f := mediaGet(t, srv.URL, thumb(a.ContentURI), bob.AccessToken); f.status != http.StatusOK {
			t.Fatalf("thumbnail: %d", f.status)
		}
		if err := srv.Media.Quarantine(ctx, a.ContentURI, true); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{downloadPath(a.ContentURI), legacyPath(a.ContentURI), thumb(a.ContentURI)} {
			for _, tok := range []string{alice.AccessToken, bob.AccessToken} {
				if f := mediaGet(t, srv.URL, p, tok); f.status != http.StatusNotFound || f.err.Errcode != "M_NOT_FOUND" {
					t.Errorf("quarantined %s: %d %s", p, f.status, f.err.Errcode)
				}
			}
		}
		if f := mediaGet(t, srv.URL, downloadPath(b.ContentURI), alice.AccessToken); f.status != http.StatusOK || !bytes.Equal(f.body, img) {
			t.Errorf("the other item with the same bytes: %d", f.status)
		}
		if err := srv.Media.Delete(ctx, b.ContentURI); err != nil {
			t.Fatal(err)
		}
		if f := mediaGet(t, srv.URL, downloadPath(b.ContentURI), alice.AccessToken); f.status != http.StatusNotFound {
			t.Errorf("deleted item: %d", f.status)
		}
		// The quarantined row still names the blob.
		if n := blobFiles(t, srv); n < 1 {
			t.Errorf("the blob of quarantined media went with the other item")
		}
		if n, err := srv.Media.DeleteByUser(ctx, alice.UserID); err != nil || n != 1 {
			t.Errorf("DeleteByUser = %d, %v", n, err)
		}
		if n := blobFiles(t, srv); n != 0 {
			t.Errorf("%d blob files left once no item names them", n)
		}
		old, err := bob.UploadBytes(ctx, randomBytes(t, 5000), "application/octet-stream")
		if err != nil {
			t.Fatal(err)
		}
		small, err := bob.UploadBytes(ctx, randomBytes(t, 10), "application/octet-stream")
		if err != nil {
			t.Fatal(err)
		}
		if n, err := srv.Media.DeleteLocalBefore(ctx, time.Now().Add(time.Minute), 1000); err != nil || n != 1 {
			t.Errorf("DeleteLocalBefore = %d, %v; want only the large item", n, err)
		}
		if f := mediaGet(t, srv.URL, downloadPath(old.ContentURI), bob.AccessToken); f.status != http.StatusNotFound {
			t.Errorf("large old item after DeleteLocalBefore: %d", f.status)
		}
		if f := mediaGet(t, srv.URL, downloadPath(small.ContentURI), bob.AccessToken); f.status != http.StatusOK {
			t.Errorf("small item after DeleteLocalBefore: %d", f.status)
		}
	})
}

// blobFiles counts the blobs in srv's media store (thumbnails included).
func blobFiles(t *testing.T, srv *mxtest.Server) int {
	t.Helper()
	n := 0
	root := filepath.Join(srv.Config.DataDir, "media_store")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "tmp" {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// originFetches reads from srv's metrics how many federation media
// downloads it answered with 200.
func originFetches(t *testing.T, srv *mxtest.Server) int {
	t.Helper()
	resp, err := http.Get("http://" + srv.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	prefix := `myelin_http_requests_total{code="200",method="GET",route="/_matrix/federation/v1/media/download/{mediaId}"} `
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

// federationClientOf signs federation requests as srv.
func federationClientOf(t *testing.T, srv *mxtest.Server) *fedclient.Client {
	t.Helper()
	key, err := keys.LoadOrGenerate(srv.Config.SigningKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	c, err := fedclient.New(srv.Config.Federation, srv.Config.ServerName, key, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type mimePart struct {
	header textproto.MIMEHeader
	body   []byte
}

func readMultipart(t *testing.T, resp *http.Response) []mimePart {
	t.Helper()
	defer resp.Body.Close()
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" {
		t.Fatalf("Content-Type %q", resp.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(resp.Body, params["boundary"])
	var parts []mimePart
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			return parts
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(p)
		parts = append(parts, mimePart{p.Header, body})
	}
}

// TestMediaUploadFromServer stores bytes the server fetched itself (URL
// preview images) and serves them like an upload; Range requests work.
func TestMediaUploadFromServer(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		srv := mxtest.Start(t, engine)
		alice := srv.Client("alice")
		ctx := t.Context()
		data := randomBytes(t, 10000)
		uri, err := srv.Media.UploadFromServer(ctx, alice.UserID, "image/png", "preview.png", bytes.NewReader(data), 20000)
		if err != nil {
			t.Fatal(err)
		}
		if f := mediaGet(t, srv.URL, downloadPath(uri), alice.AccessToken); f.status != http.StatusOK || !bytes.Equal(f.body, data) {
			t.Errorf("download of server-stored media: %d, %d bytes", f.status, len(f.body))
		}
		if _, err := srv.Media.UploadFromServer(ctx, alice.UserID, "image/png", "", bytes.NewReader(data), 9999); err == nil {
			t.Error("UploadFromServer took more than maxSize")
		}
		req, _ := http.NewRequest(http.MethodGet, srv.URL+downloadPath(uri), nil)
		req.Header.Set("Authorization", "Bearer "+alice.AccessToken)
		req.Header.Set("Range", "bytes=100-199")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		part, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(part, data[100:200]) {
			t.Errorf("range request: %d, %d bytes", resp.StatusCode, len(part))
		}
	})
}

// TestMediaPreviewImage: a previewed page's og:image is fetched, stored
// as local media and served like an upload.
func TestMediaPreviewImage(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		img := testPNG(t, 64, 48)
		site, _ := countingSite(t, "", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/img.png" {
				w.Header().Set("Content-Type", "image/png")
				_, _ = w.Write(img)
				return
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = fmt.Fprintf(w, `<html><head><meta property="og:title" content="t"><meta property="og:image" content="http://%s/img.png"></head></html>`, r.Host)
		})
		srv := mxtest.Start(t, engine, previewing("127.0.0.0/8"))
		alice := srv.Client("alice")
		p, err := alice.GetURLPreview(t.Context(), site.URL+"/page")
		if err != nil {
			t.Fatal(err)
		}
		uri, err := p.ImageURL.Parse()
		if err != nil || uri.Homeserver != srv.Config.ServerName {
			t.Fatalf("og:image = %q (%v), want local media", p.ImageURL, err)
		}
		if f := mediaGet(t, srv.URL, downloadPath(uri), alice.AccessToken); f.status != http.StatusOK || !bytes.Equal(f.body, img) {
			t.Errorf("preview image download: %d, %d bytes", f.status, len(f.body))
		}
	})
}
