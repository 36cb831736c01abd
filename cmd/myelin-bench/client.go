package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/synapseadmin"
)

const userAgent = "myelin-bench/1"

// homeserver holds what is needed to talk to one server. All clients of a run
// share its transport so that thousands of simulated users reuse a pool of
// keep-alive connections instead of each opening its own.
type homeserver struct {
	baseURL        string
	sharedSecret   string
	requestTimeout time.Duration
	http           *http.Client // ordinary requests, bounded by requestTimeout
	syncHTTP       *http.Client // /sync, bounded per request by poll timeout + requestTimeout
}

func newHomeserver(baseURL, sharedSecret string, requestTimeout time.Duration) *homeserver {
	tr := &http.Transport{
		// Never go through an environment proxy: the target is named
		// explicitly on the command line.
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		// Every simulated client holds a connection open in its long poll,
		// so the idle pool must be able to keep one per client.
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 100000,
		IdleConnTimeout:     90 * time.Second,
	}
	return &homeserver{
		baseURL:        strings.TrimRight(baseURL, "/"),
		sharedSecret:   sharedSecret,
		requestTimeout: requestTimeout,
		http:           &http.Client{Transport: tr, Timeout: requestTimeout},
		syncHTTP:       &http.Client{Transport: tr},
	}
}

// newClient makes a mautrix client that fails fast: no automatic retries and
// no sleeping on 429, because a benchmark must count those, not hide them.
func (h *homeserver) newClient(userID id.UserID, token string) (*mautrix.Client, error) {
	cli, err := mautrix.NewClient(h.baseURL, userID, token)
	if err != nil {
		return nil, err
	}
	cli.Client = h.http
	cli.UserAgent = userAgent
	cli.DefaultHTTPRetries = 0
	cli.IgnoreRateLimit = true
	return cli, nil
}

// account is one logged-in device of a user.
type account struct {
	UserID   id.UserID
	DeviceID id.DeviceID
	Token    string
	cli      *mautrix.Client
}

// register creates a user with a password. With a shared secret it uses the
// Synapse-compatible admin endpoint (nonce, then HMAC-SHA1 signed POST);
// otherwise the client-server /register with the m.login.dummy stage.
func (h *homeserver) register(ctx context.Context, localpart, password string) (*account, error) {
	cli, err := h.newClient("", "")
	if err != nil {
		return nil, err
	}
	var resp *mautrix.RespRegister
	if h.sharedSecret != "" {
		admin := synapseadmin.Client{Client: cli}
		resp, err = admin.SharedSecretRegister(ctx, h.sharedSecret, synapseadmin.ReqSharedSecretRegister{
			Username: localpart,
			Password: password,
		})
	} else {
		resp, err = cli.RegisterDummy(ctx, &mautrix.ReqRegister[any]{
			Username:                 localpart,
			Password:                 password,
			InitialDeviceDisplayName: "myelin-bench",
		})
	}
	if err != nil {
		return nil, err
	}
	if resp.AccessToken == "" {
		// Some servers register without logging in; do it now.
		return h.login(ctx, localpart, password)
	}
	cli.UserID, cli.AccessToken = resp.UserID, resp.AccessToken
	cli.DeviceID = resp.DeviceID
	return &account{UserID: resp.UserID, DeviceID: resp.DeviceID, Token: resp.AccessToken, cli: cli}, nil
}

// login opens a new device for an existing user.
func (h *homeserver) login(ctx context.Context, localpart, password string) (*account, error) {
	cli, err := h.newClient("", "")
	if err != nil {
		return nil, err
	}
	resp, err := cli.Login(ctx, &mautrix.ReqLogin{
		Type:                     mautrix.AuthTypePassword,
		Identifier:               mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: localpart},
		Password:                 password,
		InitialDeviceDisplayName: "myelin-bench",
		StoreCredentials:         true,
	})
	if err != nil {
		return nil, err
	}
	return &account{UserID: resp.UserID, DeviceID: resp.DeviceID, Token: resp.AccessToken, cli: cli}, nil
}

// fromToken builds an account for an existing access token (--reuse).
func (h *homeserver) fromToken(ctx context.Context, token string) (*account, error) {
	cli, err := h.newClient("", token)
	if err != nil {
		return nil, err
	}
	who, err := cli.Whoami(ctx)
	if err != nil {
		return nil, fmt.Errorf("whoami: %w", err)
	}
	cli.UserID = who.UserID
	cli.DeviceID = who.DeviceID
	return &account{UserID: who.UserID, DeviceID: who.DeviceID, Token: token, cli: cli}, nil
}

// createRoom makes a public-join room that stays out of the room directory.
func (a *account) createRoom(ctx context.Context, name string) (id.RoomID, error) {
	resp, err := a.cli.CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Visibility: "private",
		Preset:     "public_chat",
		Name:       name,
	})
	if err != nil {
		return "", err
	}
	return resp.RoomID, nil
}

// join uses POST /join/{roomIdOrAlias} with an explicit "{}" body, the form
// every server accepts, and passes via servers for rooms held elsewhere.
func (a *account) join(ctx context.Context, room string, via ...string) (id.RoomID, error) {
	resp, err := a.cli.JoinRoom(ctx, room, &mautrix.ReqJoinRoom{Via: via})
	if err != nil {
		return "", err
	}
	return resp.RoomID, nil
}

// benchFilter keeps the long-poll responses small: only message events in
// timelines (with a limit large enough that a busy room is not truncated
// between two polls), and no presence, account data or ephemeral events.
const benchFilter = `{"presence":{"not_types":["*"]},"account_data":{"not_types":["*"]},` +
	`"room":{"timeline":{"limit":1000,"types":["m.room.message"]},"state":{"lazy_load_members":true},` +
	`"ephemeral":{"not_types":["*"]},"account_data":{"not_types":["*"]}}}`

// uploadFilter stores benchFilter for the user and returns its ID; servers
// that fail to store filters get the same filter inline, which the spec also
// allows for the filter query parameter.
func (a *account) uploadFilter(ctx context.Context, log *slog.Logger) string {
	var resp struct {
		FilterID string `json:"filter_id"`
	}
	_, err := a.cli.MakeRequest(ctx, http.MethodPost, a.cli.BuildClientURL("v3", "user", a.UserID, "filter"),
		json.RawMessage(benchFilter), &resp)
	if err != nil || resp.FilterID == "" {
		log.Warn("filter upload failed, using an inline filter", "user", a.UserID, "err", err)
		return benchFilter
	}
	return resp.FilterID
}

// syncOnce does one GET /sync. It reads the whole body, notes the moment the
// last byte arrived (before any decoding, so the bench's JSON work does not
// count as server latency), then decodes into out if out is not nil.
func (a *account) syncOnce(ctx context.Context, h *homeserver, since, filter string, timeoutMS int, out any) (arrived time.Time, body []byte, err error) {
	// The server may hold the request for the whole poll timeout, and then
	// needs as long as any other request to answer.
	ctx, cancel := context.WithTimeout(ctx, time.Duration(timeoutMS)*time.Millisecond+h.requestTimeout)
	defer cancel()
	q := map[string]string{"timeout": fmt.Sprint(timeoutMS)}
	if since != "" {
		q["since"] = since
	}
	if filter != "" {
		q["filter"] = filter
	}
	handler := func(req *http.Request, res *http.Response, _ any, limit int64) ([]byte, error) {
		body, err := io.ReadAll(io.LimitReader(res.Body, limit+1))
		arrived = time.Now()
		if err != nil {
			return nil, err
		}
		if int64(len(body)) > limit {
			return nil, mautrix.ErrBodyReadReachedLimit
		}
		if out != nil {
			if err := json.Unmarshal(body, out); err != nil {
				return nil, fmt.Errorf("decoding sync response: %w", err)
			}
		}
		return body, nil
	}
	body, err = a.cli.MakeFullRequest(ctx, mautrix.FullRequest{
		Method:      http.MethodGet,
		URL:         a.cli.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "sync"}, q),
		MaxAttempts: 1,
		Client:      h.syncHTTP,
		Handler:     handler,
	})
	return arrived, body, err
}

// errorCounter counts failures by operation and kind. The first error of
// each kind is logged in full, later ones only counted.
type errorCounter struct {
	log   *slog.Logger
	mu    sync.Mutex
	byKey map[string]int64
	total atomic.Int64
}

func newErrorCounter(log *slog.Logger) *errorCounter {
	return &errorCounter{log: log, byKey: map[string]int64{}}
}

func (e *errorCounter) add(op string, err error) {
	key := op + ": " + errKind(err)
	e.total.Add(1)
	e.mu.Lock()
	e.byKey[key]++
	first := e.byKey[key] == 1
	e.mu.Unlock()
	if first {
		e.log.Warn("request failed", "op", op, "kind", errKind(err), "err", err)
	}
}

// addKind counts a failure that is not a Go error (e.g. a missing delivery).
func (e *errorCounter) addKind(key string, n int64) {
	if n == 0 {
		return
	}
	e.total.Add(n)
	e.mu.Lock()
	e.byKey[key] += n
	e.mu.Unlock()
}

func (e *errorCounter) snapshot() map[string]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int64, len(e.byKey))
	for k, v := range e.byKey {
		out[k] = v
	}
	return out
}

// errKind reduces an error to a short, stable label: the Matrix errcode with
// its HTTP status, the bare status, or the kind of network failure.
func errKind(err error) string {
	var httpErr mautrix.HTTPError
	if errors.As(err, &httpErr) {
		status := 0
		if httpErr.Response != nil {
			status = httpErr.Response.StatusCode
		}
		if httpErr.RespError != nil && httpErr.RespError.ErrCode != "" {
			return fmt.Sprintf("%d %s", status, httpErr.RespError.ErrCode)
		}
		if status != 0 && (status < 200 || status >= 300) {
			return fmt.Sprintf("HTTP %d", status)
		}
	}
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "out of local ports"
	case errors.Is(err, syscall.EMFILE):
		return "too many open files"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case errors.As(err, &netErr):
		return "network error"
	case strings.Contains(err.Error(), "decoding sync response"):
		return "bad response body"
	default:
		return "other"
	}
}

// forEach runs fn for i in [0,n) on at most workers goroutines. It stops
// handing out work at the first error or when ctx ends, and returns that
// error. done is incremented after each success, for progress output.
func forEach(ctx context.Context, n, workers int, done *atomic.Int64, fn func(ctx context.Context, i int) error) error {
	if n <= 0 {
		return nil
	}
	workers = max(1, min(workers, n))
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(ctx, i); err != nil {
					cancel(err)
					return
				}
				if done != nil {
					done.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// startProgress prints line() to w every second until the returned stop
// function is called. Progress goes to stderr so stdout stays clean for the
// result (and valid JSON with --json).
func startProgress(ctx context.Context, w io.Writer, line func(elapsed time.Duration) string) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				el := time.Since(start).Truncate(time.Second)
				fmt.Fprintf(w, "[%5s] %s\n", el, line(el))
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// setupStep runs one counted setup step with a progress line.
func setupStep(ctx context.Context, env *env, what string, n, workers int, fn func(ctx context.Context, i int) error) error {
	var done atomic.Int64
	env.log.Info("setup", "step", what, "count", n, "concurrency", workers)
	stop := startProgress(ctx, env.progress, func(time.Duration) string {
		return fmt.Sprintf("setup: %s %d/%d", what, done.Load(), n)
	})
	start := time.Now()
	err := forEach(ctx, n, workers, &done, fn)
	stop()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	env.log.Info("setup done", "step", what, "count", n, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// diskUsage sums the sizes of the regular files under --disk-path (a
// directory or a single file), or returns -1 when no path was given or it
// cannot be read. SQLite's WAL file is included, so the figure is most
// meaningful after the server has checkpointed.
func diskUsage(env *env) int64 {
	if env.g.diskPath == "" {
		return -1
	}
	var total int64
	err := filepath.WalkDir(env.g.diskPath, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			var info fs.FileInfo
			if info, err = d.Info(); err == nil {
				total += info.Size()
			}
		}
		// The server may delete files (WAL, temp files) while we walk.
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	})
	if err != nil {
		env.log.Warn("measuring disk usage", "path", env.g.diskPath, "err", err)
		return -1
	}
	return total
}

// randomPrefix returns a short lowercase prefix so user names of separate runs
// never collide on the same server.
func randomPrefix() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "bench" + string(b)
}

// rate divides a count by a duration in seconds, safe for zero durations.
func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
