package diskstore

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/myelin-chat/myelin/internal/media"
	"github.com/myelin-chat/myelin/internal/media/blobstest"
)

func TestStore(t *testing.T) {
	ctx := t.Context()
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var _ media.Blobs = s
	key := "abcdef0123456789"
	if _, _, err := s.Open(ctx, key); !errors.Is(err, media.ErrBlobNotFound) {
		t.Fatalf("Open of a missing key: %v", err)
	}
	// A short Put fails and leaves nothing under the key.
	if err := s.Put(ctx, key, strings.NewReader("abc"), 10); err == nil {
		t.Fatal("a short Put succeeded")
	}
	if _, _, err := s.Open(ctx, key); !errors.Is(err, media.ErrBlobNotFound) {
		t.Fatalf("a failed Put left a blob: %v", err)
	}
	if err := s.Put(ctx, key, strings.NewReader("first"), 5); err != nil {
		t.Fatal(err)
	}
	// An existing key is not rewritten.
	if err := s.Put(ctx, key, strings.NewReader("other"), 5); err != nil {
		t.Fatal(err)
	}
	r, size, err := s.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if string(got) != "first" || size != 5 {
		t.Errorf("Open = %q (%d)", got, size)
	}
	// Adopt moves a temporary file into place.
	tmp := filepath.Join(s.TempDir(), "spool")
	if err := os.WriteFile(tmp, []byte("adopted"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Adopt(ctx, "1234567890", tmp); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the adopted file is still in the temp dir: %v", err)
	}
	for _, k := range []string{key, key, "1234567890"} {
		if err := s.Delete(ctx, k); err != nil {
			t.Errorf("Delete(%s): %v", k, err)
		}
	}
	for _, bad := range []string{"../../etc", "ab", "a/b/cdef"} {
		if err := s.Put(ctx, bad, strings.NewReader("x"), 1); err == nil {
			t.Errorf("Put accepted the key %q", bad)
		}
	}
	left, _ := os.ReadDir(s.TempDir())
	if len(left) != 0 {
		t.Errorf("%d files left in the temp dir", len(left))
	}
}

func TestContract(t *testing.T) {
	blobstest.Run(t, func(t *testing.T) media.Blobs {
		s, err := New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
