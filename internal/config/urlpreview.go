package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v4"
)

// URLPreview configures GET /_matrix/client/v1/media/preview_url. The keys
// are Synapse's, at the top level of the file.
type URLPreview struct {
	// Enabled serves URL previews: the server fetches pages its users ask
	// about. Default false, as in Synapse. Env: MYELIN_URL_PREVIEW_ENABLED.
	Enabled bool `yaml:"url_preview_enabled"`
	// IPRangeWhitelist are CIDRs previews may reach even though they are
	// private, loopback or otherwise refused (e.g. an intranet wiki). It
	// wins over IPRangeBlacklist. Env: MYELIN_URL_PREVIEW_IP_RANGE_WHITELIST
	// (comma-separated).
	IPRangeWhitelist []string `yaml:"url_preview_ip_range_whitelist"`
	// IPRangeBlacklist are CIDRs refused on top of the built-in refusal of
	// every non-public range (loopback, RFC 1918, CGNAT, link-local, ULA,
	// multicast, documentation, reserved), which applies even when this is
	// empty; unlike Synapse, Myelin needs no blacklist to enable previews.
	// Env: MYELIN_URL_PREVIEW_IP_RANGE_BLACKLIST (comma-separated).
	IPRangeBlacklist []string `yaml:"url_preview_ip_range_blacklist"`
	// URLBlacklist refuses URLs by their parts, as in Synapse: each entry
	// maps URL attributes (scheme, netloc, hostname, port, path, query,
	// fragment, username, password) to a glob, or a regular expression
	// when it starts with ^; a URL matching every attribute of one entry is
	// refused with 403.
	URLBlacklist []map[string]string `yaml:"url_preview_url_blacklist"`
	// MaxSpiderSize caps the bytes read of a previewed page or image.
	// HTML is parsed up to that point; a larger image is not kept.
	// Default 10 MiB. Env: MYELIN_URL_PREVIEW_MAX_SIZE.
	MaxSpiderSize int64 `yaml:"max_spider_size"`
}

// URLBlacklistAttrs are the URL attributes a url_preview_url_blacklist entry
// may name.
var URLBlacklistAttrs = []string{"scheme", "netloc", "hostname", "port", "path", "query", "fragment", "username", "password"}

func applyURLPreviewEnv(c *Config, env func(string) (string, bool)) error {
	p := &c.URLPreview
	if v, ok := env("MYELIN_URL_PREVIEW_ENABLED"); ok && v != "" {
		b, err := parseBool(v)
		if err != nil {
			return fmt.Errorf("MYELIN_URL_PREVIEW_ENABLED=%q: want true or false", v)
		}
		p.Enabled = b
	}
	if v, ok := env("MYELIN_URL_PREVIEW_IP_RANGE_WHITELIST"); ok {
		p.IPRangeWhitelist = splitList(v)
	}
	if v, ok := env("MYELIN_URL_PREVIEW_IP_RANGE_BLACKLIST"); ok {
		p.IPRangeBlacklist = splitList(v)
	}
	if v, ok := env("MYELIN_URL_PREVIEW_MAX_SIZE"); ok && v != "" {
		n, err := parseSize(v)
		if err != nil {
			return fmt.Errorf("MYELIN_URL_PREVIEW_MAX_SIZE=%q: %w", v, err)
		}
		p.MaxSpiderSize = n
	}
	return nil
}

func (p URLPreview) validate() error {
	for key, list := range map[string][]string{
		"url_preview_ip_range_whitelist": p.IPRangeWhitelist,
		"url_preview_ip_range_blacklist": p.IPRangeBlacklist,
	} {
		for _, s := range list {
			if _, err := netip.ParsePrefix(s); err != nil {
				if _, err := netip.ParseAddr(s); err != nil {
					return fmt.Errorf("%s: %q is not a CIDR such as 10.0.0.0/8", key, s)
				}
			}
		}
	}
	for i, entry := range p.URLBlacklist {
		if len(entry) == 0 {
			return fmt.Errorf("url_preview_url_blacklist[%d]: an empty entry would refuse every URL", i)
		}
		for attr, pattern := range entry {
			if !validURLAttr(attr) {
				return fmt.Errorf("url_preview_url_blacklist[%d]: unknown attribute %q, want one of %s", i, attr, strings.Join(URLBlacklistAttrs, ", "))
			}
			if strings.HasPrefix(pattern, "^") {
				if _, err := regexp.Compile(pattern); err != nil {
					return fmt.Errorf("url_preview_url_blacklist[%d].%s: %w", i, attr, err)
				}
			}
		}
	}
	if p.MaxSpiderSize <= 0 {
		return fmt.Errorf("max_spider_size must be positive")
	}
	return nil
}

func validURLAttr(a string) bool {
	for _, v := range URLBlacklistAttrs {
		if a == v {
			return true
		}
	}
	return false
}

// parseSize reads Synapse's size form: 1048576, 512K, 10M, 1G.
func parseSize(s string) (int64, error) {
	m := sizeRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("want a size such as 10M, 512K or 1048576")
	}
	var n int64
	if _, err := fmt.Sscan(m[1], &n); err != nil {
		return 0, fmt.Errorf("want a size such as 10M, 512K or 1048576")
	}
	switch strings.ToUpper(m[2]) {
	case "K":
		n <<= 10
	case "M":
		n <<= 20
	case "G":
		n <<= 30
	}
	return n, nil
}

// synapseURLPreview reads Synapse's url_preview_* keys and max_spider_size,
// including the newer allowlist/blocklist spellings.
func (r *synapseReader) urlPreviewHandlers() map[string]func(string, *yaml.Node) {
	p := &r.cfg.URLPreview
	list := func(dst *[]string) func(string, *yaml.Node) {
		return func(key string, n *yaml.Node) {
			if v, ok := r.strList(key, n); ok {
				*dst = v
			}
		}
	}
	urls := func(key string, n *yaml.Node) {
		var v []map[string]string
		if n.Tag != "!!null" && (n.Kind != yaml.SequenceNode || n.Decode(&v) != nil) {
			r.bad(key, n, "a list of mappings from URL attribute to pattern")
			return
		}
		p.URLBlacklist = v
	}
	return map[string]func(string, *yaml.Node){
		"url_preview_enabled": func(key string, n *yaml.Node) {
			if v, ok := r.boolean(key, n); ok {
				p.Enabled = v
			}
		},
		"url_preview_ip_range_whitelist": list(&p.IPRangeWhitelist),
		"url_preview_ip_range_allowlist": list(&p.IPRangeWhitelist),
		"url_preview_ip_range_blacklist": list(&p.IPRangeBlacklist),
		"url_preview_ip_range_blocklist": list(&p.IPRangeBlacklist),
		"url_preview_url_blacklist":      urls,
		"url_preview_url_blocklist":      urls,
		"max_spider_size": func(key string, n *yaml.Node) {
			var s string
			if n.Kind != yaml.ScalarNode {
				r.bad(key, n, "a size such as 10M")
				return
			}
			s = n.Value
			v, err := parseSize(s)
			if err != nil {
				r.bad(key, n, "a size such as 10M, 512K or 1048576")
				return
			}
			p.MaxSpiderSize = v
		},
		"url_preview_accept_language": func(key string, n *yaml.Node) {
			if _, ok := r.strList(key, n); ok {
				r.info("%s: accepted and ignored: previews ask for any language", key)
			}
		},
	}
}
