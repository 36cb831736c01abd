package homeserver

import (
	"context"
	"errors"
	"fmt"

	"github.com/myelin-chat/myelin/internal/mxerr"
)

// ensureAdmin creates the admin named by MYELIN_ADMIN_USER with
// MYELIN_ADMIN_PASSWORD when that account does not exist yet. An existing
// account is left alone, password included, so restarts with the same
// environment change nothing.
func (s *Server) ensureAdmin(ctx context.Context) error {
	if s.cfg.AdminUser == "" {
		return nil
	}
	localpart := s.cfg.AdminLocalpart()
	free, err := s.Users.Available(ctx, localpart)
	if err != nil {
		return fmt.Errorf("checking the admin user from MYELIN_ADMIN_USER: %w", err)
	}
	if !free {
		s.log.Info("admin user exists", "user_id", s.Users.UserID(localpart))
		return nil
	}
	userID, err := s.Users.Create(ctx, localpart, s.cfg.AdminPassword, true)
	if errors.Is(err, mxerr.UserInUse) {
		return nil // created concurrently by another replica
	}
	if err != nil {
		return fmt.Errorf("creating the admin user from MYELIN_ADMIN_USER: %w", err)
	}
	s.log.Info("created admin user from MYELIN_ADMIN_USER", "user_id", userID)
	return nil
}
