// Package pushers owns users' pushers and the delivery of their
// notifications to HTTP push gateways (spec: client-server "Push
// notifications", pusher.yaml; the Push Gateway API, POST
// /_matrix/push/v1/notify).
//
// # Pushers
//
// A pusher is kept per (user, app_id, pushkey) and belongs to the device
// whose access token set it: deleting or logging out that device removes
// it (DevicesRemoved, users' devices hook, in the same transaction), and so
// does a gateway naming its pushkey as rejected. Setting a pusher without
// append removes other users' pushers of the same app_id and pushkey, as
// Synapse does. Only kind "http" is delivered; "email" needs SMTP, which
// the server does not have, so Set refuses it.
//
// # Delivery
//
// Rule evaluation (the producer, in push's terms) calls Notified for each
// notification inside the transaction that records it: Notified writes one
// row per pusher of the user into the durable queue (pusher_queue) in that
// transaction, so a notification is delivered if and only if it is stored,
// and after commit wakes each pusher's worker. A pusher with queued rows
// has one worker goroutine, which sends its rows one at a time in the
// order of the events' stream positions (per-pusher ordering, whatever
// order one transaction handed them over in) and exits when the queue is
// empty; Start
// picks up what a previous run left. At most a fixed number of gateway
// requests are in flight at once over all pushers.
//
// Requests go through a netguard guard (loopback and private addresses are
// refused unless push.allow_private is set), do not follow redirects and
// time out after 30 s. The body follows Synapse: event_id, room_id, type,
// sender, sender_display_name, room_name (the m.room.name, else the
// canonical alias), room_alias (the canonical alias), prio, content,
// membership and user_is_target for member events, counts.unread, and the
// one device with data minus url and the tweaks; with data.format
// "event_id_only" only event_id, room_id, prio, counts and the device
// without tweaks. prio is "high" for encrypted events and for
// notifications that highlight or play a sound, else "low" (Synapse's
// rule: the default rules give messages in one-to-one rooms, invites and
// mentions a sound).
//
// A failure (no connection, a refused address, a timeout, a non-2xx
// answer) is retried after 1 s, doubling per consecutive failure up to an
// hour (Synapse's HttpPusher backoff); a success resets it. Once a pusher
// has been failing for a day its failing notification is dropped and the
// next one is tried, so a gateway that comes back does not get a day of
// stale alerts. The failing-since time is stored; the backoff itself
// restarts at 1 s after a restart.
//
// pushers imports storage, push (the Notification and Sink contract),
// netguard and mxerr. It must not import room, users or clientapi: room
// state for the request (names, display names) comes through RoomState,
// wired in homeserver.
package pushers
