// Package httpx is the HTTP plumbing shared by the client, federation and
// admin APIs: the one adapter that writes Matrix errors, JSON request
// decoding with the spec's errcodes, body limits, CORS, panic recovery and
// the 404/405 M_UNRECOGNIZED fallbacks.
//
// httpx imports only mxerr from Myelin.
package httpx

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/json/jsontext"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/myelin-chat/myelin/internal/mxerr"
)

// HandlerFunc is a handler that reports failure by returning an error; the
// adapter turns it into the Matrix error response.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Adapter converts HandlerFuncs into http.Handlers that write errors in one
// place.
type Adapter struct {
	Log *slog.Logger
}

// Wrap returns h as an http.Handler.
func (a *Adapter) Wrap(h HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				a.WriteError(w, r, mxerr.Unknown.Wrap(errors.New("panic")).With("internal error"))
				a.Log.Error("handler panicked", "path", r.URL.Path, "panic", p)
			}
		}()
		if err := checkURL(r); err != nil {
			a.WriteError(w, r, err)
			return
		}
		if err := h(w, r); err != nil {
			a.WriteError(w, r, err)
		}
	})
}

// checkURL refuses, with 400 M_INVALID_PARAM, paths and query values that
// decode to invalid UTF-8 or hold a NUL: no identifier, event type or
// token can, and PostgreSQL text cannot store them, so no handler has to
// think about them.
func checkURL(r *http.Request) error {
	if !cleanString(r.URL.Path) {
		return mxerr.InvalidParam.With("the path holds invalid UTF-8 or a NUL")
	}
	for key, values := range r.URL.Query() {
		if !cleanString(key) {
			return mxerr.InvalidParam.With("a query parameter name holds invalid UTF-8 or a NUL")
		}
		for _, v := range values {
			if !cleanString(v) {
				return mxerr.InvalidParam.With("query parameter %q holds invalid UTF-8 or a NUL", key)
			}
		}
	}
	return nil
}

func cleanString(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// WriteError writes err as a Matrix error. Errors that are not *mxerr.Error
// become M_UNKNOWN/500 with a request ID; their text goes only to the log.
func (a *Adapter) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		err = mxerr.TooLarge.With("request body too large")
	}
	e, ok := mxerr.From(err)
	if !ok || e.Status >= 500 {
		reqID := newReqID()
		a.Log.Error("request failed", "req_id", reqID, "method", r.Method, "path", r.URL.Path, "err", err)
		if !ok {
			e = mxerr.Unknown.With("internal server error (request %s)", reqID)
		}
	} else if e.Cause != nil {
		a.Log.Debug("request rejected", "path", r.URL.Path, "err", err)
	}
	if e.Status == http.StatusTooManyRequests {
		if ms, ok := e.Extra["retry_after_ms"].(int64); ok {
			w.Header().Set("Retry-After", itoa((ms+999)/1000))
		}
	}
	_ = JSON(w, e.Status, e)
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func newReqID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// JSON writes v as a JSON response with the given status.
func JSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return nil
}

// OK writes v with status 200.
func OK(w http.ResponseWriter, v any) error { return JSON(w, http.StatusOK, v) }

// Empty is the {} body many endpoints answer with.
var Empty = struct{}{}

// DecodeJSON reads the request body into v. Syntax errors give 400
// M_NOT_JSON; type mismatches give 400 M_BAD_JSON; bodies over the limit
// set by LimitBody give 413 M_TOO_LARGE. An empty body decodes as {}.
func DecodeJSON(r *http.Request, v any) error {
	body, err := ReadBody(r)
	if err != nil {
		return err
	}
	return decode(body, v)
}

// ReadBody reads a JSON request body whole, for handlers that must see its
// exact bytes (PDUs are checked for canonical JSON). It fails with
// M_TOO_LARGE over the body limit and M_NOT_JSON when it is not JSON; an
// empty body is returned as is.
func ReadBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, mxerr.TooLarge.With("request body too large")
		}
		return nil, mxerr.BadJSON.With("reading body: %v", err)
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := ValidJSON(body); err != nil {
			return nil, err
		}
	}
	return body, nil
}

// ValidJSON checks that body is one JSON value in valid UTF-8, with no
// escaped lone surrogates: what encoding/json would accept (replacing
// bad bytes with U+FFFD) but canonical JSON, signing and PostgreSQL
// cannot take. Failures are 400 M_NOT_JSON. Duplicate keys are allowed,
// the last one winning, as in most JSON parsers clients use.
func ValidJSON(body []byte) error {
	if !utf8.Valid(body) {
		return mxerr.NotJSON.With("the body is not valid UTF-8")
	}
	dec := jsontext.NewDecoder(bytes.NewReader(body), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(false))
	if _, err := dec.ReadValue(); err != nil {
		return mxerr.NotJSON.With("the body is not valid JSON: %v", err)
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return mxerr.NotJSON.With("the body is not one JSON value")
	}
	return nil
}

// Unmarshal decodes body into v with the errcodes of DecodeJSON.
func Unmarshal(body []byte, v any) error {
	if len(strings.TrimSpace(string(body))) == 0 {
		body = []byte("{}")
	}
	if err := ValidJSON(body); err != nil {
		return err
	}
	return decode(body, v)
}

// decode is Unmarshal of a body ReadBody has checked already.
func decode(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	// null decodes into anything without an error; every body of the
	// spec is an object (or an array where v is a slice).
	if strings.TrimSpace(string(body)) == "null" {
		return mxerr.BadJSON.With("request body must be a JSON object, not null")
	}
	if err := json.Unmarshal(body, v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			if typeErr.Field != "" {
				return mxerr.BadJSON.With("field %q has the wrong type (want %s)", typeErr.Field, typeErr.Type)
			}
			return mxerr.BadJSON.With("request body must be a JSON %s", typeErr.Type)
		}
		return mxerr.BadJSON.With("bad JSON: %v", err)
	}
	if hasNUL(reflect.ValueOf(v)) {
		return mxerr.BadJSON.With("strings in the request must not contain NUL characters")
	}
	return nil
}

// hasNUL reports whether a string that v decoded into (a field, element or
// map key of a Go string type) holds a NUL. Such strings become IDs, names
// and keys that PostgreSQL text columns cannot store. Raw JSON
// (json.RawMessage) and values decoded as any are not searched: event
// content and other opaque JSON are stored as JSON text, where a NUL stays
// escaped.
func hasNUL(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String:
		return strings.IndexByte(v.String(), 0) >= 0
	case reflect.Pointer:
		return !v.IsNil() && hasNUL(v.Elem())
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() && hasNUL(v.Field(i)) {
				return true
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return false // json.RawMessage, []byte
		}
		for i := range v.Len() {
			if hasNUL(v.Index(i)) {
				return true
			}
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			if hasNUL(iter.Key()) || hasNUL(iter.Value()) {
				return true
			}
		}
	}
	return false
}

// LimitBody caps request bodies at n bytes.
func LimitBody(n int64, next http.Handler) http.Handler { return LimitBodyExcept(n, nil, next) }

// LimitBodyExcept is LimitBody for every request but those exempt
// reports, which apply their own limit (media uploads).
func LimitBodyExcept(n int64, exempt func(*http.Request) bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if exempt != nil && exempt(r) {
			next.ServeHTTP(w, r)
			return
		}
		if r.ContentLength > n {
			_ = JSON(w, http.StatusRequestEntityTooLarge, mxerr.TooLarge.With("request body too large"))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, n)
		next.ServeHTTP(w, r)
	})
}

// CORS adds the headers the client-server spec asks for and answers
// preflight requests.
func CORS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "X-Requested-With, Content-Type, Authorization")
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusOK)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Matcher is a router that can say which pattern would serve a request:
// *http.ServeMux or *Mux.
type Matcher interface {
	http.Handler
	Handler(r *http.Request) (h http.Handler, pattern string)
}

// Fallback wraps mux so that unknown paths get 404 M_UNRECOGNIZED and known
// paths with the wrong method get 405 M_UNRECOGNIZED, instead of the
// standard library's plain-text replies.
func Fallback(mux Matcher) http.Handler {
	methods := []string{http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusOK)
			return
		}
		for _, m := range methods {
			if m == r.Method {
				continue
			}
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := mux.Handler(probe); pattern != "" {
				_ = JSON(w, http.StatusMethodNotAllowed, mxerr.MethodNotAllowed.With("method %s not allowed", r.Method))
				return
			}
		}
		_ = JSON(w, http.StatusNotFound, mxerr.Unrecognized.With("unrecognized request"))
	})
}
