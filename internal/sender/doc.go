// Package sender owns outbound federation: a durable queue per destination
// server, batching into transactions (PUT /_matrix/federation/v1/send/{txnId},
// spec "Transactions"), one transaction in flight per destination, retries
// with backoff, and catch-up after an outage or a restart.
//
// Flow: room persists an event and, in the same write transaction, calls
// EnqueuePDU for the servers in the room, so the event and its queue entries
// commit together; EDU producers (typing, receipts, presence, device lists,
// to-device) call EnqueueEDU. After commit the destination's worker is
// woken at once, forms a transaction from the head of the queue and hands
// it to the Transport (the federation client). sender imports storage
// only; it must not import room, federationapi or any client-facing
// package — the Transport is handed in.
//
// # Queues
//
// A PDU or EDU is stored once (sender_payloads) and queued once per
// destination (sender_queue), in the order of a payload counter allocated
// inside the serialised write transaction, so each destination's queue is
// in commit order. A new transaction takes, in queue order, the first 50
// PDUs and the first 100 EDUs not yet sent (the spec's limits): PDUs reach
// a destination in the order they were queued, and so do EDUs, but an EDU
// may overtake PDUs queued before it (and the other way round) — the spec
// orders nothing across the two lists of one transaction either.
//
// A transaction's ID is derived from the queue entries in it (a hash of
// their payload nids and creation times), and a failed transaction is
// retried unchanged: same batch, same ID, same origin_server_ts. After its
// first attempt fails (or is cancelled by Close) the batch is recorded in
// the database (sender_txns, sender_queue.txn_id), so retries after a
// restart send it unchanged too, and a destination that processed it but
// whose answer was lost deduplicates the retry by its ID. A transaction
// that succeeds at once is never recorded: it costs one write, removing its
// entries when the destination answers 200. The only gap is a crash (not
// Close) during that first attempt or between the 200 and the removal: the
// batch is then formed again from the head of the queue, under the same ID
// if no entries were added to it since, else under a new ID with the extra
// entries — the destination sees the old ones again, which PDUs (deduplicated
// by event ID) and EDUs (idempotent by design: receipts, typing, device list
// stream IDs, to-device message IDs) tolerate.
//
// Batches are read outside the process-wide write order; the removals of
// transactions that finish at about the same time share one write
// transaction (finisher), so an event fanned out to many servers costs a
// few commits, not one per server.
//
// # Workers and retries
//
// Each destination with queued entries has one worker goroutine; it exits
// when the queue is empty and is started again by the next enqueue, so
// nothing polls. A failed transaction is retried after a delay that starts
// at the minimum backoff (2s by default) and doubles per consecutive
// failure up to the maximum (1h); a success resets it. A Retry-After from a
// 429 (StatusError.RetryAfter) lengthens the delay, still within the cap.
// Wake cuts a destination's current delay short — call it when the
// destination shows it is back, e.g. when it sends us a request — and the
// worker then drains the whole backlog in order (catch-up), 50 PDUs per
// transaction. Backoff state lives in memory: after a restart every queued
// destination is tried once at Start.
//
// Per the spec the receiver answers 200 even when single PDUs fail, and a
// non-2xx answer means the whole transaction failed, so every failure is
// retried with the same ID. The exception is a transaction the destination
// refuses outright — 400, 401, 403 or 413 (a StatusError), which retrying
// the same bytes will not change. After 10 consecutive refusals of one
// transaction (WithMaxRejections) it is dropped, logged with its size and
// counted in Stats.DroppedPDUs/DroppedEDUs, so that one poisoned batch cannot
// block the destination forever. The destination can still fetch the
// dropped PDUs through /get_missing_events and /backfill when later events
// refer to them. Any other failure (network errors, 404, 408, 429, 5xx) is
// retried without limit: PDUs are never dropped because a server is down.
//
// # Ephemeral EDUs
//
// m.typing EDUs older than one minute and m.presence EDUs older than 15
// minutes are deleted instead of sent when a new transaction is formed:
// after a long outage they describe a past that no longer matters. All
// other EDUs (receipts, device list updates, to-device messages, signing
// key updates) are kept until delivered, like PDUs. An EDU already in a
// transaction in flight is resent as it is, since its ID must keep naming
// the same contents.
//
// The queue itself is unbounded: a destination that is gone for good keeps
// its backlog until an operator removes it.
package sender
