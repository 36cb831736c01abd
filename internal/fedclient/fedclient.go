// Package fedclient makes outbound federation requests: server discovery
// (IP literal, explicit port, /.well-known/matrix/server, SRV, 8448) with
// caching, TLS against the system pool plus configured CAs, refusal of
// non-public addresses, X-Matrix request signing, a response size limit,
// and typed calls named after the spec's operations.
//
// The sender (transactions) and room (joins, backfill, missing events) call
// it; keys uses it through keys.Fetcher. fedclient imports config and keys
// from Myelin and must not import room, sender or federationapi.
package fedclient

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"maunium.net/go/mautrix/crypto/canonicaljson"

	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/keys"
)

// MaxResponseBytes caps a response body; larger answers fail with an
// error instead of being buffered. Room state on send_join can be large.
const MaxResponseBytes = 64 << 20

// Client makes signed requests to other homeservers. It is safe for
// concurrent use.
type Client struct {
	serverName  string
	key         keys.SigningKey
	log         *slog.Logger
	resolver    *resolver
	http        *http.Client
	maxResponse int64
}

// Error is a non-2xx answer from a remote server. Code and Message come
// from a Matrix error body when there is one.
type Error struct {
	Server  string
	Status  int
	Code    string
	Message string
}

// Error implements error.
func (e *Error) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("%s answered HTTP %d %s: %s", e.Server, e.Status, e.Code, e.Message)
	}
	return fmt.Sprintf("%s answered HTTP %d", e.Server, e.Status)
}

// New returns a client that signs as serverName with key. Outbound TLS
// trusts the system pool (SSL_CERT_FILE included) and cfg.ExtraCAFiles;
// cfg.TestHosts bypass discovery; cfg.AllowPrivate permits loopback and
// private addresses (TestHosts on loopback need it too).
func New(cfg config.Federation, serverName string, key keys.SigningKey, log *slog.Logger) (*Client, error) {
	return newClient(cfg, serverName, key, log, net.DefaultResolver, time.Now)
}

func newClient(cfg config.Federation, serverName string, key keys.SigningKey, log *slog.Logger, dns DNS, now func() time.Time) (*Client, error) {
	pool, err := certPool(cfg.ExtraCAFiles)
	if err != nil {
		return nil, err
	}
	d := newDialer(dns, cfg.AllowPrivate)
	transport := &http.Transport{
		DialContext:         d.DialContext,
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
	}
	wellKnown := &http.Client{Transport: transport, Timeout: 15 * time.Second}
	return &Client{
		serverName: serverName,
		key:        key,
		log:        log,
		resolver:   newResolver(dns, wellKnown, cfg.TestHosts, now),
		http: &http.Client{
			Transport: transport,
			// Federation requests never follow redirects.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		maxResponse: MaxResponseBytes,
	}, nil
}

// Resolve returns where requests for serverName go (for diagnostics such
// as check-federation).
func (c *Client) Resolve(ctx context.Context, serverName string) (Target, error) {
	return c.resolver.Resolve(ctx, serverName)
}

// Do sends a signed request to dest. path is the escaped path from
// /_matrix on; body (nil for none; POST and PUT then send {}) is encoded as
// JSON unless it is a json.RawMessage; a 2xx answer is decoded into out
// when out is non-nil. A non-2xx answer gives *Error.
func (c *Client) Do(ctx context.Context, dest, method, path string, query url.Values, body, out any) error {
	raw, err := c.do(ctx, dest, method, path, query, body)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s on %s: decoding the answer: %w", method, path, dest, err)
	}
	return nil
}

func (c *Client) do(ctx context.Context, dest, method, path string, query url.Values, body any) (json.RawMessage, error) {
	var content json.RawMessage
	var err error
	switch b := body.(type) {
	case nil:
		if method == http.MethodPost || method == http.MethodPut {
			content = json.RawMessage("{}")
		}
	case json.RawMessage:
		content = b
	default:
		if content, err = json.Marshal(b); err != nil {
			return nil, fmt.Errorf("encoding %s %s body: %w", method, path, err)
		}
	}
	start := time.Now()
	resp, err := c.send(ctx, dest, method, path, query, content)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s on %s: reading the answer: %w", method, path, dest, err)
	}
	if int64(len(data)) > c.maxResponse {
		return nil, fmt.Errorf("%s %s on %s: answer larger than %d bytes", method, path, dest, c.maxResponse)
	}
	c.log.Debug("federation request", "server", dest, "method", method, "path", resp.Request.URL.Path, "status", resp.StatusCode, "took", time.Since(start))
	if resp.StatusCode/100 != 2 {
		return nil, responseError(dest, resp.StatusCode, data)
	}
	return data, nil
}

// responseError is the *Error of a non-2xx answer with body data.
func responseError(dest string, status int, data []byte) *Error {
	e := &Error{Server: dest, Status: status}
	var body struct {
		Code    string `json:"errcode"`
		Message string `json:"error"`
	}
	if json.Unmarshal(data, &body) == nil {
		e.Code, e.Message = body.Code, body.Message
	}
	return e
}

// send signs and sends one request with the JSON body content (nil for
// none) and returns the response, whatever its status; the caller closes
// its body.
func (c *Client) send(ctx context.Context, dest, method, path string, query url.Values, content json.RawMessage) (*http.Response, error) {
	u, err := url.Parse(path)
	if err != nil || !strings.HasPrefix(path, "/") || u.Host != "" {
		return nil, fmt.Errorf("federation request path %q is not an absolute path", path)
	}
	if len(query) > 0 {
		u.RawQuery = query.Encode()
	}
	target, err := c.resolver.Resolve(ctx, dest)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", dest, err)
	}
	auth, err := c.authorization(method, u.RequestURI(), dest, content)
	if err != nil {
		return nil, err
	}
	var reader io.Reader
	if content != nil {
		reader = bytes.NewReader(content)
	}
	req, err := http.NewRequestWithContext(withTarget(ctx, target), method, "https://"+target.Host+"/", reader)
	if err != nil {
		return nil, fmt.Errorf("building %s %s: %w", method, path, err)
	}
	req.URL.Path, req.URL.RawPath, req.URL.RawQuery = u.Path, u.RawPath, u.RawQuery
	req.Header.Set("Authorization", auth)
	req.Header.Set("User-Agent", "Myelin")
	if content != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s on %s: %w", method, path, dest, err)
	}
	return resp, nil
}

// authorization signs {method, uri, origin, destination, content} and
// returns the X-Matrix Authorization header value.
func (c *Client) authorization(method, uri, dest string, content json.RawMessage) (string, error) {
	signable := struct {
		Method      string          `json:"method"`
		URI         string          `json:"uri"`
		Origin      string          `json:"origin"`
		Destination string          `json:"destination"`
		Content     json.RawMessage `json:"content,omitzero"` // omitempty would drop {} under json v2
	}{method, uri, c.serverName, dest, content}
	msg, err := canonicaljson.Marshal(signable)
	if err != nil {
		return "", fmt.Errorf("signing %s %s: the body is not valid JSON: %w", method, uri, err)
	}
	sig := base64.RawStdEncoding.EncodeToString(ed25519.Sign(c.key.Priv, msg))
	return fmt.Sprintf(`X-Matrix origin="%s",destination="%s",key="%s",sig="%s"`, c.serverName, dest, c.key.ID, sig), nil
}

// IsStatus reports whether err is an *Error with the given HTTP status.
func IsStatus(err error, status int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == status
}
