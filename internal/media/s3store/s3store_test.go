package s3store

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/media"
	"github.com/myelin-chat/myelin/internal/media/blobstest"
)

// s3Server starts an in-process S3 protocol server on loopback, over TLS
// as a production endpoint would be (over plain HTTP the client signs
// payloads in aws-chunked framing, which gofakes3 does not decode for
// multipart parts).
func s3Server(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(gofakes3.New(s3mem.New()).Server())
	t.Cleanup(srv.Close)
	return srv
}

func newTestStore(t *testing.T, srv *httptest.Server, prefix string) *Store {
	t.Helper()
	s, err := newStore(context.Background(), config.S3{
		Endpoint: srv.URL, Bucket: "media", Region: "us-east-1",
		AccessKey: "test", SecretKey: "testsecret", Prefix: prefix,
	}, slog.New(slog.DiscardHandler), srv.Client().Transport)
	if err != nil {
		t.Fatalf("s3store.New: %v", err)
	}
	return s
}

func TestContract(t *testing.T) {
	blobstest.Run(t, func(t *testing.T) media.Blobs {
		return newTestStore(t, s3Server(t), "m/")
	})
}

// TestUnknownSize streams a body of unknown length, which goes up as a
// multipart upload of several parts.
func TestUnknownSize(t *testing.T) {
	s := newTestStore(t, s3Server(t), "")
	data := bytes.Repeat([]byte("0123456789abcdef"), (partSize*2+12345)/16)
	ctx := context.Background()
	if err := s.Put(ctx, "unknown", struct{ io.Reader }{bytes.NewReader(data)}, -1); err != nil {
		t.Fatalf("Put of unknown size: %v", err)
	}
	rc, size, err := s.Open(ctx, "unknown")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || size != int64(len(data)) || !bytes.Equal(got, data) {
		t.Fatalf("round trip of unknown size: %d bytes, size %d, err %v; want %d", len(got), size, err, len(data))
	}
}

// TestPrefixAndReconnect checks that the prefix separates stores sharing a
// bucket and that a second New finds the existing bucket.
func TestPrefixAndReconnect(t *testing.T) {
	srv := s3Server(t)
	a := newTestStore(t, srv, "a/")
	b := newTestStore(t, srv, "b/")
	ctx := context.Background()
	if err := a.Put(ctx, "k", strings.NewReader("in a"), 4); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Open(ctx, "k"); err == nil {
		t.Fatal("a key stored under prefix a/ is visible under prefix b/")
	}
}

func TestNewUnreachable(t *testing.T) {
	srv := httptest.NewServer(nil)
	url := srv.URL
	srv.Close()
	if _, err := New(context.Background(), config.S3{Endpoint: url, Bucket: "media", AccessKey: "x", SecretKey: "y", Region: "us-east-1"}, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("New succeeded against a closed endpoint")
	}
}
