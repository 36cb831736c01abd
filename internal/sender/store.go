package sender

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/myelin-chat/myelin/internal/storage"
)

// Payload kinds, as stored in sender_payloads.kind and sender_queue.kind.
const (
	kindPDU int64 = 0
	kindEDU int64 = 1
)

// payloadCounter, in storage's counters table, orders every queue.
const payloadCounter = "sender_payload"

// insertChunk bounds the destinations per multi-row INSERT, well under both
// engines' limits on bound parameters.
const insertChunk = 500

// txn is a destination's transaction in flight, retried unchanged until
// it succeeds or is dropped.
type txn struct {
	id       string
	originTS int64
	pdus     []json.RawMessage
	edus     []json.RawMessage
	// nids are the payloads in the batch, to collect once it is done.
	nids []int64
	// persisted is set once the transaction is recorded in sender_txns.
	persisted bool
}

// enqueue stores one payload and queues it for each destination, inside tx.
func enqueue(ctx context.Context, tx *storage.Tx, destinations []string, kind int64, eduType string, body []byte, now time.Time) error {
	nid, err := storage.NextID(ctx, tx, payloadCounter, 1)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO sender_payloads (payload_nid, kind, edu_type, json, created_ts)
		VALUES ($1, $2, $3, $4, $5)`, nid, kind, eduType, string(body), now.UnixMilli()); err != nil {
		return fmt.Errorf("storing outbound payload: %w", err)
	}
	for start := 0; start < len(destinations); start += insertChunk {
		chunk := destinations[start:min(start+insertChunk, len(destinations))]
		args := []any{kind, nid}
		rows := make([]string, len(chunk))
		for i, d := range chunk {
			args = append(args, d)
			rows[i] = "($" + strconv.Itoa(i+3) + ", $1, $2)"
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO sender_queue (destination, kind, payload_nid) VALUES `+
			strings.Join(rows, ", "), args...); err != nil {
			return fmt.Errorf("queueing payload %d for %d destinations: %w", nid, len(chunk), err)
		}
	}
	return nil
}

// queuedDestinations lists every destination with queued entries.
func queuedDestinations(ctx context.Context, db *storage.DB) ([]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT DISTINCT destination FROM sender_queue`)
	if err != nil {
		return nil, fmt.Errorf("listing destinations with queued entries: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return nil, fmt.Errorf("listing destinations with queued entries: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing destinations with queued entries: %w", err)
	}
	return out, nil
}

// batchLimits bound one new transaction.
type batchLimits struct {
	pdus, edus int
	// expired reports whether a queued EDU of eduType created at created
	// is too old to be worth sending.
	expired func(eduType string, created time.Time) bool
}

// maxExpiredPerTxn bounds the expired EDUs one call of nextTxn deletes, so
// that a long outage's backlog is cleared in steps of bounded size.
const maxExpiredPerTxn = 1000

// nextTxn returns the destination's next transaction: the one recorded as
// in flight (sender_txns) if there is one, else a new batch from the head
// of its queue, or nil when the queue is empty. A new batch is only read,
// not written: it is recorded (persistTxn) only if its first attempt does
// not succeed, so a transaction that succeeds at once costs one write, its
// removal. Expired ephemeral EDUs met on the way are deleted; their count
// is returned.
func nextTxn(ctx context.Context, db *storage.DB, destination string, lim batchLimits, now time.Time) (*txn, int, error) {
	t, err := loadTxn(ctx, db, destination)
	if err != nil || t != nil {
		return t, 0, err
	}
	pdus, pduNIDs, pduKey, _, err := readHead(ctx, db, destination, kindPDU, lim.pdus, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("reading the queue of %s: %w", destination, err)
	}
	edus, eduNIDs, eduKey, gone, err := readHead(ctx, db, destination, kindEDU, lim.edus, lim.expired)
	if err != nil {
		return nil, 0, fmt.Errorf("reading the queue of %s: %w", destination, err)
	}
	if len(gone) > 0 {
		err := db.WriteTx(ctx, func(tx *storage.Tx) error { return deleteRows(ctx, tx, destination, gone) })
		if err != nil {
			return nil, 0, fmt.Errorf("deleting expired EDUs queued for %s: %w", destination, err)
		}
	}
	if len(pdus)+len(edus) == 0 {
		return nil, len(gone), nil
	}
	return &txn{
		id:       txnID(append(pduKey, eduKey...)),
		originTS: now.UnixMilli(),
		pdus:     pdus, edus: edus,
		nids: append(pduNIDs, eduNIDs...),
	}, len(gone), nil
}

// txnID derives a transaction's ID from the queue entries in it: a hash of
// their payload nids and creation times. The same batch formed again, after
// a crash before it was recorded, gets the same ID, so a destination that
// processed it deduplicates the resend; the times keep IDs distinct should
// the database, and with it the nid counter, ever be recreated under the
// same server name.
func txnID(key []byte) string {
	sum := sha256.Sum256(key)
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// persistTxn records t as the destination's transaction in flight, so that
// retries, after a restart too, send the same batch under the same ID.
func persistTxn(ctx context.Context, db *storage.DB, destination string, t *txn) error {
	err := db.WriteTx(ctx, func(tx *storage.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO sender_txns (destination, txn_id, origin_ts) VALUES ($1, $2, $3)`,
			destination, t.id, t.originTS); err != nil {
			return err
		}
		for start := 0; start < len(t.nids); start += insertChunk {
			args := []any{destination, t.id}
			if _, err := tx.ExecContext(ctx, `UPDATE sender_queue SET txn_id = $2 WHERE destination = $1 AND payload_nid IN (`+
				placeholders(3, t.nids[start:min(start+insertChunk, len(t.nids))], &args)+`)`, args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("recording transaction %s to %s: %w", t.id, destination, err)
	}
	t.persisted = true
	return nil
}

// readHead reads up to limit unassigned entries of one kind from the head
// of the destination's queue, returning their JSON and nids in queue order
// and the key txnID hashes.
// Entries for which expired reports true are skipped and returned in gone
// (at most maxExpiredPerTxn); reading goes on past them until limit entries
// are kept or the queue ends.
func readHead(ctx context.Context, q storage.Querier, destination string, kind int64, limit int,
	expired func(eduType string, created time.Time) bool) (bodies []json.RawMessage, nids []int64, key []byte, gone []int64, err error) {
	after := int64(-1)
	for len(bodies) < limit && len(gone) < maxExpiredPerTxn {
		rows, err := q.QueryContext(ctx, `SELECT q.payload_nid, p.edu_type, p.created_ts, p.json
			FROM sender_queue q JOIN sender_payloads p ON p.payload_nid = q.payload_nid
			WHERE q.destination = $1 AND q.kind = $2 AND q.txn_id IS NULL AND q.payload_nid > $3
			ORDER BY q.payload_nid LIMIT $4`, destination, kind, after, limit-len(bodies))
		if err != nil {
			return nil, nil, nil, nil, err
		}
		n := 0
		for rows.Next() {
			var nid, created int64
			var eduType, body string
			if err := rows.Scan(&nid, &eduType, &created, &body); err != nil {
				rows.Close()
				return nil, nil, nil, nil, err
			}
			n++
			after = nid
			if expired != nil && expired(eduType, time.UnixMilli(created)) {
				gone = append(gone, nid)
				continue
			}
			nids = append(nids, nid)
			key = binary.BigEndian.AppendUint64(key, uint64(nid))
			key = binary.BigEndian.AppendUint64(key, uint64(created))
			bodies = append(bodies, json.RawMessage(body))
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, nil, nil, nil, err
		}
		if n == 0 {
			break
		}
	}
	return bodies, nids, key, gone, nil
}

// loadTxn returns the transaction recorded as in flight to destination, or
// nil.
func loadTxn(ctx context.Context, db *storage.DB, destination string) (*txn, error) {
	t := &txn{persisted: true}
	err := db.QueryRowContext(ctx, `SELECT txn_id, origin_ts FROM sender_txns WHERE destination = $1`, destination).Scan(&t.id, &t.originTS)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the transaction in flight to %s: %w", destination, err)
	}
	rows, err := db.QueryContext(ctx, `SELECT q.payload_nid, q.kind, p.json
		FROM sender_queue q JOIN sender_payloads p ON p.payload_nid = q.payload_nid
		WHERE q.destination = $1 AND q.txn_id = $2 ORDER BY q.payload_nid`, destination, t.id)
	if err != nil {
		return nil, fmt.Errorf("reading transaction %s to %s: %w", t.id, destination, err)
	}
	defer rows.Close()
	for rows.Next() {
		var nid, kind int64
		var body string
		if err := rows.Scan(&nid, &kind, &body); err != nil {
			return nil, fmt.Errorf("reading transaction %s to %s: %w", t.id, destination, err)
		}
		t.nids = append(t.nids, nid)
		if kind == kindPDU {
			t.pdus = append(t.pdus, json.RawMessage(body))
		} else {
			t.edus = append(t.edus, json.RawMessage(body))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading transaction %s to %s: %w", t.id, destination, err)
	}
	if len(t.nids) == 0 {
		// Nothing left under this ID (cannot happen through this package):
		// forget it rather than send an empty transaction forever.
		if err := finishTxns(ctx, db, []*finishReq{{dest: destination, t: t}}); err != nil {
			return nil, err
		}
		return nil, nil
	}
	return t, nil
}

// deleteRows removes the destination's queue rows for nids and then the
// payloads among nids that no queue row refers to any more.
func deleteRows(ctx context.Context, tx *storage.Tx, destination string, nids []int64) error {
	for start := 0; start < len(nids); start += insertChunk {
		chunk := nids[start:min(start+insertChunk, len(nids))]
		args := []any{destination}
		if _, err := tx.ExecContext(ctx, `DELETE FROM sender_queue WHERE destination = $1 AND payload_nid IN (`+
			placeholders(2, chunk, &args)+`)`, args...); err != nil {
			return err
		}
		args = nil
		if _, err := tx.ExecContext(ctx, `DELETE FROM sender_payloads WHERE payload_nid IN (`+placeholders(1, chunk, &args)+`)
			AND NOT EXISTS (SELECT 1 FROM sender_queue q WHERE q.payload_nid = sender_payloads.payload_nid)`, args...); err != nil {
			return err
		}
	}
	return nil
}

// placeholders returns "$first,...,$(first+len(nids)-1)" and appends nids
// to args.
func placeholders(first int, nids []int64, args *[]any) string {
	for _, nid := range nids {
		*args = append(*args, nid)
	}
	return storage.Placeholders(first, len(nids))
}
