package users

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/storage"
)

// CreateGuest makes a guest account with a fresh numeric localpart, as
// Synapse names guests, and no password: a guest holds only the access
// token it is given.
func (s *Service) CreateGuest(ctx context.Context) (id.UserID, error) {
	for range 10 {
		n, _ := rand.Int(rand.Reader, big.NewInt(9_000_000_000))
		localpart := n.Add(n, big.NewInt(1_000_000_000)).String()
		nu := newAccount{userID: s.UserID(localpart), localpart: localpart, createdTS: s.now().UnixMilli()}
		err := s.db.WriteTx(ctx, func(tx *storage.Tx) error {
			if err := nu.insert(ctx, tx); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE accounts SET is_guest = 1 WHERE user_id = $1`, nu.userID.String()); err != nil {
				return fmt.Errorf("marking %s a guest: %w", nu.userID, err)
			}
			return s.profileChanged(ctx, tx, nu.userID)
		})
		if errors.Is(err, mxerr.UserInUse) {
			continue
		}
		if err != nil {
			return "", err
		}
		s.log.Info("guest account created", "user_id", nu.userID)
		return nu.userID, nil
	}
	return "", errors.New("registering a guest: no free generated localpart after 10 attempts")
}

// UpgradeGuest turns a guest account into a full one with password,
// keeping its user ID (the guest access module: registration with
// guest_access_token). M_FORBIDDEN when user is not a guest.
func (s *Service) UpgradeGuest(ctx context.Context, user id.UserID, password string) error {
	hash := ""
	if password != "" {
		var err error
		if hash, err = s.HashPassword(password); err != nil {
			return err
		}
	}
	// The cached sessions of the guest's tokens say IsGuest.
	defer s.tokens.forgetUser(user)
	res, err := s.db.ExecContext(ctx, `UPDATE accounts SET is_guest = 0, password_hash = $2 WHERE user_id = $1 AND is_guest = 1 AND deactivated = 0`,
		user.String(), hash)
	if err != nil {
		return fmt.Errorf("upgrading guest %s: %w", user, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("upgrading guest %s: %w", user, err)
	} else if n == 0 {
		return mxerr.Forbidden.With("%s is not a guest account", user)
	}
	s.log.Info("guest account upgraded", "user_id", user)
	return nil
}

// Guests returns those of users that are guest accounts here, asking the
// database in batches: a room's local members can be many.
func (s *Service) Guests(ctx context.Context, users []id.UserID) ([]id.UserID, error) {
	const batch = 500
	var local []any
	for _, u := range users {
		if s.IsLocal(u) {
			local = append(local, u.String())
		}
	}
	var out []id.UserID
	for len(local) > 0 {
		n := min(batch, len(local))
		chunk := local[:n]
		local = local[n:]
		marks := make([]string, n)
		for i := range marks {
			marks[i] = fmt.Sprintf("$%d", i+1)
		}
		rows, err := s.db.QueryContext(ctx, `SELECT user_id FROM accounts WHERE is_guest = 1 AND user_id IN (`+strings.Join(marks, ", ")+`)`, chunk...)
		if err != nil {
			return nil, fmt.Errorf("finding guests: %w", err)
		}
		for rows.Next() {
			var u string
			if err := rows.Scan(&u); err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, id.UserID(u))
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}
