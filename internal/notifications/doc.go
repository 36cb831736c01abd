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
// and advances its cursor; after commit it wakes the affected users' /sync
// with notifier.Notifications. Read receipts (receipts.ReadHook) and the
// user's own events mark notifications read and recount in their
// transaction.
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
