// Package mxerr defines the Matrix error type and the errcode values of the
// client-server and server-server APIs.
//
// Handlers return these errors; the single adapter in package httpx writes
// them. An Error may carry an internal cause, which is logged and never sent
// to the client. This package imports nothing from the rest of Myelin.
package mxerr

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
)

// Error is a Matrix error: an errcode, the HTTP status it travels with, a
// human-readable message and optional extra JSON fields.
type Error struct {
	Code    string
	Status  int
	Message string
	// Extra holds additional top-level fields such as retry_after_ms.
	Extra map[string]any
	// Cause is the internal error behind this one. It is logged, never sent.
	Cause error
}

// Error implements error.
func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Cause)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Unwrap returns the internal cause.
func (e *Error) Unwrap() error { return e.Cause }

// Is reports whether target is an *Error with the same errcode, so that
// errors.Is(err, mxerr.Forbidden) works on copies carrying messages.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// With returns a copy of e with the message set.
func (e *Error) With(format string, args ...any) *Error {
	c := *e
	c.Message = fmt.Sprintf(format, args...)
	return &c
}

// WithField returns a copy of e with an extra top-level JSON field.
func (e *Error) WithField(key string, value any) *Error {
	c := *e
	c.Extra = maps.Clone(e.Extra)
	if c.Extra == nil {
		c.Extra = map[string]any{}
	}
	c.Extra[key] = value
	return &c
}

// WithStatus returns a copy of e that travels with another HTTP status, for
// the few places where the spec pairs an errcode with an unusual status.
func (e *Error) WithStatus(status int) *Error {
	c := *e
	c.Status = status
	return &c
}

// Wrap returns a copy of e that carries cause as its internal error.
func (e *Error) Wrap(cause error) *Error {
	c := *e
	c.Cause = cause
	return &c
}

// MarshalJSON renders the wire form {"errcode":…,"error":…,…extra}.
func (e *Error) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(e.Extra)+2)
	maps.Copy(m, e.Extra)
	m["errcode"] = e.Code
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	m["error"] = msg
	return json.Marshal(m)
}

// From returns err as an *Error if it is (or wraps) one.
func From(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

func def(code string, status int) *Error { return &Error{Code: code, Status: status} }

// The errcodes of the spec, each bound to its usual HTTP status.
var (
	Forbidden                   = def("M_FORBIDDEN", http.StatusForbidden)
	UnknownToken                = def("M_UNKNOWN_TOKEN", http.StatusUnauthorized)
	MissingToken                = def("M_MISSING_TOKEN", http.StatusUnauthorized)
	UserLocked                  = def("M_USER_LOCKED", http.StatusUnauthorized)
	BadJSON                     = def("M_BAD_JSON", http.StatusBadRequest)
	NotJSON                     = def("M_NOT_JSON", http.StatusBadRequest)
	NotFound                    = def("M_NOT_FOUND", http.StatusNotFound)
	LimitExceeded               = def("M_LIMIT_EXCEEDED", http.StatusTooManyRequests)
	Unrecognized                = def("M_UNRECOGNIZED", http.StatusNotFound)
	Unknown                     = def("M_UNKNOWN", http.StatusInternalServerError)
	Unauthorized                = def("M_UNAUTHORIZED", http.StatusUnauthorized)
	UserDeactivated             = def("M_USER_DEACTIVATED", http.StatusForbidden)
	UserInUse                   = def("M_USER_IN_USE", http.StatusBadRequest)
	InvalidUsername             = def("M_INVALID_USERNAME", http.StatusBadRequest)
	RoomInUse                   = def("M_ROOM_IN_USE", http.StatusBadRequest)
	InvalidRoomState            = def("M_INVALID_ROOM_STATE", http.StatusBadRequest)
	UnsupportedRoomVer          = def("M_UNSUPPORTED_ROOM_VERSION", http.StatusBadRequest)
	IncompatibleRoomVer         = def("M_INCOMPATIBLE_ROOM_VERSION", http.StatusBadRequest)
	BadState                    = def("M_BAD_STATE", http.StatusBadRequest)
	GuestAccessForbidden        = def("M_GUEST_ACCESS_FORBIDDEN", http.StatusForbidden)
	MissingParam                = def("M_MISSING_PARAM", http.StatusBadRequest)
	InvalidParam                = def("M_INVALID_PARAM", http.StatusBadRequest)
	TooLarge                    = def("M_TOO_LARGE", http.StatusRequestEntityTooLarge)
	Exclusive                   = def("M_EXCLUSIVE", http.StatusBadRequest)
	ResourceLimitExceeded       = def("M_RESOURCE_LIMIT_EXCEEDED", http.StatusForbidden)
	CannotLeaveServerNoticeRoom = def("M_CANNOT_LEAVE_SERVER_NOTICE_ROOM", http.StatusForbidden)
	WeakPassword                = def("M_WEAK_PASSWORD", http.StatusBadRequest)
	UnableToAuthoriseJoin       = def("M_UNABLE_TO_AUTHORISE_JOIN", http.StatusBadRequest)
	UnableToGrantJoin           = def("M_UNABLE_TO_GRANT_JOIN", http.StatusBadRequest)
	ThreepidInUse               = def("M_THREEPID_IN_USE", http.StatusBadRequest)
	ServerNotTrusted            = def("M_SERVER_NOT_TRUSTED", http.StatusBadRequest)
	InvalidSignature            = def("M_INVALID_SIGNATURE", http.StatusForbidden)
	CaptchaNeeded               = def("M_CAPTCHA_NEEDED", http.StatusUnauthorized)
	CaptchaInvalid              = def("M_CAPTCHA_INVALID", http.StatusUnauthorized)
	UnknownPos                  = def("M_UNKNOWN_POS", http.StatusBadRequest)
	NotYetUploaded              = def("M_NOT_YET_UPLOADED", http.StatusGatewayTimeout)
	CannotOverwriteMedia        = def("M_CANNOT_OVERWRITE_MEDIA", http.StatusConflict)
	MethodNotAllowed            = def("M_UNRECOGNIZED", http.StatusMethodNotAllowed)
	ThreepidAuthFailed          = def("M_THREEPID_AUTH_FAILED", http.StatusBadRequest)
	ThreepidDenied              = def("M_THREEPID_DENIED", http.StatusForbidden)
	ThreepidMediumNotSupported  = def("M_THREEPID_MEDIUM_NOT_SUPPORTED", http.StatusBadRequest)
	InviteBlocked               = def("M_INVITE_BLOCKED", http.StatusForbidden)
	ThreepidNotFound            = def("M_THREEPID_NOT_FOUND", http.StatusBadRequest)
	ProfileTooLarge             = def("M_PROFILE_TOO_LARGE", http.StatusBadRequest)
	KeyTooLarge                 = def("M_KEY_TOO_LARGE", http.StatusBadRequest)
)
