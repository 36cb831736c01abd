package federationapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"maunium.net/go/mautrix/crypto/canonicaljson"
	"maunium.net/go/mautrix/federation/signutil"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/fedclient"
	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

// KeyFunc returns a server's verify key and when it stops being valid;
// (*keys.Ring).VerifyKey has this shape.
type KeyFunc func(ctx context.Context, server string, keyID id.KeyID, minValidUntil time.Time) (id.SigningKey, time.Time, error)

// Authenticator checks the X-Matrix Authorization header of inbound
// federation requests ("Request Authentication" in the server-server API).
type Authenticator struct {
	// ServerName is ours; a request naming another destination is refused.
	ServerName string
	// Keys looks up the origin's keys, normally ring.VerifyKey.
	Keys KeyFunc
	// MaxBody caps the body read for verification; 0 means 50 MiB. An
	// httpx.LimitBody in front gives the 413 earlier.
	MaxBody int64
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

type originKey struct{}

// Origin returns the authenticated origin server of a request that passed
// the Authenticator, or "".
func Origin(ctx context.Context) string {
	s, _ := ctx.Value(originKey{}).(string)
	return s
}

// Require wraps h so that it only runs for requests carrying a valid
// X-Matrix signature; h finds the origin with Origin(r.Context()).
func (a *Authenticator) Require(h httpx.HandlerFunc) httpx.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		authed, err := a.Authenticate(r)
		if err != nil {
			return err
		}
		return h(w, authed)
	}
}

// XMatrix is one parsed X-Matrix Authorization header.
type XMatrix struct {
	Origin      string
	Destination string // empty when the sender omitted it (before v1.3)
	Key         id.KeyID
	Sig         string
}

// Authenticate verifies r's X-Matrix header(s) and returns r with the
// origin in its context and its body restored for the handler. Any of
// several headers may carry the valid signature, but all must name the
// same origin. Failures are 401 M_UNAUTHORIZED.
func (a *Authenticator) Authenticate(r *http.Request) (*http.Request, error) {
	var headers []XMatrix
	for _, v := range r.Header.Values("Authorization") {
		x, ok, err := ParseXMatrix(v)
		if !ok {
			continue
		}
		if err != nil {
			return nil, mxerr.Unauthorized.With("malformed X-Matrix header: %v", err)
		}
		headers = append(headers, x)
	}
	if len(headers) == 0 {
		return nil, mxerr.Unauthorized.With("missing X-Matrix Authorization header")
	}
	origin := headers[0].Origin
	// An origin outside the server-name grammar (a non-numeric port, a
	// path) is bad input, not a failed signature: 400 before any key
	// lookup is spent on it.
	if err := fedclient.ValidServerName(origin); err != nil {
		return nil, mxerr.InvalidParam.With("X-Matrix origin %q is not a server name", origin)
	}
	for _, x := range headers {
		if x.Origin != origin {
			return nil, mxerr.Unauthorized.With("X-Matrix headers name different origins")
		}
		if x.Destination != "" && x.Destination != a.ServerName {
			return nil, mxerr.Unauthorized.With("request is for %q, this server is %q", x.Destination, a.ServerName)
		}
	}
	content, err := a.readBody(r)
	if err != nil {
		return nil, err
	}
	uri := r.RequestURI
	if uri == "" || !strings.HasPrefix(uri, "/") {
		uri = r.URL.RequestURI()
	}
	now := time.Now()
	if a.Now != nil {
		now = a.Now()
	}
	var lastErr error
	for _, x := range headers {
		lastErr = a.verify(r.Context(), x, r.Method, uri, content, now)
		if lastErr == nil {
			ctx := context.WithValue(r.Context(), originKey{}, origin)
			r = r.WithContext(ctx)
			r.Body = io.NopCloser(bytes.NewReader(content))
			return r, nil
		}
	}
	return nil, lastErr
}

func (a *Authenticator) readBody(r *http.Request) (json.RawMessage, error) {
	if r.Body == nil {
		return nil, nil
	}
	limit := a.MaxBody
	if limit <= 0 {
		limit = 50 << 20
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, mxerr.TooLarge.With("request body too large")
		}
		return nil, mxerr.BadJSON.With("reading the request body: %v", err)
	}
	if int64(len(body)) > limit {
		return nil, mxerr.TooLarge.With("request body too large")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	if err := httpx.ValidJSON(body); err != nil {
		return nil, err
	}
	return body, nil
}

// verify checks one header's signature over {method, uri, origin,
// destination, content} with the origin's key, which must be valid now.
func (a *Authenticator) verify(ctx context.Context, x XMatrix, method, uri string, content json.RawMessage, now time.Time) error {
	key, validUntil, err := a.Keys(ctx, x.Origin, x.Key, now)
	if err != nil {
		return mxerr.Unauthorized.Wrap(err).With("cannot get key %s of %s", x.Key, x.Origin)
	}
	if validUntil.Before(now) {
		return mxerr.Unauthorized.With("key %s of %s expired at %s", x.Key, x.Origin, validUntil.UTC().Format(time.RFC3339))
	}
	signable := map[string]any{
		"method":      method,
		"uri":         uri,
		"origin":      x.Origin,
		"destination": a.ServerName,
	}
	if content != nil {
		signable["content"] = content
	}
	msg, err := canonicaljson.Marshal(signable)
	if err != nil {
		return mxerr.NotJSON.With("request body cannot be canonicalised: %v", err)
	}
	if err := signutil.VerifyJSONCanonical(key, x.Sig, msg); err != nil {
		return mxerr.Unauthorized.With("X-Matrix signature by %s of %s does not verify", x.Key, x.Origin)
	}
	return nil
}

// ParseXMatrix parses an Authorization header value. ok is false when the
// scheme is not X-Matrix (the header is someone else's); err reports a
// malformed X-Matrix header. It follows RFC 9110 section 11.4: scheme and
// parameter names are case-insensitive, values are tokens or quoted
// strings with backslash escapes, whitespace around commas is allowed,
// and, for older senders, unquoted values may contain colons.
func ParseXMatrix(header string) (x XMatrix, ok bool, err error) {
	scheme, rest, _ := strings.Cut(strings.TrimLeft(header, " "), " ")
	if !strings.EqualFold(scheme, "X-Matrix") {
		return x, false, nil
	}
	params := map[string]string{}
	s := rest
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			break
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return x, true, errors.New("parameter without a value")
		}
		name := strings.ToLower(strings.TrimSpace(s[:eq]))
		s = strings.TrimLeft(s[eq+1:], " \t")
		var value string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			i, closed := 1, false
			for ; i < len(s); i++ {
				c := s[i]
				if c == '\\' && i+1 < len(s) {
					i++
					b.WriteByte(s[i])
					continue
				}
				if c == '"' {
					closed = true
					i++
					break
				}
				b.WriteByte(c)
			}
			if !closed {
				return x, true, errors.New("unterminated quoted value")
			}
			value, s = b.String(), s[i:]
		} else {
			end := strings.IndexAny(s, ", \t")
			if end < 0 {
				end = len(s)
			}
			value, s = s[:end], s[end:]
		}
		if _, dup := params[name]; dup {
			return x, true, errors.New("parameter " + name + " given twice")
		}
		params[name] = value
		s = strings.TrimLeft(s, " \t")
		if s != "" {
			if s[0] != ',' {
				return x, true, errors.New("parameters must be separated by commas")
			}
			s = s[1:]
		}
	}
	x = XMatrix{Origin: params["origin"], Destination: params["destination"], Key: id.KeyID(params["key"]), Sig: params["sig"]}
	if x.Origin == "" || x.Key == "" || x.Sig == "" {
		return x, true, errors.New("origin, key and sig are required")
	}
	return x, true, nil
}

// CheckACL reports whether server may take part in a room whose
// m.room.server_acl content is aclContent (nil or empty: no ACL event,
// allow). It applies the event's rules in order: IP literals are denied
// when allow_ip_literals is false; then a deny match denies; then an allow
// match allows; otherwise deny. Globs (* and ?) match case-insensitively
// against the server name without its port. Entries that are not strings
// are ignored; content that is not an object allows nobody.
func CheckACL(aclContent json.RawMessage, server string) bool {
	trimmed := bytes.TrimSpace(aclContent)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return true
	}
	var content map[string]json.RawMessage
	_ = json.Unmarshal(trimmed, &content)
	host := server
	if h, _, err := net.SplitHostPort(server); err == nil {
		host = h
		if strings.Contains(h, ":") {
			host = "[" + h + "]"
		}
	}
	var allowIP bool
	if err := json.Unmarshal(content["allow_ip_literals"], &allowIP); err != nil {
		allowIP = true
	}
	if !allowIP && net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")) != nil {
		return false
	}
	if matchesAny(content["deny"], host) {
		return false
	}
	return matchesAny(content["allow"], host)
}

func matchesAny(list json.RawMessage, host string) bool {
	var entries []json.RawMessage
	if json.Unmarshal(list, &entries) != nil {
		return false
	}
	for _, e := range entries {
		var pattern string
		if json.Unmarshal(e, &pattern) == nil && glob(strings.ToLower(pattern), strings.ToLower(host)) {
			return true
		}
	}
	return false
}

// glob matches s against pattern, where * is any run of characters and ?
// is one character (appendix "Glob-style matching").
func glob(pattern, s string) bool {
	p, r := []rune(pattern), []rune(s)
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(r) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == r[si]):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
