package config

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v4"
)

// Media configures the content repository (internal/media). Its keys sit
// at the top level of the file, with the names and forms Synapse's
// homeserver.yaml gives them, so a Synapse config carries over as is.
type Media struct {
	// MaxUploadSize caps uploads and the remote media fetched for users;
	// larger ones get 413 M_TOO_LARGE (502 for remote media). A size such
	// as 50M, 1G or 1048576. Default 50M. Env: MYELIN_MAX_UPLOAD_SIZE.
	// Synapse: max_upload_size.
	MaxUploadSize Size `yaml:"max_upload_size"`
	// MediaStorePath is the directory of the media blobs on local disk.
	// Default <data dir>/media_store. Env: MYELIN_MEDIA_STORE_PATH.
	// Synapse: media_store_path.
	MediaStorePath string `yaml:"media_store_path"`
	// EnableAuthenticatedMedia freezes the legacy unauthenticated media
	// endpoints (/_matrix/media/{v3,r0,v1}/download, thumbnail): media
	// stored while it is true is served only on the authenticated
	// /_matrix/client/v1/media endpoints and federation; media stored
	// while it was false stays reachable on the legacy ones too. Default
	// true. Env: MYELIN_ENABLE_AUTHENTICATED_MEDIA. Synapse:
	// enable_authenticated_media.
	EnableAuthenticatedMedia bool `yaml:"enable_authenticated_media"`
	// MaxImagePixels refuses to thumbnail images with more pixels than
	// this, read from the image header before decoding. Default 32M.
	// Env: MYELIN_MAX_IMAGE_PIXELS. Synapse: max_image_pixels.
	MaxImagePixels Size `yaml:"max_image_pixels"`
	// ThumbnailSizes are the thumbnails made of images, each on first
	// request; a request is answered with the nearest one. Default 32×32
	// crop, 96×96 crop, 320×240 scale, 640×480 scale, 800×600 scale.
	// Synapse: thumbnail_sizes.
	ThumbnailSizes []ThumbnailSize `yaml:"thumbnail_sizes"`
	// MaxPendingMediaUploads caps the media IDs a user has created
	// (POST /_matrix/media/v1/create) and not uploaded yet; more get 429.
	// Default 5. Synapse: max_pending_media_uploads.
	MaxPendingMediaUploads int `yaml:"max_pending_media_uploads"`
	// UnusedExpirationTime is how long a created media ID waits for its
	// upload. Default 24h. Synapse: unused_expiration_time.
	UnusedExpirationTime Duration `yaml:"unused_expiration_time"`
	// MediaRetention deletes media not accessed for a while (hourly, from
	// the janitor). Synapse: media_retention.
	MediaRetention MediaRetention `yaml:"media_retention"`
	// RcMediaCreate limits uploads and media ID creations per user (its
	// own bucket, on even when rate_limit is off). Synapse: rc_media_create.
	RcMediaCreate MediaRate `yaml:"rc_media_create"`
	// MediaUserQuota caps the bytes a user may have uploaded in total;
	// uploads past it get 403 M_FORBIDDEN. A size such as 1G; 0: no quota.
	// Env: MYELIN_MEDIA_USER_QUOTA.
	MediaUserQuota Size `yaml:"media_user_quota"`
}

// ThumbnailSize is one pre-generated thumbnail size.
type ThumbnailSize struct {
	Width  int `yaml:"width"`
	Height int `yaml:"height"`
	// Method is crop or scale.
	Method string `yaml:"method"`
}

// MediaRetention holds the lifetimes of media since last access; zero
// keeps media forever.
type MediaRetention struct {
	// LocalMediaLifetime deletes local uploads not downloaded for this
	// long. Env: MYELIN_LOCAL_MEDIA_LIFETIME.
	LocalMediaLifetime Duration `yaml:"local_media_lifetime"`
	// RemoteMediaLifetime drops cached remote media not accessed for this
	// long (it is fetched again on the next request).
	// Env: MYELIN_REMOTE_MEDIA_LIFETIME.
	RemoteMediaLifetime Duration `yaml:"remote_media_lifetime"`
}

// MediaRate is a token bucket: PerSecond sustained, BurstCount at once.
type MediaRate struct {
	PerSecond  float64 `yaml:"per_second"`
	BurstCount int     `yaml:"burst_count"`
}

func defaultMedia() Media {
	return Media{
		MaxUploadSize:            50 << 20,
		EnableAuthenticatedMedia: true,
		MaxImagePixels:           32 << 20,
		ThumbnailSizes: []ThumbnailSize{
			{32, 32, "crop"}, {96, 96, "crop"}, {320, 240, "scale"}, {640, 480, "scale"}, {800, 600, "scale"},
		},
		MaxPendingMediaUploads: 5,
		UnusedExpirationTime:   Duration(24 * time.Hour),
		RcMediaCreate:          MediaRate{PerSecond: 10, BurstCount: 50},
	}
}

// Size is a byte count written as Synapse does: 1048576, 512K, 50M, 1G.
type Size int64

var sizeForm = regexp.MustCompile(`^(\d+)\s*([KMGTkmgt]?)$`)

// ParseSize reads a Size.
func ParseSize(s string) (Size, error) {
	m := sizeForm.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("%q is not a size such as 50M, 1G or 1048576", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	shift := map[string]uint{"": 0, "k": 10, "m": 20, "g": 30, "t": 40}[strings.ToLower(m[2])]
	return Size(n << shift), nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("want a size such as 50M, 1G or 1048576")
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (s Size) MarshalYAML() (any, error) { return int64(s), nil }

// Duration is a length of time written as Synapse does: a number of
// milliseconds, or a number with a unit s, m, h, d, w or y (24h, 90d).
type Duration time.Duration

var durationForm = regexp.MustCompile(`^(\d+)\s*(ms|[smhdwy]?)$`)

// ParseDuration reads a Duration.
func ParseDuration(s string) (Duration, error) {
	m := durationForm.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("%q is not a duration such as 24h, 7d or a number of milliseconds", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("duration %q: %w", s, err)
	}
	unit := map[string]time.Duration{"": time.Millisecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute,
		"h": time.Hour, "d": 24 * time.Hour, "w": 7 * 24 * time.Hour, "y": 365 * 24 * time.Hour}[m[2]]
	return Duration(time.Duration(n) * unit), nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("want a duration such as 24h, 7d or a number of milliseconds")
	}
	if n.Tag == "!!null" {
		*d = 0
		return nil
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).Milliseconds(), nil }

// validate checks the media settings, naming the key at fault.
func (m *Media) validate() error {
	if m.MaxUploadSize <= 0 {
		return errors.New("max_upload_size must be positive")
	}
	if m.MaxImagePixels <= 0 {
		return errors.New("max_image_pixels must be positive")
	}
	for i, t := range m.ThumbnailSizes {
		if t.Width <= 0 || t.Height <= 0 || (t.Method != "crop" && t.Method != "scale") {
			return fmt.Errorf("thumbnail_sizes[%d]: want positive width and height and method crop or scale", i)
		}
	}
	if m.RcMediaCreate.PerSecond <= 0 || m.RcMediaCreate.BurstCount <= 0 {
		return errors.New("rc_media_create.per_second and burst_count must be positive")
	}
	if m.MaxPendingMediaUploads <= 0 {
		return errors.New("max_pending_media_uploads must be positive")
	}
	return nil
}

// applyMediaEnv reads the MYELIN_* variables of the media settings.
func applyMediaEnv(m *Media, env func(string) (string, bool)) error {
	var errs []error
	size := func(key string, dst *Size) {
		if v, ok := env(key); ok && v != "" {
			s, err := ParseSize(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", key, err))
				return
			}
			*dst = s
		}
	}
	dur := func(key string, dst *Duration) {
		if v, ok := env(key); ok && v != "" {
			d, err := ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", key, err))
				return
			}
			*dst = d
		}
	}
	size("MYELIN_MAX_UPLOAD_SIZE", &m.MaxUploadSize)
	size("MYELIN_MAX_IMAGE_PIXELS", &m.MaxImagePixels)
	size("MYELIN_MEDIA_USER_QUOTA", &m.MediaUserQuota)
	dur("MYELIN_LOCAL_MEDIA_LIFETIME", &m.MediaRetention.LocalMediaLifetime)
	dur("MYELIN_REMOTE_MEDIA_LIFETIME", &m.MediaRetention.RemoteMediaLifetime)
	if v, ok := env("MYELIN_MEDIA_STORE_PATH"); ok {
		m.MediaStorePath = v
	}
	if v, ok := env("MYELIN_ENABLE_AUTHENTICATED_MEDIA"); ok && v != "" {
		b, err := parseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("MYELIN_ENABLE_AUTHENTICATED_MEDIA=%q: want true or false", v))
		} else {
			m.EnableAuthenticatedMedia = b
		}
	}
	return errors.Join(errs...)
}

// mediaHandlers are the Synapse keys of the media settings: each is
// decoded with the Myelin form, which is Synapse's.
func (r *synapseReader) mediaHandlers() map[string]func(string, *yaml.Node) {
	m := &r.cfg.Media
	decode := func(dst any, form string) func(string, *yaml.Node) {
		return func(key string, n *yaml.Node) {
			if err := n.Decode(dst); err != nil {
				r.bad(key, n, form)
			}
		}
	}
	return map[string]func(string, *yaml.Node){
		"max_upload_size":            decode(&m.MaxUploadSize, "a size such as 50M, 1G or 1048576"),
		"media_store_path":           decode(&m.MediaStorePath, "a directory"),
		"enable_authenticated_media": decode(&m.EnableAuthenticatedMedia, "true or false"),
		"max_image_pixels":           decode(&m.MaxImagePixels, "a size such as 32M"),
		"thumbnail_sizes":            decode(&m.ThumbnailSizes, "a list of {width, height, method}"),
		"max_pending_media_uploads":  decode(&m.MaxPendingMediaUploads, "a number"),
		"unused_expiration_time":     decode(&m.UnusedExpirationTime, "a duration such as 24h"),
		"media_retention":            decode(&m.MediaRetention, "{local_media_lifetime, remote_media_lifetime} durations"),
		"rc_media_create":            decode(&m.RcMediaCreate, "{per_second, burst_count}"),
	}
}
