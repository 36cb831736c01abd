package clientapi

import (
	"net/http"

	"github.com/myelin-chat/myelin/internal/httpx"
)

// route is one entry of the route table.
type route struct {
	method, path string
	// versions are the path prefixes the route is served under; most
	// endpoints are served on v3 and on r0, which several clients still call.
	versions []string
	h        httpx.HandlerFunc
}

var (
	v3r0 = []string{"/_matrix/client/v3", "/_matrix/client/r0"}
	v1   = []string{"/_matrix/client/v1"}
	// v3 is for endpoints added after r0 was retired, which Synapse
	// serves on v3 only.
	v3   = []string{"/_matrix/client/v3"}
	none = []string{""}
	// The content repository's upload and legacy download paths live
	// under /_matrix/media, served on v3, r0 and v1 as Synapse does.
	mediaV3 = []string{"/_matrix/media/v3", "/_matrix/media/r0", "/_matrix/media/v1"}
	mediaV1 = []string{"/_matrix/media/v1"}
)

// Guests (guest_access.md) reach only the routes registered with
// guestAuthed: those the spec's guest access module lists.

// guestDisplayName admits guests to setting their display name, the one
// profile field the guest access module lets them change.
func guestDisplayName(r *http.Request) bool { return r.PathValue("keyName") == "displayname" }

// Register adds every client-server route to mux.
func (a *API) Register(mux httpx.Router) {
	routes := []route{
		// versions.yaml, wellknown.yaml, capabilities.yaml
		{"GET", "/_matrix/client/versions", none, a.getVersions},
		{"GET", "/.well-known/matrix/client", none, a.getWellknown},
		// support.yaml
		{"GET", "/.well-known/matrix/support", none, a.getWellknownSupport},
		{"GET", "/capabilities", v3r0, a.authed(a.getCapabilities)},

		// registration.yaml, registration_tokens.yaml
		{"POST", "/register", v3r0, a.limited(a.register)},
		{"GET", "/register/available", v3r0, a.limited(a.checkUsernameAvailability)},
		{"GET", "/register/m.login.registration_token/validity", v1, a.limited(a.registrationTokenValidity)},
		{"POST", "/register/email/requestToken", v3r0, a.limited(a.requestTokenToRegisterEmail)},
		{"POST", "/register/msisdn/requestToken", v3r0, a.limited(a.requestTokenToRegisterMSISDN)},

		// login.yaml, logout.yaml, whoami.yaml
		{"GET", "/login", v3r0, a.getLoginFlows},
		{"POST", "/login", v3r0, a.limited(a.login)},
		// The pages of e-mail validation mails (email_validation.go).
		{"GET", emailValidatePath, none, a.limited(a.validateEmailLink)},
		{"POST", emailSubmitPath, none, a.limited(a.submitEmailToken)},
		// refresh.yaml, login_token.yaml
		{"POST", "/refresh", v3, a.limited(a.refresh)},
		{"POST", "/login/get_token", v1, a.authed(a.limited(a.generateLoginToken))},
		{"POST", "/logout", v3r0, a.authed(a.logout)},
		{"POST", "/logout/all", v3r0, a.authed(a.logoutAll)},
		{"GET", "/account/whoami", v3r0, a.guestAuthed(a.getTokenOwner)},

		// password_management.yaml, account_deactivation.yaml
		{"POST", "/account/password", v3r0, a.authedOrAnonymous(a.changePassword)},
		{"POST", "/account/deactivate", v3r0, a.authed(a.deactivateAccount)},
		{"POST", "/account/password/email/requestToken", v3r0, a.limited(a.requestTokenToResetPasswordEmail)},
		{"POST", "/account/password/msisdn/requestToken", v3r0, a.limited(a.requestTokenToResetPasswordMSISDN)},

		// administrative_contact.yaml
		{"GET", "/account/3pid", v3r0, a.authed(a.getAccount3PIDs)},
		{"POST", "/account/3pid", v3r0, a.authed(a.post3PIDs)},
		{"POST", "/account/3pid/add", v3r0, a.authed(a.add3PID)},
		{"POST", "/account/3pid/bind", v3r0, a.authed(a.bind3PID)},
		{"POST", "/account/3pid/delete", v3r0, a.authed(a.delete3pidFromAccount)},
		{"POST", "/account/3pid/unbind", v3r0, a.authed(a.unbind3pidFromAccount)},
		{"POST", "/account/3pid/email/requestToken", v3r0, a.limited(a.requestTokenTo3PIDEmail)},
		{"POST", "/account/3pid/msisdn/requestToken", v3r0, a.limited(a.requestTokenTo3PIDMSISDN)},

		// device_management.yaml
		{"GET", "/devices", v3r0, a.guestAuthed(a.getDevices)},
		{"GET", "/devices/{deviceId}", v3r0, a.guestAuthed(a.getDevice)},
		{"PUT", "/devices/{deviceId}", v3r0, a.guestAuthed(a.updateDevice)},
		{"DELETE", "/devices/{deviceId}", v3r0, a.authed(a.deleteDevice)},
		{"POST", "/delete_devices", v3r0, a.authed(a.deleteDevices)},

		// users.yaml
		{"POST", "/user_directory/search", v3r0, a.authed(a.searchUserDirectory)},

		// search.yaml
		{"POST", "/search", v3r0, a.authed(a.search)},

		// profile.yaml
		{"GET", "/profile/{userId}", v3r0, a.getUserProfile},
		{"GET", "/profile/{userId}/{keyName}", v3r0, a.getProfileField},
		{"PUT", "/profile/{userId}/{keyName}", v3r0, a.authedIf(guestDisplayName, a.setProfileField)},
		{"DELETE", "/profile/{userId}/{keyName}", v3, a.authedIf(guestDisplayName, a.deleteProfileField)},

		// create_room.yaml
		{"POST", "/createRoom", v3r0, a.authed(a.createRoom)},

		// joining.yaml, inviting.yaml, leaving.yaml, kicking.yaml, banning.yaml
		{"POST", "/join/{roomIdOrAlias}", v3r0, a.authed(a.joinRoom)},
		// knocking.yaml
		{"POST", "/knock/{roomIdOrAlias}", v3r0, a.authed(a.knockRoom)},
		{"POST", "/rooms/{roomId}/join", v3r0, a.guestAuthed(a.joinRoomById)},
		{"POST", "/rooms/{roomId}/invite", v3r0, a.authed(a.inviteUser)},
		{"POST", "/rooms/{roomId}/leave", v3r0, a.guestAuthed(a.leaveRoom)},
		{"POST", "/rooms/{roomId}/forget", v3r0, a.authed(a.forgetRoom)},
		{"POST", "/rooms/{roomId}/upgrade", v3r0, a.authed(a.upgradeRoom)},
		{"POST", "/rooms/{roomId}/kick", v3r0, a.authed(a.kick)},
		{"POST", "/rooms/{roomId}/ban", v3r0, a.authed(a.ban)},
		{"POST", "/rooms/{roomId}/unban", v3r0, a.authed(a.unban)},

		// directory.yaml
		{"GET", "/directory/room/{roomAlias}", v3r0, a.getRoomIdByAlias},
		// list_public_rooms.yaml
		{"GET", "/directory/list/room/{roomId}", v3r0, a.getRoomVisibilityOnDirectory},
		{"PUT", "/directory/list/room/{roomId}", v3r0, a.authed(a.setRoomVisibilityOnDirectory)},
		{"GET", "/publicRooms", v3r0, a.getPublicRooms},
		{"POST", "/publicRooms", v3r0, a.authed(a.queryPublicRooms)},
		{"PUT", "/directory/room/{roomAlias}", v3r0, a.authed(a.setRoomAlias)},
		{"DELETE", "/directory/room/{roomAlias}", v3r0, a.authed(a.deleteRoomAlias)},
		{"GET", "/rooms/{roomId}/aliases", v3r0, a.authed(a.getLocalAliases)},

		// list_joined_rooms.yaml, rooms.yaml
		{"GET", "/joined_rooms", v3r0, a.authed(a.getJoinedRooms)},
		{"GET", "/rooms/{roomId}/joined_members", v3r0, a.authed(a.getJoinedMembersByRoom)},
		{"GET", "/rooms/{roomId}/members", v3r0, a.guestAuthed(a.getMembersByRoom)},
		{"GET", "/rooms/{roomId}/state", v3r0, a.guestAuthed(a.getRoomState)},
		{"GET", "/rooms/{roomId}/state/{eventType}", v3r0, a.guestAuthed(a.getRoomStateWithKey)},
		{"GET", "/rooms/{roomId}/state/{eventType}/{stateKey...}", v3r0, a.guestAuthed(a.getRoomStateWithKey)},
		{"GET", "/rooms/{roomId}/event/{eventId}", v3r0, a.guestAuthed(a.getOneRoomEvent)},
		// room_event_by_timestamp.yaml
		{"GET", "/rooms/{roomId}/timestamp_to_event", v1, a.authed(a.getEventByTimestamp)},
		// relations.yaml, threads_list.yaml
		{"GET", "/rooms/{roomId}/relations/{eventId}", v1, a.authed(a.getRelatingEvents)},
		{"GET", "/rooms/{roomId}/relations/{eventId}/{relType}", v1, a.authed(a.getRelatingEvents)},
		{"GET", "/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}", v1, a.authed(a.getRelatingEvents)},
		{"GET", "/rooms/{roomId}/threads", v1, a.authed(a.getThreadRoots)},

		// room_state.yaml, room_send.yaml, redaction.yaml
		{"PUT", "/rooms/{roomId}/state/{eventType}", v3r0, a.guestAuthed(a.setRoomStateWithKey)},
		{"PUT", "/rooms/{roomId}/state/{eventType}/{stateKey...}", v3r0, a.guestAuthed(a.setRoomStateWithKey)},
		{"PUT", "/rooms/{roomId}/send/{eventType}/{txnId}", v3r0, a.guestAuthed(a.sendMessage)},
		{"PUT", "/rooms/{roomId}/redact/{eventId}/{txnId}", v3r0, a.authed(a.redactEvent)},

		// report_content.yaml
		{"POST", "/rooms/{roomId}/report/{eventId}", v3r0, a.authed(a.reportEvent)},
		{"POST", "/rooms/{roomId}/report", v3, a.authed(a.reportRoom)},
		{"POST", "/users/{userId}/report", v3, a.authed(a.reportUser)},

		// message_pagination.yaml, event_context.yaml, sync.yaml, filter.yaml
		{"GET", "/rooms/{roomId}/messages", v3r0, a.guestAuthed(a.getRoomEvents)},
		{"GET", "/rooms/{roomId}/context/{eventId}", v3r0, a.guestAuthed(a.getEventContext)},
		{"GET", "/sync", v3r0, a.guestAuthed(a.sync)},
		{"POST", "/user/{userId}/filter", v3r0, a.authed(a.defineFilter)},
		{"GET", "/user/{userId}/filter/{filterId}", v3r0, a.authed(a.getFilter)},

		// old_sync.yaml, peeking_events.yaml (GET /events with room_id), room_initial_sync.yaml
		{"GET", "/events", v3r0, a.guestAuthed(a.getEvents)},
		{"GET", "/events/{eventId}", v3r0, a.authed(a.getOneEvent)},
		{"GET", "/initialSync", v3r0, a.authed(a.initialSync)},
		{"GET", "/rooms/{roomId}/initialSync", v3r0, a.guestAuthed(a.roomInitialSync)},

		// account-data.yaml
		{"GET", "/user/{userId}/account_data/{type}", v3r0, a.authed(a.getAccountData)},
		{"PUT", "/user/{userId}/account_data/{type}", v3r0, a.authed(a.setAccountData)},
		{"GET", "/user/{userId}/rooms/{roomId}/account_data/{type}", v3r0, a.authed(a.getAccountDataPerRoom)},
		{"PUT", "/user/{userId}/rooms/{roomId}/account_data/{type}", v3r0, a.authed(a.setAccountDataPerRoom)},

		// tags.yaml
		{"GET", "/user/{userId}/rooms/{roomId}/tags", v3r0, a.authed(a.getRoomTags)},
		{"PUT", "/user/{userId}/rooms/{roomId}/tags/{tag}", v3r0, a.authed(a.setRoomTag)},
		{"DELETE", "/user/{userId}/rooms/{roomId}/tags/{tag}", v3r0, a.authed(a.deleteRoomTag)},

		// pusher.yaml
		{"GET", "/pushers", v3r0, a.authed(a.getPushers)},
		{"POST", "/pushers/set", v3r0, a.authed(a.postPusher)},

		// notifications.yaml
		{"GET", "/notifications", v3r0, a.authed(a.getNotifications)},
		// pushrules.yaml
		{"GET", "/pushrules/{$}", v3r0, a.authed(a.getPushRules)},
		{"GET", "/pushrules/global/{$}", v3r0, a.authed(a.getPushRulesGlobal)},
		{"GET", "/pushrules/global/{kind}/{ruleId}", v3r0, a.authed(a.getPushRule)},
		{"PUT", "/pushrules/global/{kind}/{ruleId}", v3r0, a.authed(a.setPushRule)},
		{"DELETE", "/pushrules/global/{kind}/{ruleId}", v3r0, a.authed(a.deletePushRule)},
		{"GET", "/pushrules/global/{kind}/{ruleId}/enabled", v3r0, a.authed(a.isPushRuleEnabled)},
		{"PUT", "/pushrules/global/{kind}/{ruleId}/enabled", v3r0, a.authed(a.setPushRuleEnabled)},
		{"GET", "/pushrules/global/{kind}/{ruleId}/actions", v3r0, a.authed(a.getPushRuleActions)},
		{"PUT", "/pushrules/global/{kind}/{ruleId}/actions", v3r0, a.authed(a.setPushRuleActions)},

		// presence.yaml
		{"GET", "/presence/{userId}/status", v3r0, a.authed(a.getPresence)},
		{"PUT", "/presence/{userId}/status", v3r0, a.authed(a.setPresence)},

		// typing.yaml, receipts.yaml, read_markers.yaml
		{"PUT", "/rooms/{roomId}/typing/{userId}", v3r0, a.authed(a.setTyping)},
		{"POST", "/rooms/{roomId}/receipt/{receiptType}/{eventId}", v3r0, a.authed(a.postReceipt)},
		{"POST", "/rooms/{roomId}/read_markers", v3r0, a.authed(a.setReadMarker)},

		// openid.yaml
		{"POST", "/user/{userId}/openid/request_token", v3r0, a.authed(a.requestOpenIdToken)},

		// mutual_rooms.yaml, and Synapse's MSC2666 path
		{"GET", "/mutual_rooms", v1, a.authed(a.getMutualRooms)},
		{"GET", "/user/mutual_rooms", []string{"/_matrix/client/unstable/uk.half-shot.msc2666"}, a.authed(a.getMutualRooms)},

		// voip.yaml
		{"GET", "/voip/turnServer", v3r0, a.authed(a.getTurnServer)},

		// keys.yaml, cross_signing.yaml, to_device.yaml
		{"POST", "/keys/upload", v3r0, a.guestAuthed(a.uploadKeys)},
		{"POST", "/keys/query", v3r0, a.guestAuthed(a.queryKeys)},
		{"POST", "/keys/claim", v3r0, a.guestAuthed(a.claimKeys)},
		{"GET", "/keys/changes", v3r0, a.authed(a.getKeysChanges)},
		{"POST", "/keys/device_signing/upload", v3r0, a.authed(a.uploadCrossSigningKeys)},
		{"POST", "/keys/signatures/upload", v3r0, a.authed(a.uploadCrossSigningSignatures)},
		{"PUT", "/sendToDevice/{eventType}/{txnId}", v3r0, a.guestAuthed(a.sendToDevice)},

		// key_backup.yaml
		{"POST", "/room_keys/version", v3r0, a.authed(a.postRoomKeysVersion)},
		{"GET", "/room_keys/version", v3r0, a.authed(a.getRoomKeysVersionCurrent)},
		{"GET", "/room_keys/version/{version}", v3r0, a.authed(a.getRoomKeysVersion)},
		{"PUT", "/room_keys/version/{version}", v3r0, a.authed(a.putRoomKeysVersion)},
		{"DELETE", "/room_keys/version/{version}", v3r0, a.authed(a.deleteRoomKeysVersion)},
		{"PUT", "/room_keys/keys", v3r0, a.authed(a.putRoomKeys)},
		{"GET", "/room_keys/keys", v3r0, a.authed(a.getRoomKeys)},
		{"DELETE", "/room_keys/keys", v3r0, a.authed(a.deleteRoomKeys)},
		{"PUT", "/room_keys/keys/{roomId}", v3r0, a.authed(a.putRoomKeysByRoomId)},
		{"GET", "/room_keys/keys/{roomId}", v3r0, a.authed(a.getRoomKeysByRoomId)},
		{"DELETE", "/room_keys/keys/{roomId}", v3r0, a.authed(a.deleteRoomKeysByRoomId)},
		{"PUT", "/room_keys/keys/{roomId}/{sessionId}", v3r0, a.authed(a.putRoomKeyBySessionId)},
		{"GET", "/room_keys/keys/{roomId}/{sessionId}", v3r0, a.authed(a.getRoomKeyBySessionId)},
		{"DELETE", "/room_keys/keys/{roomId}/{sessionId}", v3r0, a.authed(a.deleteRoomKeyBySessionId)},

		// authed-content-repo.yaml, content-repo.yaml (URL previews)
		{"GET", "/media/preview_url", v1, a.previewing(a.getUrlPreviewAuthed)},
		{"GET", "/preview_url", []string{"/_matrix/media/v3", "/_matrix/media/r0"}, a.previewing(a.getUrlPreview)},
	}
	if a.spaces != nil {
		routes = append(routes,
			// space_hierarchy.yaml, room_summary.yaml
			route{"GET", "/rooms/{roomId}/hierarchy", v1, a.authed(a.getSpaceHierarchy)},
			route{"GET", "/room_summary/{roomIdOrAlias}", v1, a.authedOrAnonymous(a.getRoomSummary)},
			// MSC3266's unstable path, which clients that predate v1.15
			// (mautrix-go among them) call.
			route{"GET", "/summary/{roomIdOrAlias}", []string{"/_matrix/client/unstable/im.nheko.summary"}, a.authedOrAnonymous(a.getRoomSummary)})
	}
	if a.media != nil {
		routes = append(routes, a.mediaRoutes()...)
	}
	if a.slidingSync != nil {
		// MSC4186 (simplified sliding sync); spec v1.19 has no stable path.
		routes = append(routes, route{"POST", "/sync", []string{"/_matrix/client/unstable/org.matrix.simplified_msc3575"}, a.authed(a.slidingSyncRequest)})
	}
	for _, rt := range routes {
		h := a.http.Wrap(rt.h)
		for _, prefix := range rt.versions {
			mux.Handle(rt.method+" "+prefix+rt.path, h)
		}
	}
}

// mediaRoutes are the content repository's routes (content-repo.yaml,
// authed-content-repo.yaml); the URL preview routes are registered with
// the previewer.
func (a *API) mediaRoutes() []route {
	m := withMediaHeaders
	return []route{
		// content-repo.yaml
		{"POST", "/upload", mediaV3, m(a.authed(a.uploadContent))},
		{"PUT", "/upload/{serverName}/{mediaId}", mediaV3, m(a.authed(a.uploadContentToMXC))},
		{"POST", "/create", mediaV1, m(a.authed(a.createContent))},
		{"GET", "/download/{serverName}/{mediaId}", mediaV3, m(a.getContent)},
		{"GET", "/download/{serverName}/{mediaId}/{fileName}", mediaV3, m(a.getContentOverrideName)},
		{"GET", "/thumbnail/{serverName}/{mediaId}", mediaV3, m(a.getContentThumbnail)},
		{"GET", "/config", mediaV3, m(a.authed(a.getConfig))},

		// authed-content-repo.yaml
		{"GET", "/media/download/{serverName}/{mediaId}", v1, m(a.guestAuthed(a.getContentAuthed))},
		{"GET", "/media/download/{serverName}/{mediaId}/{fileName}", v1, m(a.guestAuthed(a.getContentOverrideNameAuthed))},
		{"GET", "/media/thumbnail/{serverName}/{mediaId}", v1, m(a.guestAuthed(a.getContentThumbnailAuthed))},
		{"GET", "/media/config", v1, m(a.authed(a.getConfigAuthed))},
	}
}
