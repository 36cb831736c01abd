// Package blobstest is the behaviour contract of a media.Blobs store, run
// by each store's tests (disk and S3) against a real store: identical bytes
// back (up to a 20 MB streamed blob), idempotent Put, no partial blob after
// a failed Put, ErrBlobNotFound for missing keys, and Delete. It imports
// only media.
package blobstest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/myelin-chat/myelin/internal/media"
)

// BigSize is the size of the streamed blob of the round-trip test.
const BigSize = 20 << 20

// Run runs the contract against stores made by newStore; each subtest gets
// a fresh store.
func Run(t *testing.T, newStore func(t *testing.T) media.Blobs) {
	t.Run("RoundTrip", func(t *testing.T) {
		s := newStore(t)
		ctx := context.Background()
		for _, n := range []int{0, 1, 1000, 64 << 10} {
			data := pseudoRandom(uint64(n), n)
			key := keyOf(data)
			if err := s.Put(ctx, key, bytes.NewReader(data), int64(n)); err != nil {
				t.Fatalf("Put %d bytes: %v", n, err)
			}
			got, size := readAll(t, s, key)
			if size != int64(n) || !bytes.Equal(got, data) {
				t.Fatalf("Open after Put of %d bytes: got %d bytes (size %d)", n, len(got), size)
			}
		}
	})
	t.Run("Streamed20MB", func(t *testing.T) {
		s := newStore(t)
		ctx := context.Background()
		want := sha256.New()
		if _, err := io.Copy(want, stream(7, BigSize)); err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprintf("%x", want.Sum(nil))
		if err := s.Put(ctx, key, stream(7, BigSize), BigSize); err != nil {
			t.Fatalf("Put 20 MB: %v", err)
		}
		rc, size, err := s.Open(ctx, key)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer rc.Close()
		got := sha256.New()
		n, err := io.Copy(got, rc)
		if err != nil {
			t.Fatalf("reading 20 MB blob: %v", err)
		}
		if size != BigSize || n != BigSize || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
			t.Fatalf("20 MB blob came back as %d bytes (size %d), hash equal %v", n, size, bytes.Equal(got.Sum(nil), want.Sum(nil)))
		}
	})
	t.Run("PutIdempotent", func(t *testing.T) {
		s := newStore(t)
		ctx := context.Background()
		first := []byte("the first bytes")
		key := keyOf(first)
		if err := s.Put(ctx, key, bytes.NewReader(first), int64(len(first))); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, key, bytes.NewReader(first), int64(len(first))); err != nil {
			t.Fatalf("second Put of the same key: %v", err)
		}
		// An existing key is not rewritten, whatever the reader holds.
		other := []byte("other bytes, longer than the first")
		if err := s.Put(ctx, key, bytes.NewReader(other), int64(len(other))); err != nil {
			t.Fatalf("Put of an existing key: %v", err)
		}
		if got, _ := readAll(t, s, key); !bytes.Equal(got, first) {
			t.Fatalf("after a repeated Put the blob is %q, want %q", got, first)
		}
	})
	t.Run("ConcurrentPuts", func(t *testing.T) {
		s := newStore(t)
		ctx := context.Background()
		data := pseudoRandom(3, 100<<10)
		key := keyOf(data)
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() { errs[i] = s.Put(ctx, key, bytes.NewReader(data), int64(len(data))) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("concurrent Put: %v", err)
			}
		}
		if got, _ := readAll(t, s, key); !bytes.Equal(got, data) {
			t.Fatal("concurrent Puts of one key left other bytes")
		}
	})
	t.Run("FailedPutLeavesNothing", func(t *testing.T) {
		s := newStore(t)
		ctx := context.Background()
		data := pseudoRandom(5, 10<<10)
		short := keyOf(append([]byte("short"), data...))
		if err := s.Put(ctx, short, bytes.NewReader(data[:5000]), int64(len(data))); err == nil {
			t.Fatal("Put of a body shorter than its size succeeded")
		}
		if _, _, err := s.Open(ctx, short); !errors.Is(err, media.ErrBlobNotFound) {
			t.Fatalf("Open after a short Put: %v, want ErrBlobNotFound", err)
		}
		broken := keyOf(append([]byte("broken"), data...))
		r := io.MultiReader(bytes.NewReader(data[:3000]), errReader{})
		if err := s.Put(ctx, broken, r, int64(len(data))); err == nil {
			t.Fatal("Put of a failing reader succeeded")
		}
		if _, _, err := s.Open(ctx, broken); !errors.Is(err, media.ErrBlobNotFound) {
			t.Fatalf("Open after a failed Put: %v, want ErrBlobNotFound", err)
		}
		// The key is still free for a good Put.
		if err := s.Put(ctx, broken, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatalf("Put after a failed Put: %v", err)
		}
		if got, _ := readAll(t, s, broken); !bytes.Equal(got, data) {
			t.Fatal("Put after a failed Put stored other bytes")
		}
	})
	t.Run("MissingKey", func(t *testing.T) {
		s := newStore(t)
		_, _, err := s.Open(context.Background(), keyOf([]byte("never stored")))
		if !errors.Is(err, media.ErrBlobNotFound) {
			t.Fatalf("Open of a missing key: %v, want ErrBlobNotFound", err)
		}
	})
	t.Run("Delete", func(t *testing.T) {
		s := newStore(t)
		ctx := context.Background()
		data := []byte("to be deleted")
		key := keyOf(data)
		keep := []byte("to be kept")
		for _, b := range [][]byte{data, keep} {
			if err := s.Put(ctx, keyOf(b), bytes.NewReader(b), int64(len(b))); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Delete(ctx, key); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if _, _, err := s.Open(ctx, key); !errors.Is(err, media.ErrBlobNotFound) {
			t.Fatalf("Open after Delete: %v, want ErrBlobNotFound", err)
		}
		if err := s.Delete(ctx, key); err != nil {
			t.Fatalf("Delete of a missing key: %v", err)
		}
		if got, _ := readAll(t, s, keyOf(keep)); !bytes.Equal(got, keep) {
			t.Fatal("Delete of one key changed another")
		}
		// A deleted key can be stored again.
		if err := s.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatalf("Put after Delete: %v", err)
		}
		if got, _ := readAll(t, s, key); !bytes.Equal(got, data) {
			t.Fatal("Put after Delete stored other bytes")
		}
	})
	t.Run("DerivedKey", func(t *testing.T) {
		s := newStore(t)
		ctx := context.Background()
		data := []byte("a thumbnail")
		key := keyOf([]byte("original")) + "-thumb-32x32-crop"
		if err := s.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		if got, _ := readAll(t, s, key); !bytes.Equal(got, data) {
			t.Fatal("derived key round trip differs")
		}
	})
}

func keyOf(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }

func readAll(t *testing.T, s media.Blobs, key string) ([]byte, int64) {
	t.Helper()
	rc, size, err := s.Open(context.Background(), key)
	if err != nil {
		t.Fatalf("Open %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading %s: %v", key, err)
	}
	return b, size
}

func pseudoRandom(seed uint64, n int) []byte {
	b, _ := io.ReadAll(stream(seed, n))
	return b
}

// stream yields n deterministic pseudo-random bytes without holding them.
func stream(seed uint64, n int) io.Reader {
	var s [32]byte
	s[0] = byte(seed)
	return io.LimitReader(rand.NewChaCha8(s), int64(n))
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("reader broke") }
