package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMediaStorageAndURLPreview(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "homeserver.yaml")
	yaml := `server_name: example.org
media_storage:
  backend: s3
  s3:
    endpoint: https://s3.example.org
    bucket: media
    region: eu-west-1
    use_ssl: true
url_preview_enabled: true
url_preview_ip_range_whitelist: ["10.1.0.0/16"]
url_preview_url_blacklist:
  - netloc: "*.internal"
max_spider_size: 2097152
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := Load(path, envOf(map[string]string{
		"MYELIN_MEDIA_S3_ACCESS_KEY": "ak", "MYELIN_MEDIA_S3_SECRET_KEY": "sk", "MYELIN_MEDIA_S3_PREFIX": "m/",
		"MYELIN_MEDIA_S3_USE_SSL":               "false",
		"MYELIN_URL_PREVIEW_IP_RANGE_BLACKLIST": "203.0.114.0/24, 198.51.0.0/16",
		"MYELIN_URL_PREVIEW_MAX_SIZE":           "5M",
	}), false)
	if err != nil {
		t.Fatal(err)
	}
	s3 := cfg.MediaStorage.S3
	if cfg.MediaStorage.Backend != "s3" || s3.Endpoint != "https://s3.example.org" || s3.Bucket != "media" || s3.Region != "eu-west-1" ||
		s3.AccessKey != "ak" || s3.SecretKey != "sk" || s3.Prefix != "m/" || s3.UseSSL {
		t.Errorf("media_storage = %+v", cfg.MediaStorage)
	}
	p := cfg.URLPreview
	if !p.Enabled || len(p.IPRangeWhitelist) != 1 || len(p.IPRangeBlacklist) != 2 || p.MaxSpiderSize != 5<<20 ||
		len(p.URLBlacklist) != 1 || p.URLBlacklist[0]["netloc"] != "*.internal" {
		t.Errorf("url preview = %+v", p)
	}

	d := Defaults()
	if d.URLPreview.Enabled || d.MediaStorage.Backend != "" || !d.MediaStorage.S3.UseSSL || d.URLPreview.MaxSpiderSize != 10<<20 {
		t.Errorf("defaults: %+v %+v", d.URLPreview, d.MediaStorage)
	}

	for name, c := range map[string]struct {
		mutate func(*Config)
		want   string
	}{
		"unknown backend": {func(c *Config) { c.MediaStorage.Backend = "ftp" }, "media_storage.backend"},
		"s3 sans bucket":  {func(c *Config) { c.MediaStorage = MediaStorage{Backend: "s3", S3: S3{Endpoint: "x"}} }, "bucket"},
		"bad cidr":        {func(c *Config) { c.URLPreview.IPRangeWhitelist = []string{"10.0.0.0/40"} }, "url_preview_ip_range_whitelist"},
		"bad attribute":   {func(c *Config) { c.URLPreview.URLBlacklist = []map[string]string{{"host": "x"}} }, "unknown attribute"},
		"bad regex":       {func(c *Config) { c.URLPreview.URLBlacklist = []map[string]string{{"path": "^("}} }, "url_preview_url_blacklist[0].path"},
	} {
		bad := d
		bad.ServerName = "example.org"
		c.mutate(&bad)
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Validate = %v, want an error naming %q", name, err, c.want)
		}
	}
}
