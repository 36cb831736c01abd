// Package media is the content repository: uploads, downloads, thumbnails
// and remote media fetched over federation, with their metadata in the
// database and their bytes in a Blobs store (local disk, or S3 in
// media/s3store). It hooks into nothing on the event path; clientapi and
// federationapi register its routes.
package media

import (
	"context"
	"errors"
	"io"
)

// ErrBlobNotFound is returned (wrapped) by a Blobs store for a key it does
// not hold.
var ErrBlobNotFound = errors.New("media blob not found")

// Blobs stores the bytes of media by key. Keys are chosen by the media
// service (the hex SHA-256 of the content, so identical uploads are stored
// once, or a derived key for a thumbnail); a store never interprets them
// beyond using them as names. Implementations must be safe for concurrent
// use and must stream: neither Put nor Open may hold a whole blob in memory.
type Blobs interface {
	// Put stores size bytes read from r under key, replacing nothing: if
	// key already exists the call succeeds without rewriting it. A failed
	// or short Put leaves no partial blob visible under key.
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// Open returns the blob's bytes and its size, or ErrBlobNotFound.
	Open(ctx context.Context, key string) (io.ReadCloser, int64, error)
	// Delete removes the blob; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
}
