package config

import (
	"errors"
	"fmt"
)

// MediaStorage selects where the bytes of media are kept; their metadata
// is always in the database.
type MediaStorage struct {
	// Backend is "disk" (the default, also when empty) or "s3".
	// Env: MYELIN_MEDIA_STORAGE_BACKEND.
	Backend string `yaml:"backend"`
	// S3 is the bucket used when Backend is "s3".
	S3 S3 `yaml:"s3"`
}

// S3 locates an S3-compatible bucket (AWS S3, MinIO, Garage, SeaweedFS,
// Ceph RGW, ...).
type S3 struct {
	// Endpoint is the service's host[:port] (s3.eu-west-1.amazonaws.com,
	// minio.internal:9000), or a URL whose scheme then sets UseSSL.
	// Env: MYELIN_MEDIA_S3_ENDPOINT.
	Endpoint string `yaml:"endpoint"`
	// Bucket holds the media. It is created at start when missing.
	// Env: MYELIN_MEDIA_S3_BUCKET.
	Bucket string `yaml:"bucket"`
	// Region of the bucket; empty lets the client ask the service.
	// Env: MYELIN_MEDIA_S3_REGION.
	Region string `yaml:"region"`
	// AccessKey and SecretKey are the credentials. Empty: the standard
	// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY variables are used.
	// Env: MYELIN_MEDIA_S3_ACCESS_KEY, MYELIN_MEDIA_S3_SECRET_KEY.
	AccessKey string `yaml:"access_key"`
	SecretKey string `yaml:"secret_key"`
	// UseSSL talks HTTPS to the endpoint. Default true.
	// Env: MYELIN_MEDIA_S3_USE_SSL.
	UseSSL bool `yaml:"use_ssl"`
	// Prefix is put before every object key, e.g. "media/", so the bucket
	// can be shared. Env: MYELIN_MEDIA_S3_PREFIX.
	Prefix string `yaml:"prefix"`
}

func applyMediaStorageEnv(c *Config, env func(string) (string, bool)) error {
	m := &c.MediaStorage
	for key, dst := range map[string]*string{
		"MYELIN_MEDIA_STORAGE_BACKEND": &m.Backend,
		"MYELIN_MEDIA_S3_ENDPOINT":     &m.S3.Endpoint,
		"MYELIN_MEDIA_S3_BUCKET":       &m.S3.Bucket,
		"MYELIN_MEDIA_S3_REGION":       &m.S3.Region,
		"MYELIN_MEDIA_S3_ACCESS_KEY":   &m.S3.AccessKey,
		"MYELIN_MEDIA_S3_SECRET_KEY":   &m.S3.SecretKey,
		"MYELIN_MEDIA_S3_PREFIX":       &m.S3.Prefix,
	} {
		if v, ok := env(key); ok {
			*dst = v
		}
	}
	if v, ok := env("MYELIN_MEDIA_S3_USE_SSL"); ok && v != "" {
		b, err := parseBool(v)
		if err != nil {
			return fmt.Errorf("MYELIN_MEDIA_S3_USE_SSL=%q: want true or false", v)
		}
		m.S3.UseSSL = b
	}
	return nil
}

func (m MediaStorage) validate() error {
	switch m.Backend {
	case "", "disk":
		return nil
	case "s3":
		if m.S3.Endpoint == "" || m.S3.Bucket == "" {
			return errors.New("media_storage.backend s3 needs media_storage.s3.endpoint and .bucket (MYELIN_MEDIA_S3_ENDPOINT, MYELIN_MEDIA_S3_BUCKET)")
		}
		return nil
	}
	return fmt.Errorf("media_storage.backend %q (MYELIN_MEDIA_STORAGE_BACKEND): want disk or s3", m.Backend)
}
