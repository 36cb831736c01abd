package federationapi

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/tidwall/gjson"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/pdu"
	"github.com/myelin-chat/myelin/internal/room"
)

// txnMemory is how long a transaction's answer is kept for retries.
const txnMemory = 24 * time.Hour

// The spec's limits on one transaction.
const (
	maxTxnPDUs = 50
	maxTxnEDUs = 100
)

// sendTransactionReq is the body of PUT /send/{txnId}.
type sendTransactionReq struct {
	Origin         string            `json:"origin"`
	OriginServerTS int64             `json:"origin_server_ts"`
	PDUs           []json.RawMessage `json:"pdus"`
	EDUs           []json.RawMessage `json:"edus"`
}

// pduResult is one entry of the response's pdus map.
type pduResult struct {
	Error string `json:"error,omitempty"`
}

type sendTransactionResp struct {
	PDUs map[id.EventID]pduResult `json:"pdus"`
}

// txnGate serialises the processing of one (origin, txnId), so a retry
// that arrives while the first attempt runs waits for its answer.
type txnGate struct {
	mu    sync.Mutex
	locks map[string]*sync.Mutex
	refs  map[string]int
}

func newTxnGate() *txnGate {
	return &txnGate{locks: map[string]*sync.Mutex{}, refs: map[string]int{}}
}

func (g *txnGate) lock(key string) func() {
	g.mu.Lock()
	l := g.locks[key]
	if l == nil {
		l = &sync.Mutex{}
		g.locks[key] = l
	}
	g.refs[key]++
	g.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		g.mu.Lock()
		if g.refs[key]--; g.refs[key] == 0 {
			delete(g.locks, key)
			delete(g.refs, key)
		}
		g.mu.Unlock()
	}
}

// sendTransaction handles PUT /_matrix/federation/v1/send/{txnId}
// (transactions.yaml): PDUs go through pducheck and room one by one, each
// with its own result; EDUs update typing and receipts. A transaction is
// processed once per origin and ID; a retry gets the stored answer.
func (a *API) sendTransaction(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	origin := Origin(ctx)
	txnID := r.PathValue("txnId")
	var req sendTransactionReq
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.Origin != "" && req.Origin != origin {
		return mxerr.Forbidden.With("transaction origin %q does not match the signing server", req.Origin)
	}
	if len(req.PDUs) > maxTxnPDUs || len(req.EDUs) > maxTxnEDUs {
		return mxerr.TooLarge.WithStatus(http.StatusBadRequest).With("a transaction holds at most %d PDUs and %d EDUs", maxTxnPDUs, maxTxnEDUs)
	}
	defer a.txns.lock(origin + "\x00" + txnID)()
	var stored string
	err := a.db.QueryRowContext(ctx, `SELECT response FROM received_transactions WHERE origin = $1 AND txn_id = $2`, origin, txnID).Scan(&stored)
	if err == nil {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(stored))
		return nil
	} else if !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	resp := sendTransactionResp{PDUs: a.processPDUs(ctx, origin, req.PDUs)}
	for _, raw := range req.EDUs {
		a.processEDU(ctx, origin, raw)
	}
	body, err := json.Marshal(resp)
	if err != nil {
		return err
	}
	if _, err := a.db.ExecContext(ctx, `INSERT INTO received_transactions (origin, txn_id, response, received_ts) VALUES ($1, $2, $3, $4)
		ON CONFLICT (origin, txn_id) DO NOTHING`, origin, txnID, string(body), time.Now().UnixMilli()); err != nil {
		return err
	}
	// A sender retries a transaction for hours at most; answers older than
	// a day only take up space.
	if _, err := a.db.ExecContext(ctx, `DELETE FROM received_transactions WHERE origin = $1 AND received_ts < $2`,
		origin, time.Now().Add(-txnMemory).UnixMilli()); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
	return nil
}

// processPDUs checks and stores the PDUs of a transaction, oldest first
// within each room.
func (a *API) processPDUs(ctx context.Context, origin string, raws []json.RawMessage) map[id.EventID]pduResult {
	results := map[id.EventID]pduResult{}
	var accepted []*pdu.Event
	// Looked up once per room of the transaction.
	versions := map[id.RoomID]id.RoomVersion{}
	denied := map[id.RoomID]error{}
	for _, raw := range raws {
		roomID := id.RoomID(gjson.GetBytes(raw, "room_id").Str)
		fallbackID := id.EventID(gjson.GetBytes(raw, "event_id").Str)
		v, ok := versions[roomID]
		if !ok {
			var err error
			if v, err = a.rooms.Version(ctx, roomID); err != nil {
				// Without the room version there is no event ID to report
				// under, unless the PDU carries one (v1, v2).
				if fallbackID != "" {
					results[fallbackID] = pduResult{Error: "unknown room"}
				}
				continue
			}
			versions[roomID] = v
			denied[roomID] = a.checkACL(ctx, roomID, origin)
		}
		ev, err := a.checker.Check(ctx, v, raw)
		if err != nil {
			if lenient, perr := pdu.Parse(v, raw); perr == nil {
				results[lenient.ID] = pduResult{Error: err.Error()}
			}
			a.log.Info("refused PDU", "server", origin, "room_id", roomID, "err", err)
			continue
		}
		if err := denied[roomID]; err != nil {
			results[ev.ID] = pduResult{Error: err.Error()}
			continue
		}
		accepted = append(accepted, ev)
	}
	sort.SliceStable(accepted, func(i, j int) bool { return accepted[i].Depth < accepted[j].Depth })
	for _, ev := range accepted {
		out, err := a.rooms.Receive(ctx, origin, ev)
		switch {
		case err != nil:
			results[ev.ID] = pduResult{Error: err.Error()}
			a.log.Info("PDU not stored", "server", origin, "event_id", ev.ID, "err", err)
		case out == room.Rejected:
			results[ev.ID] = pduResult{Error: "event rejected by the auth rules"}
		default:
			results[ev.ID] = pduResult{}
		}
	}
	return results
}

// processEDU applies one EDU. EDUs are best-effort: bad ones are dropped.
func (a *API) processEDU(ctx context.Context, origin string, raw json.RawMessage) {
	var edu struct {
		Type    string          `json:"edu_type"`
		Content json.RawMessage `json:"content"`
	}
	if json.Unmarshal(raw, &edu) != nil {
		return
	}
	switch edu.Type {
	case "m.typing":
		var c struct {
			RoomID id.RoomID `json:"room_id"`
			UserID id.UserID `json:"user_id"`
			Typing bool      `json:"typing"`
		}
		if json.Unmarshal(edu.Content, &c) != nil || c.UserID.Homeserver() != origin {
			return
		}
		if ok, err := a.rooms.ServerInRoom(ctx, c.RoomID, origin); err != nil || !ok || a.checkACL(ctx, c.RoomID, origin) != nil {
			return
		}
		if c.Typing {
			a.typing.Start(ctx, c.RoomID, c.UserID, 30*time.Second)
		} else {
			a.typing.Stop(ctx, c.RoomID, c.UserID)
		}
	case "m.receipt":
		var c map[id.RoomID]map[string]map[id.UserID]struct {
			EventIDs []id.EventID `json:"event_ids"`
			Data     struct {
				ThreadID string `json:"thread_id"`
			} `json:"data"`
		}
		if json.Unmarshal(edu.Content, &c) != nil {
			return
		}
		for roomID, byType := range c {
			if ok, err := a.rooms.ServerInRoom(ctx, roomID, origin); err != nil || !ok || a.checkACL(ctx, roomID, origin) != nil {
				continue
			}
			for rtype, byUser := range byType {
				if rtype != "m.read" {
					continue // private receipts never cross servers
				}
				for user, rc := range byUser {
					if user.Homeserver() != origin || len(rc.EventIDs) == 0 {
						continue
					}
					if _, err := a.receipts.Put(ctx, roomID, rtype, user, rc.Data.ThreadID, rc.EventIDs[0]); err != nil {
						a.log.Info("storing remote receipt failed", "server", origin, "room_id", roomID, "err", err)
					}
				}
			}
		}
	case "m.presence":
		if a.presence != nil {
			a.presence.Receive(ctx, origin, edu.Content)
		}
	case "m.direct_to_device":
		if err := a.e2ee.ReceiveToDevice(ctx, origin, edu.Content); err != nil {
			a.log.Info("dropped to-device messages", "server", origin, "err", err)
		}
	case "m.device_list_update":
		if err := a.e2ee.ReceiveDeviceListUpdate(ctx, origin, edu.Content); err != nil {
			a.log.Info("dropped a device list update", "server", origin, "err", err)
		}
	case "m.signing_key_update":
		if err := a.e2ee.ReceiveSigningKeyUpdate(ctx, origin, edu.Content); err != nil {
			a.log.Info("dropped a signing key update", "server", origin, "err", err)
		}
	}
}
