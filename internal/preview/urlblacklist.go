package preview

import (
	"net/url"
	"path"
	"regexp"
	"strings"
)

// urlRule is one url_preview_url_blacklist entry: a URL matching every
// attribute's pattern is refused.
type urlRule []urlPattern

type urlPattern struct {
	attr string
	re   *regexp.Regexp // for patterns starting with ^
	glob string
}

func compileURLRules(entries []map[string]string) ([]urlRule, error) {
	var rules []urlRule
	for _, e := range entries {
		var rule urlRule
		for attr, pattern := range e {
			p := urlPattern{attr: attr}
			if strings.HasPrefix(pattern, "^") {
				re, err := regexp.Compile(pattern)
				if err != nil {
					return nil, err
				}
				p.re = re
			} else {
				p.glob = pattern
			}
			rule = append(rule, p)
		}
		rules = append(rules, rule)
	}
	return rules, nil
}

// urlAttr returns a URL attribute named as in Python's urlsplit, which
// Synapse's url_preview_url_blacklist matches against; ok is false for an
// attribute the URL lacks (Synapse's None).
func urlAttr(u *url.URL, attr string) (string, bool) {
	switch attr {
	case "scheme":
		return u.Scheme, true
	case "netloc":
		return u.Host, true
	case "hostname":
		return strings.ToLower(u.Hostname()), u.Hostname() != ""
	case "port":
		return u.Port(), u.Port() != ""
	case "path":
		return u.EscapedPath(), true
	case "query":
		return u.RawQuery, true
	case "fragment":
		return u.EscapedFragment(), true
	case "username":
		if u.User == nil {
			return "", false
		}
		return u.User.Username(), true
	case "password":
		if u.User == nil {
			return "", false
		}
		p, ok := u.User.Password()
		return p, ok
	}
	return "", false
}

func (r urlRule) matches(u *url.URL) bool {
	for _, p := range r {
		v, ok := urlAttr(u, p.attr)
		if !ok {
			return false
		}
		if p.re != nil {
			// Python's re.match anchors at the start only.
			if loc := p.re.FindStringIndex(v); loc == nil || loc[0] != 0 {
				return false
			}
			continue
		}
		if !globMatch(p.glob, v) {
			return false
		}
	}
	return true
}

// globMatch is fnmatch: * and ? match any character, / included.
func globMatch(pattern, s string) bool {
	// path.Match treats / as a separator; fnmatch does not, so map / away
	// on both sides first.
	const slash = "\x00"
	ok, err := path.Match(strings.ReplaceAll(pattern, "/", slash), strings.ReplaceAll(s, "/", slash))
	return err == nil && ok
}
