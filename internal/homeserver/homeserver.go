// Package homeserver builds every subsystem from the config and owns their
// start and stop. It is the one wiring point: only cmd/ and the test harness
// import it.
package homeserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/accountdata"
	"github.com/myelin-chat/myelin/internal/adminapi"
	"github.com/myelin-chat/myelin/internal/clientapi"
	"github.com/myelin-chat/myelin/internal/clientsync"
	"github.com/myelin-chat/myelin/internal/config"
	"github.com/myelin-chat/myelin/internal/e2ee"
	"github.com/myelin-chat/myelin/internal/email"
	"github.com/myelin-chat/myelin/internal/fedclient"
	"github.com/myelin-chat/myelin/internal/federationapi"
	"github.com/myelin-chat/myelin/internal/guests"
	"github.com/myelin-chat/myelin/internal/handshake"
	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/keys"
	"github.com/myelin-chat/myelin/internal/media"
	"github.com/myelin-chat/myelin/internal/metrics"
	"github.com/myelin-chat/myelin/internal/netguard"
	"github.com/myelin-chat/myelin/internal/notifications"
	"github.com/myelin-chat/myelin/internal/notifier"
	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/myelin-chat/myelin/internal/pducheck"
	"github.com/myelin-chat/myelin/internal/presence"
	"github.com/myelin-chat/myelin/internal/push"
	"github.com/myelin-chat/myelin/internal/pushers"
	"github.com/myelin-chat/myelin/internal/receipts"
	"github.com/myelin-chat/myelin/internal/relations"
	"github.com/myelin-chat/myelin/internal/remote"
	"github.com/myelin-chat/myelin/internal/reports"
	"github.com/myelin-chat/myelin/internal/room"
	"github.com/myelin-chat/myelin/internal/search"
	"github.com/myelin-chat/myelin/internal/sender"
	"github.com/myelin-chat/myelin/internal/slidingsync"
	"github.com/myelin-chat/myelin/internal/spaces"
	"github.com/myelin-chat/myelin/internal/storage"
	"github.com/myelin-chat/myelin/internal/threepid"
	"github.com/myelin-chat/myelin/internal/typing"
	"github.com/myelin-chat/myelin/internal/upgrade"
	"github.com/myelin-chat/myelin/internal/userdir"
	"github.com/myelin-chat/myelin/internal/users"
)

// Server is a running (or ready to run) homeserver.
type Server struct {
	cfg   config.Config
	log   *slog.Logger
	db    *storage.DB
	Users *users.Service
	Rooms *room.Service
	Sync  *clientsync.Service
	Media *media.Service
	// Reports holds what users reported to the admins.
	Reports *reports.Store
	// Pushers stores pushers and delivers to push gateways; it is the
	// push.Sink that rule evaluation hands each notification to, inside
	// the transaction recording it.
	Pushers  *pushers.Service
	notifier *notifier.Notifier
	typing   *typing.Tracker
	presence *presence.Tracker
	// notifications evaluates push rules on the event stream.
	notifications *notifications.Service
	handler       http.Handler
	mux           *httpx.Mux

	sender    *sender.Sender
	transport *transport
	cancel    context.CancelFunc

	httpSrv  *http.Server
	listener net.Listener
	// janitorDone is closed when the janitor has stopped.
	janitorDone chan struct{}
	served      chan error
	fedSrv      *http.Server
	fedServed   chan error
	metrics     *metrics.Metrics
	metricsL    *metricsListener
}

// New opens the database, applies migrations, loads the signing key and
// builds the services. It does not listen yet.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (*Server, error) {
	db, err := storage.Open(ctx, cfg.DatabaseURL, cfg.DataDir, 60*time.Second, log)
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	key, err := keys.LoadOrGenerate(cfg.SigningKeyPath)
	if err != nil {
		db.Close()
		return nil, err
	}
	n := notifier.New()
	s := &Server{cfg: cfg, log: log, db: db, notifier: n}
	fail := func(err error) (*Server, error) {
		db.Close()
		return nil, err
	}
	fed, err := fedclient.New(cfg.Federation, cfg.ServerName, key, log)
	if err != nil {
		return fail(err)
	}
	ring, err := keys.NewRing(ctx, keys.RingConfig{DB: db, ServerName: cfg.ServerName, Key: key, Fetcher: fed,
		Notaries: cfg.Federation.TrustedKeyServers, Log: log})
	if err != nil {
		return fail(err)
	}
	checker := pducheck.New(ring)
	s.transport = &transport{client: fed}
	s.sender = sender.New(db, cfg.ServerName, s.transport, log)
	s.metrics = s.newMetrics()
	dir := userdir.New(db, cfg.ServerName, cfg.UserDirectory.SearchAllUsers, log)
	pushGuard := netguard.New(nil, nil)
	if cfg.Push.AllowPrivate {
		pushGuard = netguard.AllowAll()
	}
	s.Pushers = pushers.New(db, log, pushers.WithGuard(pushGuard), pushers.WithRoomState(roomState{s}))
	s.Users = users.New(db, cfg.ServerName, cfg.BcryptCost, log, users.WithProfileHook(dir.AccountChanged),
		users.WithDevicesHook(s.Pushers.DevicesRemoved),
		users.WithTokenLifetimes(time.Duration(cfg.Sessions.RefreshableAccessTokenLifetime), time.Duration(cfg.Sessions.RefreshTokenLifetime)))
	keys := e2ee.New(db, n, cfg.ServerName, log, e2ee.WithFederation(s.sender, fed))
	rels := relations.New(db, cfg.ServerName)
	// The evictor sends leaves through s.Rooms, which its hook is part of:
	// it is made once the rooms exist, before any event is written.
	var evictor *guests.Evictor
	// upgrades is made once the room service exists; the membership hook
	// runs only after commits, when the server is serving.
	var upgrades *upgrade.Service
	accountData := accountdata.New(db, n, accountdata.WithDefault(push.AccountDataType, push.DefaultAccountData))
	pushRules := push.New(db, accountData)
	s.notifications = notifications.New(db, cfg.ServerName, pushRules, rels, n, log,
		notifications.WithEvaluation(cfg.Notifications.EvaluatePushRules), notifications.WithSink(s.Pushers))
	bumps := slidingsync.NewBumps(db)
	textIndex := search.NewIndex(db)
	s.Rooms = room.New(db, cfg.ServerName, key, n, log,
		room.WithIndexer(rels), room.WithIndexer(bumps), room.WithDecorator(rels), room.WithIndexer(s.notifications),
		room.WithIndexer(textIndex),
		room.WithStateHook(s.notifications.RoomStateChanged),
		room.WithRemote(remote.New(fed, checker)), room.WithOutbox(s.sender), room.WithKeys(ring),
		room.WithPersistObserver(s.metrics.ObservePersist),
		room.WithStateHook(dir.RoomStateChanged),
		room.WithStateHook(func(ctx context.Context, tx *storage.Tx, roomID id.RoomID, changes []room.StateChange,
			lookup func(evType, stateKey string) (*pdu.Event, error)) error {
			return evictor.StateChanged(ctx, tx, roomID, changes, lookup)
		}),
		room.WithMembershipHook(func(ctx context.Context, roomID id.RoomID, user id.UserID, membership string) {
			// Someone who left, or was kicked or banned, is not typing.
			if membership != "join" && s.typing != nil {
				s.typing.Stop(ctx, roomID, user)
			}
			// Those now sharing a room learn each other's presence.
			if membership == "join" && s.presence != nil {
				s.presence.Joined(roomID, user)
			}
			// The room's other servers learn a local joiner's devices.
			if membership == "join" {
				if err := keys.Joined(ctx, roomID, user); err != nil {
					log.Warn("announcing a joiner's devices failed", "room_id", roomID, "user_id", user, "err", err)
				}
				// A local joiner of an upgraded room keeps their tags
				// and push rules about its predecessor.
				if upgrades != nil && s.Users.IsLocal(user) {
					upgrades.Joined(ctx, roomID, user)
				}
			}
		}))
	evictor = guests.New(s.Rooms, s.Users, log)
	if err := dir.Backfill(ctx); err != nil {
		return fail(err)
	}
	if err := s.Rooms.EnableRecentIndex(ctx); err != nil {
		db.Close()
		return nil, err
	}
	s.typing = typing.New(n, s.Rooms.LocalJoined, log)
	rcpts := receipts.New(db, n, s.Rooms.LocalJoined, receipts.WithReadHook(s.notifications.ReceiptStored))
	pt := cfg.Presence.Timeouts
	s.presence = presence.New(db, n, s.Rooms, s.sender, cfg.ServerName, log, presence.Options{
		Enabled: cfg.Presence.Enabled,
		Timeouts: presence.Timeouts{Idle: pt.Idle, SyncOnline: pt.SyncOnline, ActiveGranularity: pt.ActiveGranularity,
			Federation: pt.Federation, FederationPing: pt.FederationPing},
	})
	s.Sync = clientsync.New(db, s.Rooms, n, accountData, rcpts, s.typing, log, clientsync.WithE2EE(keys),
		clientsync.WithPresence(s.presence), clientsync.WithNotifications(s.notifications))
	hs := handshake.New(fed, checker, s.Rooms, cfg.ServerName, key, log)
	sliding, err := slidingsync.New(ctx, slidingsync.Deps{DB: db, Rooms: s.Rooms, Sync: s.Sync, Notifier: n, AccountData: accountData,
		Receipts: rcpts, Typing: s.typing, E2EE: keys, Bumps: bumps, Log: log})
	if err != nil {
		return fail(err)
	}

	if s.Media, err = s.newMedia(ctx, fed); err != nil {
		return fail(err)
	}

	mux := httpx.NewMux()
	s.mux = mux
	// URL previews store their images through the media service.
	previewOpts, err := previewOption(cfg.URLPreview, s.Media, log)
	if err != nil {
		return fail(err)
	}
	upgrades = upgrade.New(s.Rooms, accountData, pushRules, log)
	s.Reports = reports.New(db)
	reportRate, reportBurst := 0.0, 0 // no limit when rate limiting is off
	if cfg.RateLimit.Enabled {
		reportRate, reportBurst = cfg.RateLimit.ReportsPerSecond, cfg.RateLimit.ReportsBurst
	}
	var mailer *email.Sender
	if cfg.Email.Enabled() {
		if mailer, err = email.New(cfg.Email); err != nil {
			return fail(err)
		}
	}
	sp := spaces.New(s.Rooms, fed, log)
	threepids := threepid.New(db, mailer, time.Duration(cfg.Email.ValidationTokenLifetime))
	client := clientapi.New(&s.cfg, log, s.Users, s.Rooms, s.Sync, accountData, rcpts, s.typing, hs, s.sender, keys,
		append(previewOpts, clientapi.WithMedia(s.Media), clientapi.WithPush(pushRules),
			clientapi.WithReports(s.Reports, reportRate, reportBurst), clientapi.WithRelations(rels),
			clientapi.WithUserDirectory(dir), clientapi.WithThreePIDs(threepids), clientapi.WithPushers(s.Pushers),
			clientapi.WithIdentityServers(fed), clientapi.WithSpaces(sp), clientapi.WithPresence(s.presence),
			clientapi.WithUpgrades(upgrades), clientapi.WithNotifications(s.notifications),
			clientapi.WithSlidingSync(sliding), clientapi.WithSearch(search.New(textIndex, s.Rooms)))...)
	client.Register(mux)
	s.federationRoutes(mux,
		federationapi.New(cfg.ServerName, log, db, s.Rooms, s.Users, checker, s.typing, rcpts, keys, cfg.Federation.AllowPublicRooms,
			federationapi.WithMedia(s.Media), federationapi.WithInviteChecker(accountData), federationapi.WithSpaces(sp), federationapi.WithPresence(s.presence)),
		&federationapi.KeyServer{Ring: ring, WellKnownServer: cfg.Federation.WellKnownServer, Version: Version},
		&federationapi.Authenticator{ServerName: cfg.ServerName, Keys: ring.VerifyKey, MaxBody: cfg.MaxRequestBytes})
	if err := s.ensureAdmin(ctx); err != nil {
		return fail(err)
	}
	adminapi.New(&s.cfg, log, s.Users).Register(mux)
	if err := s.presence.Start(ctx); err != nil {
		return fail(err)
	}
	mux.HandleFunc("GET /health", s.health)
	s.handler = s.metrics.Middleware(httpx.CORS(httpx.LimitBodyExcept(cfg.MaxRequestBytes, media.UploadRequest, httpx.Fallback(mux))))
	return s, nil
}

// Handler returns the HTTP handler serving every API.
func (s *Server) Handler() http.Handler { return s.handler }

// Routes returns the pattern ("METHOD /path/{param}") of every route
// served, client, federation, key, admin and well-known alike.
func (s *Server) Routes() []string { return s.mux.Patterns() }

// DB returns the database handle (for tests and admin commands).
func (s *Server) DB() *storage.DB { return s.db }

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := s.db.Ping(ctx); err != nil {
		http.Error(w, "database unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("OK"))
}

// Start listens on the configured address and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", s.cfg.Listen, err)
	}
	s.listener = ln
	s.httpSrv = &http.Server{
		Handler:           httpx.Forwarded(s.cfg.XForwarded, s.handler),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.served = make(chan error, 1)
	go func() { s.served <- s.httpSrv.Serve(ln) }()
	if err := s.startFederationListener(); err != nil {
		_ = s.httpSrv.Close()
		return err
	}
	if err := s.startMetrics(); err != nil {
		_ = s.httpSrv.Close()
		if s.fedSrv != nil {
			_ = s.fedSrv.Close()
		}
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.sender.Start(ctx)
	s.Pushers.Start(ctx)
	if err := s.notifications.Start(ctx, s.Rooms); err != nil {
		cancel()
		_ = s.httpSrv.Close()
		return err
	}
	s.janitorDone = make(chan struct{})
	go func() {
		defer close(s.janitorDone)
		s.janitor(ctx)
	}()
	s.log.Info("listening", "addr", ln.Addr().String(), "server_name", s.cfg.ServerName, "database", s.db.Dialect().String())
	return nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// Shutdown stops accepting requests, lets those in flight finish (until ctx
// ends), then closes the database.
func (s *Server) Shutdown(ctx context.Context) error {
	errs := []error{s.stopMetrics(ctx)}
	if s.fedSrv != nil {
		if err := s.fedSrv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping federation listener: %w", err))
		}
		if err := <-s.fedServed; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	if s.httpSrv != nil {
		if err := s.httpSrv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping HTTP server: %w", err))
		}
		if err := <-s.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	s.typing.Close()
	// Before the sender: the presence worker's last batch is queued.
	s.presence.Close()
	if s.cancel != nil {
		s.cancel()
	}
	if s.janitorDone != nil {
		<-s.janitorDone
	}
	s.notifications.Wait()
	s.sender.Close()
	s.Pushers.Close()
	if err := s.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing database: %w", err))
	}
	return errors.Join(errs...)
}

// Version is the software version reported to other servers.
const Version = "0.2.0"

// janitor removes what is only kept for a while, a minute after start and
// then every hour, until ctx ends: for now the client transaction IDs
// older than room.TxnIDMemory.
func (s *Server) janitor(ctx context.Context) {
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := s.Rooms.PruneTransactionIDs(ctx, time.Now().Add(-room.TxnIDMemory)); err != nil {
			s.log.Warn("janitor", "err", err)
		} else if n > 0 {
			s.log.Debug("janitor: forgot old transaction IDs", "count", n)
		}
		if n, err := s.notifications.Prune(ctx, time.Now().Add(-notifications.Retention)); err != nil {
			s.log.Warn("janitor", "err", err)
		} else if n > 0 {
			s.log.Debug("janitor: forgot old notifications", "count", n)
		}
		s.retainMedia(ctx)
		t.Reset(time.Hour)
	}
}
