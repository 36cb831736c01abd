// Package e2ee owns the server side of end-to-end encryption: device keys,
// one-time and fallback keys, the stream of device list changes, the
// to-device inbox, cross-signing keys and signatures, and server-side key
// backup (spec: client-server-api "End-to-End Encryption", "Send-to-Device
// messaging", "Server-side key backups"; server-server-api "Device
// Management", "Send-to-device messaging", "End-to-End Encryption").
//
// Every change that a /sync must report (a user's keys, a to-device
// message) takes a position in the one global stream that events share, in
// the same write transaction, and wakes the affected users' syncs after
// commit, as accountdata does. clientapi writes through Service; clientsync
// reads device list changes, key counts and the to-device inbox through it.
// Changes of local users' devices go to other servers as EDUs through an
// EDUSender; remote users' keys are asked for through a Doer. The device
// lists of remote users who share a room with a local user are cached,
// kept current by m.device_list_update / m.signing_key_update EDUs and
// resynced through /user/devices after a gap (devicelists.go).
//
// e2ee reads the room membership tables (current_state, local_memberships)
// to know who shares a room with whom; it never writes them. It imports
// storage, notifier and mxerr only; it must not import room, clientsync,
// clientapi or federationapi.
package e2ee

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/url"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/storage"
)

// EDUSender queues an EDU for other servers (sender.Sender).
type EDUSender interface {
	EnqueueEDU(ctx context.Context, destinations []string, eduType string, content json.RawMessage) error
}

// Doer sends one signed federation request and decodes the JSON answer
// (fedclient.Client); path is the escaped request path.
type Doer interface {
	Do(ctx context.Context, dest, method, path string, query url.Values, body, out any) error
}

// Service stores and serves encryption keys and to-device messages.
type Service struct {
	db         *storage.DB
	notifier   *notifier.Notifier
	serverName string
	log        *slog.Logger
	edus       EDUSender
	remote     Doer
}

// Option configures a Service.
type Option func(*Service)

// WithFederation makes the Service send EDUs about local users' devices and
// to-device messages through edus, and ask other servers about their users'
// keys through remote.
func WithFederation(edus EDUSender, remote Doer) Option {
	return func(s *Service) { s.edus, s.remote = edus, remote }
}

// New returns a Service for the users of serverName that wakes syncs
// through n.
func New(db *storage.DB, n *notifier.Notifier, serverName string, log *slog.Logger, opts ...Option) *Service {
	s := &Service{db: db, notifier: n, serverName: serverName, log: log}
	for _, o := range opts {
		o(s)
	}
	return s
}

// local reports whether user belongs to this server.
func (s *Service) local(user id.UserID) bool { return user.Homeserver() == s.serverName }

// errWrongVersion is M_WRONG_ROOM_KEYS_VERSION (key_backup.yaml).
var errWrongVersion = &mxerr.Error{Code: "M_WRONG_ROOM_KEYS_VERSION", Status: 403}
