package clientapi

import (
	"context"
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
)

type deactivateAccountReq struct {
	Auth *authDict `json:"auth"`
	// IDServer is accepted and ignored: no third-party identifiers are bound.
	IDServer string `json:"id_server"`
	// Erase is accepted; erasure is not implemented yet.
	Erase bool `json:"erase"`
}

type deactivateAccountResp struct {
	IDServerUnbindResult string `json:"id_server_unbind_result"`
}

// deactivateAccount serves POST /_matrix/client/v3/account/deactivate
// (account_deactivation.yaml), behind User-Interactive Authentication with
// the user's password. The account loses its password and every device.
// Myelin binds no third-party identifiers, and the spec asks for "success"
// when there is nothing to unbind.
func (a *API) deactivateAccount(w http.ResponseWriter, r *http.Request) error {
	var req deactivateAccountReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	sess := session(r)
	uia, done, err := a.interactiveAuth(w, r, uiaCall{
		purpose: "deactivate", user: sess.UserID, flows: passwordFlows, auth: req.Auth,
	})
	if err != nil || !done {
		return err
	}
	devs := a.allDevices(r.Context(), sess.UserID)
	if err := a.users.Deactivate(r.Context(), sess.UserID); err != nil {
		return err
	}
	a.devicesGone(r.Context(), sess.UserID, devs)
	unbound := "success"
	if a.threepids != nil {
		binds, err := a.threepids.Binds(r.Context(), sess.UserID, "", "")
		if err != nil {
			return err
		}
		for _, b := range binds {
			if res, err := a.unbindIdentity(r.Context(), sess.UserID, b.Medium, b.Address, b.IDServer); err != nil {
				return err
			} else if res != "success" {
				unbound = "no-support"
			}
		}
		// As Synapse does: the addresses are free for other accounts.
		if err := a.threepids.UnbindAll(r.Context(), sess.UserID); err != nil {
			return err
		}
	}
	a.uia.finish(uia.id)
	a.leaveAllRooms(r.Context(), sess.UserID)
	a.log.Info("account deactivated", "user_id", sess.UserID)
	return httpx.OK(w, deactivateAccountResp{IDServerUnbindResult: unbound})
}

// leaveAllRooms makes a deactivated user leave (or reject) every room, so
// the account stops appearing as a member.
func (a *API) leaveAllRooms(ctx context.Context, user id.UserID) {
	ms, err := a.rooms.LocalMemberships(ctx, user, 0)
	if err != nil {
		a.log.Warn("listing rooms of a deactivated user", "user_id", user, "err", err)
		return
	}
	for _, m := range ms {
		if m.Membership != "join" && m.Membership != "invite" && m.Membership != "knock" {
			continue
		}
		if _, err := a.sendMembership(ctx, user, m.RoomID, user, "leave", "", nil); err != nil {
			a.log.Warn("leaving room after deactivation", "user_id", user, "room_id", m.RoomID, "err", err)
		}
	}
}
