// Package clientsync assembles /sync responses: tokens and positions, the
// per-room sections (state, timeline, ephemeral, account data) and the
// long-poll that waits on the notifier.
//
// Each response section has its own file. clientsync reads through room,
// accountdata, receipts, typing, presence and its own store; it never writes events.
// Named clientsync, not sync, so it does not shadow the standard library.
package clientsync

import (
	"log/slog"

	lru "github.com/hashicorp/golang-lru/v2"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/accountdata"
	"github.com/myelin-chat/myelin/internal/e2ee"
	"github.com/myelin-chat/myelin/internal/notifications"
	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/presence"
	"github.com/myelin-chat/myelin/internal/receipts"
	"github.com/myelin-chat/myelin/internal/room"
	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/typing"
)

// Service builds sync responses.
type Service struct {
	db       *storage.DB
	rooms    *room.Service
	notifier *notifier.Notifier
	// accountDataStore is not named accountData: that is the method
	// filling the response section.
	accountDataStore *accountdata.Store
	receipts         *receipts.Store
	typing           *typing.Tracker
	e2ee             *e2ee.Service
	presence         *presence.Tracker
	log              *slog.Logger
	// filters holds parsed stored filters. Stored filters never change
	// once created, and clients send the same filter ID with every /sync,
	// so each poll would otherwise read and parse it again.
	filters *lru.Cache[filterKey, *Filter]
	// memberships holds each recent syncer's room memberships with the
	// notifier generation read before they were loaded. Until the user is
	// notified of a membership change after that generation, the list
	// still holds, and a woken sync need not read it again.
	memberships *lru.Cache[id.UserID, cachedMemberships]
	// keyCounts holds each recent syncer's one-time key counts and unused
	// fallback key types by device, likewise until a change to them is
	// notified.
	keyCounts *lru.Cache[deviceKey, cachedKeyCounts]
	// ignored holds each recent syncer's m.ignored_user_list, likewise
	// until an account data change is notified.
	ignored *lru.Cache[id.UserID, cachedIgnored]
	// notifications holds the unread counts (nil: all zero).
	notifications *notifications.Service
}

type deviceKey struct {
	user   id.UserID
	device id.DeviceID
}

// cachedKeyCounts are a device's key counts as of a notifier generation.
// Shared: read them, never change them.
type cachedKeyCounts struct {
	wake     Wake
	counts   map[string]int
	fallback []string
}

// cachedMemberships is a user's memberships as of a notifier generation.
// The slice is shared: read it, never change it.
type cachedMemberships struct {
	wake Wake
	list []room.Membership
}

// filterKey names a stored filter.
type filterKey struct {
	user id.UserID
	id   string
}

// maxCachedFilters bounds the parsed-filter cache (a few hundred bytes
// each), maxCachedMemberships the membership and key count caches. A
// membership takes about 150 bytes, and only users with at most
// maxCachedRooms memberships are cached, so the membership cache stays
// under about 150 MB however many rooms its users are in.
const (
	maxCachedFilters     = 10000
	maxCachedMemberships = 10000
	maxCachedRooms       = 100
)

// New returns a sync Service reading events through rooms, account data,
// receipts and typing from their stores, and waiting on n.
func New(db *storage.DB, rooms *room.Service, n *notifier.Notifier, ad *accountdata.Store, rc *receipts.Store, ty *typing.Tracker, log *slog.Logger, opts ...Option) *Service {
	filters, _ := lru.New[filterKey, *Filter](maxCachedFilters)
	memberships, _ := lru.New[id.UserID, cachedMemberships](maxCachedMemberships)
	keyCounts, _ := lru.New[deviceKey, cachedKeyCounts](maxCachedMemberships)
	ignored, _ := lru.New[id.UserID, cachedIgnored](maxCachedMemberships)
	s := &Service{db: db, rooms: rooms, notifier: n, accountDataStore: ad, receipts: rc, typing: ty, log: log,
		filters: filters, memberships: memberships, keyCounts: keyCounts, ignored: ignored}
	for _, o := range opts {
		o(s)
	}
	return s
}
