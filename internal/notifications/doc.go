// Package notifications turns accepted events into notifications: it
// evaluates each local member's push rules (internal/push) against every
// accepted timeline event, local or received, records what notifies, keeps
// the unread counts per user, room and thread that /sync reports, clears
// them on read receipts, and serves GET /notifications.
//
// Flow: room commits an event and, through room.Indexer, wakes the worker
// after commit. The worker follows the events table in stream order from a
// persisted cursor (the events table is the durable queue: events stored
// while the server was down are evaluated when it starts), so evaluation
// costs the send path nothing but the wake-up. In one write transaction
// per batch of events it stores the notification rows, raises the counts,
// hands each notification to the push.Sink (pusher delivery, optional),
// and advances its cursor; after commit it updates the counts it keeps in
// memory for /sync. A sync waits up to SyncWait for the events it sends
// to be evaluated, so their counts come with them; a sync that went on
// without them is woken (notifier.Notifications) when the worker catches
// up, or once a second while it lags. Read receipts (receipts.ReadHook)
// and the user's own events mark notifications read and recount in their
// transaction.
//
// Not done: invites received for rooms this server is not in (kept in
// remote_invites, outside the event stream the worker reads), dropping the
// notifications of redacted events, and skipping senders the user
// ignores (Synapse does all three).
//
// Rooms' members, display names and power levels are cached per room and
// dropped on each change of the room's state (room.StateHook), so
// evaluating an event for a thousand members reads nothing but the
// compiled rule sets.
//
// notifications imports room, push, relations, receipts (types), notifier
// and storage; it must not import clientsync, clientapi or pushers.
// clientsync reads the counts, clientapi serves GET /notifications.
package notifications
