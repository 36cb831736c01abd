// Package diskstore keeps media blobs as files under one directory (the
// media_store_path): key "abcdef…" is stored at ab/cd/abcdef…. It
// implements media.Blobs, plus Adopt, which moves a finished temporary
// file into place without copying it (uploads are written to TempDir
// first, hashed as they arrive, then adopted under their SHA-256).
//
// diskstore imports only media from Myelin.
package diskstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/myelin-chat/myelin/internal/media"
)

// Store is a directory of blobs. It is safe for concurrent use: a blob
// appears under its name only complete, by rename.
type Store struct {
	root string
}

// New returns the store at root, creating it (and its tmp directory).
// Files left in tmp by an earlier process (uploads cut off by a crash)
// are removed: one process owns a store.
func New(root string) (*Store, error) {
	tmp := filepath.Join(root, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("creating the media store %s: %w", root, err)
	}
	if left, err := os.ReadDir(tmp); err == nil {
		for _, e := range left {
			_ = os.Remove(filepath.Join(tmp, e.Name()))
		}
	}
	return &Store{root: root}, nil
}

// TempDir is where uploads are spooled: on the same file system as the
// blobs, so that Adopt is a rename.
func (s *Store) TempDir() string { return filepath.Join(s.root, "tmp") }

func (s *Store) path(key string) (string, error) {
	if len(key) < 5 || strings.ContainsAny(key, `/\.`) {
		return "", fmt.Errorf("media blob key %q is not a valid name", key)
	}
	return filepath.Join(s.root, key[0:2], key[2:4], key), nil
}

// Put implements media.Blobs.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	dst, err := s.path(key)
	if err != nil {
		return err
	}
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	f, err := os.CreateTemp(s.TempDir(), "put-*")
	if err != nil {
		return fmt.Errorf("storing media blob %s: %w", key, err)
	}
	defer os.Remove(f.Name())
	n, err := io.Copy(f, io.LimitReader(r, size))
	if err == nil && n != size {
		err = fmt.Errorf("short write: %d of %d bytes", n, size)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("storing media blob %s: %w", key, err)
	}
	return s.Adopt(ctx, key, f.Name())
}

// Adopt moves the complete file at tmpPath (in TempDir) to key. When key
// exists already the file is removed and the blob kept.
func (s *Store) Adopt(_ context.Context, key, tmpPath string) error {
	dst, err := s.path(key)
	if err != nil {
		return err
	}
	if _, err := os.Stat(dst); err == nil {
		return os.Remove(tmpPath)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fmt.Errorf("storing media blob %s: %w", key, err)
	}
	if err := os.Rename(tmpPath, dst); err != nil {
		return fmt.Errorf("storing media blob %s: %w", key, err)
	}
	return nil
}

// Open implements media.Blobs.
func (s *Store) Open(_ context.Context, key string) (io.ReadCloser, int64, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("media blob %s: %w", key, media.ErrBlobNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("opening media blob %s: %w", key, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("opening media blob %s: %w", key, err)
	}
	return f, st.Size(), nil
}

// Delete implements media.Blobs.
func (s *Store) Delete(_ context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting media blob %s: %w", key, err)
	}
	return nil
}
