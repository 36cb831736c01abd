// Package userdir owns the user directory: who a user can find with
// POST /user_directory/search, by a prefix of a display name or user ID.
//
// As in Synapse, a searcher finds the users who share a room with them and
// the users joined to a public room (join rule public, or history
// visibility world_readable); with search_all_users, every local account
// and every remote user this server knows from a room. The directory is
// derived data kept current inside the write transactions that change it:
// room calls RoomStateChanged (a room.StateHook) when it persists state,
// and users calls AccountChanged (a users.ProfileHook) when an account is
// created, renamed or deactivated. Nothing is found by scanning rooms.
//
// userdir imports storage, pdu and room (for the hook's types); room and
// users do not import it, homeserver wires the hooks.
package userdir

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"unicode"

	"github.com/tidwall/gjson"
	"golang.org/x/text/unicode/norm"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/myelin-chat/myelin/internal/room"
	"github.com/myelin-chat/myelin/internal/storage"
)

// Service searches and maintains the user directory.
type Service struct {
	db         *storage.DB
	serverName string
	searchAll  bool
	log        *slog.Logger
}

// New returns the directory of serverName. searchAll makes every known
// user searchable (Synapse's user_directory.search_all_users).
func New(db *storage.DB, serverName string, searchAll bool, log *slog.Logger) *Service {
	return &Service{db: db, serverName: serverName, searchAll: searchAll, log: log}
}

// Result is one user found.
type Result struct {
	UserID      id.UserID `json:"user_id"`
	DisplayName string    `json:"display_name,omitempty"`
	AvatarURL   string    `json:"avatar_url,omitempty"`
}

// normalise folds s for matching: compatibility decomposition, combining
// marks removed, lower case. "Élodie" and "ELODIE" both become "elodie".
func normalise(s string) string {
	var b strings.Builder
	for _, r := range norm.NFKD.String(s) {
		if unicode.Is(unicode.Mn, r) {
			continue
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// words splits normalised text into the words that are indexed and
// searched: runs of letters and digits.
func words(s string) []string {
	return strings.FieldsFunc(normalise(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsNumber(r)
	})
}

// terms are the distinct index words of a user: those of the display name
// and of the user ID (localpart and server name).
func terms(user id.UserID, displayName string) []string {
	seen := map[string]struct{}{}
	var out []string
	for _, w := range append(words(displayName), words(user.String())...) {
		if _, ok := seen[w]; !ok {
			seen[w] = struct{}{}
			out = append(out, w)
		}
	}
	return out
}

// upper returns the smallest string above every string starting with
// prefix in byte order, so [prefix, upper) is a range scan of the terms.
func upper(prefix string) string {
	return prefix + "\U0010FFFF"
}

// setProfile writes user's directory row and terms.
func setProfile(ctx context.Context, tx *storage.Tx, user id.UserID, local bool, displayName, avatarURL string) error {
	sortKey := normalise(displayName)
	if sortKey == "" {
		sortKey = normalise(user.Localpart())
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO user_directory (user_id, display_name, avatar_url, is_local, sort_key)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id) DO UPDATE SET display_name = excluded.display_name,
		avatar_url = excluded.avatar_url, is_local = excluded.is_local, sort_key = excluded.sort_key`,
		user.String(), nullIfEmpty(displayName), nullIfEmpty(avatarURL), storage.Bool(local), sortKey); err != nil {
		return fmt.Errorf("indexing %s in the user directory: %w", user, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM user_directory_terms WHERE user_id = $1`, user.String()); err != nil {
		return fmt.Errorf("indexing %s in the user directory: %w", user, err)
	}
	for _, t := range terms(user, displayName) {
		if _, err := tx.ExecContext(ctx, `INSERT INTO user_directory_terms (term, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
			t, user.String()); err != nil {
			return fmt.Errorf("indexing %s in the user directory: %w", user, err)
		}
	}
	return nil
}

// remove drops user from the directory (their memberships stay: they
// still tell who shares a room with whom).
func remove(ctx context.Context, tx *storage.Tx, user id.UserID) error {
	for _, q := range []string{`DELETE FROM user_directory_terms WHERE user_id = $1`, `DELETE FROM user_directory WHERE user_id = $1`} {
		if _, err := tx.ExecContext(ctx, q, user.String()); err != nil {
			return fmt.Errorf("removing %s from the user directory: %w", user, err)
		}
	}
	return nil
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// AccountChanged follows a local account: created or renamed (its global
// profile), or deactivated (removed). It runs in the account's transaction.
func (s *Service) AccountChanged(ctx context.Context, tx *storage.Tx, user id.UserID, displayName, avatarURL string, deactivated bool) error {
	if deactivated {
		return remove(ctx, tx, user)
	}
	return setProfile(ctx, tx, user, true, displayName, avatarURL)
}

// RoomStateChanged is the room.StateHook that follows memberships (who
// shares a room with whom, and remote users' profiles) and whether a room
// is public.
func (s *Service) RoomStateChanged(ctx context.Context, tx *storage.Tx, roomID id.RoomID, changes []room.StateChange,
	lookup func(evType, stateKey string) (*pdu.Event, error)) error {
	visibility := false
	for _, c := range changes {
		switch c.Key.Type {
		case "m.room.join_rules", "m.room.history_visibility":
			visibility = true
		case "m.room.member":
			membership := "leave"
			if c.Event != nil {
				membership = c.Event.Membership()
			}
			if err := s.memberChanged(ctx, tx, roomID, id.UserID(c.Key.StateKey), membership, c.Event); err != nil {
				return err
			}
		}
	}
	if visibility {
		return s.visibilityChanged(ctx, tx, roomID, lookup)
	}
	return nil
}

func (s *Service) memberChanged(ctx context.Context, tx *storage.Tx, roomID id.RoomID, user id.UserID, membership string, ev *pdu.Event) error {
	local := user.Homeserver() == s.serverName
	if membership != "join" {
		if _, err := tx.ExecContext(ctx, `DELETE FROM user_directory_members WHERE user_id = $1 AND room_id = $2`,
			user.String(), roomID.String()); err != nil {
			return fmt.Errorf("updating the user directory for %s leaving %s: %w", user, roomID, err)
		}
		if local {
			return nil
		}
		// A remote user is known only while they are in one of our rooms.
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM user_directory_members WHERE user_id = $1`, user.String()).Scan(&n); err != nil {
			return fmt.Errorf("updating the user directory for %s leaving %s: %w", user, roomID, err)
		}
		if n == 0 {
			return remove(ctx, tx, user)
		}
		return nil
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO user_directory_members (user_id, room_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
		user.String(), roomID.String()); err != nil {
		return fmt.Errorf("updating the user directory for %s joining %s: %w", user, roomID, err)
	}
	if local {
		// Local users are listed with their global profile, which the
		// account hook keeps; a per-room name does not change it.
		return nil
	}
	// A remote user's profile is what their latest join says, as in
	// Synapse. It is only rewritten when it changed: every join of theirs
	// in every room arrives here.
	dn, av := gjson.GetBytes(ev.Content, "displayname").Str, gjson.GetBytes(ev.Content, "avatar_url").Str
	var oldDN, oldAV sql.NullString
	err := tx.QueryRowContext(ctx, `SELECT display_name, avatar_url FROM user_directory WHERE user_id = $1`, user.String()).Scan(&oldDN, &oldAV)
	if err == nil && oldDN.String == dn && oldAV.String == av {
		return nil
	}
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("reading the directory entry of %s: %w", user, err)
	}
	return setProfile(ctx, tx, user, false, dn, av)
}

// publicRoom reports whether a room with these join rules and history
// visibility contents (nil: unset) is public: anyone may join it, or
// anyone may read it.
func publicRoom(joinRules, historyVisibility []byte) bool {
	return gjson.GetBytes(joinRules, "join_rule").Str == "public" ||
		gjson.GetBytes(historyVisibility, "history_visibility").Str == "world_readable"
}

// visibilityChanged records whether the room is now public.
func (s *Service) visibilityChanged(ctx context.Context, tx *storage.Tx, roomID id.RoomID, lookup func(evType, stateKey string) (*pdu.Event, error)) error {
	var content [2][]byte
	for i, t := range []string{"m.room.join_rules", "m.room.history_visibility"} {
		ev, err := lookup(t, "")
		if err != nil {
			return err
		}
		if ev != nil {
			content[i] = ev.Content
		}
	}
	return setPublic(ctx, tx, roomID, publicRoom(content[0], content[1]))
}

func setPublic(ctx context.Context, tx *storage.Tx, roomID id.RoomID, public bool) error {
	q := `DELETE FROM user_directory_public_rooms WHERE room_id = $1`
	if public {
		q = `INSERT INTO user_directory_public_rooms (room_id) VALUES ($1) ON CONFLICT DO NOTHING`
	}
	if _, err := tx.ExecContext(ctx, q, roomID.String()); err != nil {
		return fmt.Errorf("updating the user directory for the visibility of %s: %w", roomID, err)
	}
	return nil
}

// Backfill indexes, once, what existed before the directory did (see
// the 00015 migration): local accounts, remote users joined to rooms here
// and public rooms, from the accounts and the rooms' current state. It
// runs at start and does nothing once done.
func (s *Service) Backfill(ctx context.Context) error {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM user_directory_backfill`).Scan(&n); err != nil {
		return fmt.Errorf("checking the user directory backfill: %w", err)
	}
	if n == 0 {
		return nil
	}
	type profile struct {
		user   id.UserID
		dn, av string
	}
	var accounts, remotes []profile
	rooms := map[id.RoomID]map[string][]byte{}
	rows, err := s.db.QueryContext(ctx, `SELECT user_id, displayname, avatar_url FROM accounts WHERE deactivated = 0`)
	if err != nil {
		return fmt.Errorf("listing accounts for the user directory: %w", err)
	}
	for rows.Next() {
		var p profile
		var dn, av sql.NullString
		if err := rows.Scan(&p.user, &dn, &av); err != nil {
			rows.Close()
			return fmt.Errorf("listing accounts for the user directory: %w", err)
		}
		p.dn, p.av = dn.String, av.String
		accounts = append(accounts, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("listing accounts for the user directory: %w", err)
	}
	rows, err = s.db.QueryContext(ctx, `SELECT c.room_id, c.type, c.state_key, e.json FROM current_state c
		JOIN events e ON e.event_nid = c.event_nid
		WHERE c.type IN ('m.room.join_rules', 'm.room.history_visibility') OR (c.type = 'm.room.member' AND c.membership = 'join')`)
	if err != nil {
		return fmt.Errorf("reading room state for the user directory: %w", err)
	}
	for rows.Next() {
		var roomID, evType, stateKey string
		var js []byte
		if err := rows.Scan(&roomID, &evType, &stateKey, &js); err != nil {
			rows.Close()
			return fmt.Errorf("reading room state for the user directory: %w", err)
		}
		content := []byte(gjson.GetBytes(js, "content").Raw)
		if evType == "m.room.member" {
			if id.UserID(stateKey).Homeserver() != s.serverName {
				remotes = append(remotes, profile{id.UserID(stateKey),
					gjson.GetBytes(content, "displayname").Str, gjson.GetBytes(content, "avatar_url").Str})
			}
			continue
		}
		if rooms[id.RoomID(roomID)] == nil {
			rooms[id.RoomID(roomID)] = map[string][]byte{}
		}
		rooms[id.RoomID(roomID)][evType] = content
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading room state for the user directory: %w", err)
	}
	err = s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		for _, p := range accounts {
			if err := setProfile(ctx, tx, p.user, true, p.dn, p.av); err != nil {
				return err
			}
		}
		for _, p := range remotes {
			if err := setProfile(ctx, tx, p.user, false, p.dn, p.av); err != nil {
				return err
			}
		}
		for roomID, st := range rooms {
			if err := setPublic(ctx, tx, roomID, publicRoom(st["m.room.join_rules"], st["m.room.history_visibility"])); err != nil {
				return err
			}
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM user_directory_backfill`)
		return err
	})
	if err != nil {
		return fmt.Errorf("backfilling the user directory: %w", err)
	}
	s.log.Info("user directory indexed", "accounts", len(accounts), "remote_members", len(remotes), "rooms", len(rooms))
	return nil
}
