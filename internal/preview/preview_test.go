package preview

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

func TestParseHTML(t *testing.T) {
	base, _ := url.Parse("https://example.org/blog/post.html")
	cases := []struct {
		name string
		page string
		want map[string]any
	}{
		{"opengraph", `<html><head>
			<meta property="og:title" content="A Post">
			<meta property="og:description" content=" About things ">
			<meta property="og:image" content="/img/cover.png">
			<meta property="og:image:width" content="640">
			<meta property="og:image:height" content="480">
			<meta property="og:site_name" content="Example">
			<meta property="og:type" content="article">
			<meta property="og:title" content="second title ignored">
			<title>Not this</title></head><body><img src="x.png" width="500" height="500"></body></html>`,
			map[string]any{"og:title": "A Post", "og:description": "About things", "og:image": "https://example.org/img/cover.png",
				"og:image:width": 640, "og:image:height": 480, "og:site_name": "Example", "og:type": "article"}},
		{"fallbacks", `<!doctype html><html><head><title>
			Plain   page </title><meta name="Description" content="What it is"></head>
			<body><img src="icon.png" width="8" height="8"><img src="small.jpg" width="100" height="50">
			<img src="https://cdn.example.net/big.jpg" width="800" height="600"><img src="nodims.gif"></body></html>`,
			map[string]any{"og:title": "Plain page", "og:description": "What it is", "og:image": "https://cdn.example.net/big.jpg"}},
		{"first image without dimensions", `<title>t</title><img src="a.gif"><img src="b.gif">`,
			map[string]any{"og:title": "t", "og:image": "https://example.org/blog/a.gif"}},
		{"name attribute and bad values", `<meta name="og:title" content="by name"><meta property="og:image" content="javascript:alert(1)">
			<meta property="og:image:width" content="wide"><meta property="og:description" content="">`,
			map[string]any{"og:title": "by name"}},
		{"overlong value dropped", `<meta property="og:title" content="` + strings.Repeat("x", maxTagValue+1) + `"><title>short</title>`,
			map[string]any{}},
		{"empty", ``, map[string]any{}},
		{"broken markup", `<html><head><title>Unclosed <meta property="og:type" content="website"`, map[string]any{"og:title": "Unclosed <meta property=\"og:type\" content=\"website\""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := parseHTML(strings.NewReader(c.page), base)
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("parseHTML (-want +got):\n%s", diff)
			}
		})
	}
}

func TestURLBlacklist(t *testing.T) {
	rules, err := compileURLRules([]map[string]string{
		{"netloc": "google.com"},
		{"netloc": "*.google.com"},
		{"scheme": "http"},
		{"netloc": "www.acme.com", "path": "/foo"},
		{"netloc": "^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for raw, blocked := range map[string]bool{
		"https://google.com/":          true,
		"https://mail.google.com/x":    true,
		"https://notgoogle.com/":       false,
		"http://example.org/":          true,
		"https://www.acme.com/foo":     true,
		"https://www.acme.com/foo/bar": false,
		"https://www.acme.com/bar":     false,
		"https://93.184.216.34/":       true,
		"https://example.org/a/b":      false,
	} {
		u, _ := url.Parse(raw)
		got := false
		for _, r := range rules {
			got = got || r.matches(u)
		}
		if got != blocked {
			t.Errorf("%s: blocked = %v, want %v", raw, got, blocked)
		}
	}
}

// memUploader keeps uploads in memory, standing in for the media service.
type memUploader struct {
	mu    sync.Mutex
	blobs map[string][]byte
	types map[string]string
}

func (m *memUploader) UploadFromServer(_ context.Context, owner id.UserID, contentType, fileName string, r io.Reader, maxSize int64) (id.ContentURI, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxSize+1))
	if err != nil {
		return id.ContentURI{}, err
	}
	if int64(len(b)) > maxSize {
		return id.ContentURI{}, errors.New("too large")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.blobs == nil {
		m.blobs, m.types = map[string][]byte{}, map[string]string{}
	}
	code := fmt.Sprintf("m%d", len(m.blobs))
	m.blobs[code], m.types[code] = b, contentType
	return id.ContentURI{Homeserver: "localhost", FileID: code}, nil
}

func pngBytes(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	img.Set(1, 1, color.RGBA{R: 255, A: 255})
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// site is a test web server on 127.0.0.1 counting hits per path.
type site struct {
	*httptest.Server
	mu   sync.Mutex
	hits map[string]int
}

func newSite(t *testing.T, h http.Handler) *site {
	s := &site{hits: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.URL.Path]++
		s.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *site) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

func newService(t *testing.T, cfg config.URLPreview, up Uploader) *Service {
	t.Helper()
	if cfg.MaxSpiderSize == 0 {
		cfg.MaxSpiderSize = 1 << 20
	}
	s, err := New(cfg, up, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func decode(t *testing.T, raw json.RawMessage) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("preview is not a JSON object: %q", raw)
	}
	return m
}

func TestImagesStored(t *testing.T) {
	img := pngBytes(t, 40, 30)
	s := newSite(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/page":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, `<meta property="og:title" content="With image"><meta property="og:image" content="/cover.png">`)
		case "/sized":
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, `<meta property="og:image" content="/cover.png"><meta property="og:image:width" content="400"><meta property="og:image:height" content="300">`)
		case "/cover.png", "/direct.png":
			w.Header().Set("Content-Type", "image/png")
			_, _ = w.Write(img)
		case "/notimage":
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, `<meta property="og:title" content="T"><meta property="og:image" content="/page"><meta property="og:image:width" content="5">`)
		}
	}))
	up := &memUploader{}
	svc := newService(t, config.URLPreview{IPRangeWhitelist: []string{"127.0.0.0/8"}}, up)
	ctx := context.Background()
	user := id.UserID("@alice:localhost")

	// One at a time, in order: the uploader numbers its blobs.
	for _, c := range []struct {
		path string
		want map[string]any
	}{
		{"/page", map[string]any{"og:title": "With image", "og:image": "mxc://localhost/m0", "og:image:type": "image/png", "matrix:image:size": float64(len(img)), "og:image:width": float64(40), "og:image:height": float64(30)}},
		{"/sized", map[string]any{"og:image": "mxc://localhost/m1", "og:image:type": "image/png", "matrix:image:size": float64(len(img)), "og:image:width": float64(400), "og:image:height": float64(300)}},
		{"/direct.png", map[string]any{"og:image": "mxc://localhost/m2", "og:image:type": "image/png", "matrix:image:size": float64(len(img)), "og:image:width": float64(40), "og:image:height": float64(30)}},
		{"/notimage", map[string]any{"og:title": "T"}},
	} {
		raw, err := svc.Preview(ctx, user, s.URL+c.path)
		if err != nil {
			t.Fatalf("preview %s: %v", c.path, err)
		}
		if diff := cmp.Diff(c.want, decode(t, raw)); diff != "" {
			t.Errorf("preview %s (-want +got):\n%s", c.path, diff)
		}
	}
	if !bytes.Equal(up.blobs["m0"], img) {
		t.Error("the stored image differs from the page's")
	}

	// Without an uploader there is no og:image at all.
	bare := newService(t, config.URLPreview{IPRangeWhitelist: []string{"127.0.0.0/8"}}, nil)
	raw, err := bare.Preview(ctx, user, s.URL+"/page")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]any{"og:title": "With image"}, decode(t, raw)); diff != "" {
		t.Errorf("preview without uploader (-want +got):\n%s", diff)
	}
	raw, err = bare.Preview(ctx, user, s.URL+"/direct.png")
	if err != nil || string(raw) != "{}" {
		t.Errorf("image preview without uploader = %s, %v; want {}", raw, err)
	}
}

func TestCharsetAndLimits(t *testing.T) {
	big := strings.Repeat("<p>filler</p>", 200_000) // ~2.6 MB, past the limit
	s := newSite(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/latin1":
			w.Header().Set("Content-Type", "text/html; charset=iso-8859-1")
			_, _ = w.Write([]byte("<title>Caf\xe9 cr\xe8me</title>"))
		case "/meta-charset":
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<meta charset=\"windows-1252\"><title>\x93quoted\x94</title>"))
		case "/big":
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, `<meta property="og:title" content="Head first">`+big+`<meta property="og:description" content="too late">`)
		case "/pdf":
			w.Header().Set("Content-Type", "application/pdf")
			fmt.Fprint(w, "%PDF-1.4")
		case "/missing":
			http.NotFound(w, r)
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		}
	}))
	svc := newService(t, config.URLPreview{IPRangeWhitelist: []string{"127.0.0.1"}, MaxSpiderSize: 1 << 20}, nil)
	svc.client.Timeout = 300 * time.Millisecond
	ctx := context.Background()
	for path, want := range map[string]map[string]any{
		"/latin1":       {"og:title": "Café crème"},
		"/meta-charset": {"og:title": "\u201cquoted\u201d"},
		"/big":          {"og:title": "Head first"},
	} {
		raw, err := svc.Preview(ctx, "@a:localhost", s.URL+path)
		if err != nil {
			t.Fatalf("preview %s: %v", path, err)
		}
		if diff := cmp.Diff(want, decode(t, raw)); diff != "" {
			t.Errorf("preview %s (-want +got):\n%s", path, diff)
		}
	}
	for path, status := range map[string]int{"/pdf": 502, "/missing": 502, "/slow": 504, "/loop": 502} {
		_, err := svc.Preview(ctx, "@a:localhost", s.URL+path)
		var mx *mxerr.Error
		if !errors.As(err, &mx) || mx.Status != status {
			t.Errorf("preview %s: %v, want HTTP %d", path, err, status)
		}
	}
	if n := s.count("/loop"); n != maxRedirects+1 {
		t.Errorf("redirect loop fetched %d times, want %d", n, maxRedirects+1)
	}
}

func TestOneFetchPerURL(t *testing.T) {
	release := make(chan struct{})
	var arrived atomic.Int32
	s := newSite(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		<-release
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, `<title>shared</title>`)
	}))
	svc := newService(t, config.URLPreview{IPRangeWhitelist: []string{"127.0.0.0/8"}}, nil)
	now := time.Now()
	svc.now = func() time.Time { return now }
	var wg sync.WaitGroup
	results := make([]string, 5)
	for i := range results {
		wg.Go(func() {
			raw, err := svc.Preview(context.Background(), "@a:localhost", s.URL+"/p")
			if err != nil {
				t.Error(err)
			}
			results[i] = string(raw)
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for arrived.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	for _, r := range results {
		if r != `{"og:title":"shared"}` {
			t.Errorf("result %q", r)
		}
	}
	if n := s.count("/p"); n != 1 {
		t.Errorf("5 concurrent previews fetched the page %d times, want 1", n)
	}
	// Served from the cache for an hour, then fetched again.
	if _, err := svc.Preview(context.Background(), "@a:localhost", s.URL+"/p"); err != nil || s.count("/p") != 1 {
		t.Errorf("cached preview: err %v, hits %d", err, s.count("/p"))
	}
	now = now.Add(cacheTTL + time.Second)
	if _, err := svc.Preview(context.Background(), "@a:localhost", s.URL+"/p"); err != nil || s.count("/p") != 2 {
		t.Errorf("expired preview: err %v, hits %d, want 2", err, s.count("/p"))
	}
}

func TestInvalidURLs(t *testing.T) {
	svc := newService(t, config.URLPreview{URLBlacklist: []map[string]string{{"hostname": "blocked.example"}}}, nil)
	for raw, status := range map[string]int{
		"ftp://example.org/":          400,
		"/relative":                   400,
		"http://":                     400,
		"https://blocked.example/x":   403,
		"http://127.0.0.1:1/":         403,
		"http://10.1.2.3/":            403,
		"http://[::1]:1/":             403,
		"http://[::ffff:127.0.0.1]/":  403,
		"http://169.254.169.254/meta": 403,
	} {
		_, err := svc.Preview(context.Background(), "@a:localhost", raw)
		var mx *mxerr.Error
		if !errors.As(err, &mx) || mx.Status != status {
			t.Errorf("preview %q: %v, want HTTP %d", raw, err, status)
		}
	}
}

func TestFailuresCachedBriefly(t *testing.T) {
	s := newSite(t, http.NotFoundHandler())
	svc := newService(t, config.URLPreview{IPRangeWhitelist: []string{"127.0.0.0/8"}}, nil)
	now := time.Now()
	svc.now = func() time.Time { return now }
	for range 3 {
		if _, err := svc.Preview(context.Background(), "@a:localhost", s.URL+"/gone"); err == nil {
			t.Fatal("preview of a 404 page succeeded")
		}
	}
	if n := s.count("/gone"); n != 1 {
		t.Errorf("failing page fetched %d times within a minute, want 1", n)
	}
	now = now.Add(failureTTL + time.Second)
	_, _ = svc.Preview(context.Background(), "@a:localhost", s.URL+"/gone")
	if n := s.count("/gone"); n != 2 {
		t.Errorf("failing page fetched %d times after a minute, want 2", n)
	}
}
