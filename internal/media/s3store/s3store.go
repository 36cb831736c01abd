// Package s3store keeps media bytes in an S3-compatible bucket: it
// implements media.Blobs with the MinIO client, streaming uploads
// (multipart above one part, or when the size is unknown) and downloads
// without holding a blob in memory. It imports media (for the interface and
// ErrBlobNotFound) and config; homeserver chooses it when
// media_storage.backend is "s3".
package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/media"
)

// partSize is the multipart part size: the most a Put buffers at once.
// S3 wants at least 5 MiB per part except the last.
const partSize = 8 << 20

// Store is a media.Blobs over one bucket. It is safe for concurrent use.
type Store struct {
	client *minio.Client
	bucket string
	prefix string
	log    *slog.Logger
}

var _ media.Blobs = (*Store)(nil)

// New connects to the bucket in cfg, creating it when it does not exist,
// and fails when the service cannot be reached or refuses the credentials.
func New(ctx context.Context, cfg config.S3, log *slog.Logger) (*Store, error) {
	return newStore(ctx, cfg, log, nil)
}

func newStore(ctx context.Context, cfg config.S3, log *slog.Logger, transport http.RoundTripper) (*Store, error) {
	endpoint, secure := cfg.Endpoint, cfg.UseSSL
	if strings.Contains(endpoint, "://") {
		u, err := url.Parse(endpoint)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("media_storage.s3.endpoint %q: want host[:port] or an http(s) URL", endpoint)
		}
		endpoint, secure = u.Host, u.Scheme == "https"
	}
	creds := credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	if cfg.AccessKey == "" {
		creds = credentials.NewEnvAWS()
	}
	client, err := minio.New(endpoint, &minio.Options{
		Creds:     creds,
		Secure:    secure,
		Region:    cfg.Region,
		Transport: transport,
	})
	if err != nil {
		return nil, fmt.Errorf("S3 client for %s: %w", endpoint, err)
	}
	exists, err := client.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("checking S3 bucket %s at %s: %w", cfg.Bucket, endpoint, err)
	}
	if !exists {
		if err := client.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region}); err != nil {
			return nil, fmt.Errorf("creating S3 bucket %s at %s: %w", cfg.Bucket, endpoint, err)
		}
		log.Info("created S3 media bucket", "bucket", cfg.Bucket, "endpoint", endpoint)
	}
	return &Store{client: client, bucket: cfg.Bucket, prefix: cfg.Prefix, log: log}, nil
}

// Put stores size bytes of r under key (size < 0: unknown, read to EOF).
// An existing key is left as it is, without reading r. S3 makes an object
// visible only once its upload completes, so a failed or short Put leaves
// nothing under key; a failed multipart upload is aborted.
//
// Two concurrent Puts of a new key both upload and the later one wins;
// keys name their content, so both carry the same bytes.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if _, err := s.client.StatObject(ctx, s.bucket, s.prefix+key, minio.StatObjectOptions{}); err == nil {
		return nil
	} else if !notFound(err) {
		return fmt.Errorf("checking media blob %s in S3: %w", key, err)
	}
	body := io.Reader(&exactReader{r: r, left: size})
	if size < 0 {
		// A plain wrapper hides any ReaderAt, which would let the
		// client read parts in parallel from a file we do not own.
		body = struct{ io.Reader }{r}
	}
	_, err := s.client.PutObject(ctx, s.bucket, s.prefix+key, body, size, minio.PutObjectOptions{
		ContentType: "application/octet-stream",
		PartSize:    partSize,
		NumThreads:  1,
	})
	if err != nil {
		return fmt.Errorf("storing media blob %s in S3: %w", key, err)
	}
	return nil
}

// Open returns the blob's bytes as a stream and its size, or an error
// wrapping media.ErrBlobNotFound.
func (s *Store) Open(ctx context.Context, key string) (io.ReadCloser, int64, error) {
	obj, err := s.client.GetObject(ctx, s.bucket, s.prefix+key, minio.GetObjectOptions{})
	if err != nil {
		return nil, 0, fmt.Errorf("opening media blob %s in S3: %w", key, err)
	}
	// GetObject is lazy: Stat sends the request and reports a missing key.
	info, err := obj.Stat()
	if err != nil {
		_ = obj.Close()
		if notFound(err) {
			return nil, 0, fmt.Errorf("media blob %s: %w", key, media.ErrBlobNotFound)
		}
		return nil, 0, fmt.Errorf("opening media blob %s in S3: %w", key, err)
	}
	return obj, info.Size, nil
}

// Delete removes the blob; S3 answers a missing key with success too.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.client.RemoveObject(ctx, s.bucket, s.prefix+key, minio.RemoveObjectOptions{}); err != nil && !notFound(err) {
		return fmt.Errorf("deleting media blob %s in S3: %w", key, err)
	}
	return nil
}

func notFound(err error) bool {
	resp := minio.ToErrorResponse(err)
	return resp.Code == minio.NoSuchKey || resp.StatusCode == http.StatusNotFound && resp.Code != minio.NoSuchBucket
}

// exactReader fails the upload when r holds fewer or more than the
// announced bytes, so a short body never completes an object.
type exactReader struct {
	r    io.Reader
	left int64
}

var errSizeMismatch = errors.New("media blob size differs from the size announced")

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left == 0 {
		// Probe for a byte past the end: there must be none.
		var one [1]byte
		n, err := e.r.Read(one[:])
		if n > 0 {
			return 0, errSizeMismatch
		}
		if err == nil {
			return 0, nil
		}
		if errors.Is(err, io.EOF) {
			return 0, io.EOF
		}
		return 0, err
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if errors.Is(err, io.EOF) {
		if e.left > 0 {
			return n, fmt.Errorf("%w: %d bytes missing: %w", errSizeMismatch, e.left, io.ErrUnexpectedEOF)
		}
		if n > 0 {
			return n, nil
		}
	}
	return n, err
}
