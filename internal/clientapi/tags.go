package clientapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/myelin-chat/myelin/internal/httpx"
	"github.com/myelin-chat/myelin/internal/mxerr"
)

// tagType is the room account data type that holds a user's tags on a
// room (spec: Room Tagging), so /sync shows them in the room's
// account_data as {"type":"m.tag","content":{"tags":{...}}}.
const tagType = "m.tag"

// maxTagBytes is the longest tag name the spec allows.
const maxTagBytes = 255

// tagContent is the content of m.tag. Each tag's object is kept as sent:
// order plus any extra data a client stores with it.
type tagContent struct {
	Tags map[string]json.RawMessage `json:"tags"`
}

// decodeTags reads stored m.tag content; content written by hand through
// the account data API may not have the right shape, and then counts as
// no tags rather than failing the tag endpoints forever.
func decodeTags(raw json.RawMessage) tagContent {
	var c tagContent
	if len(raw) > 0 {
		_ = json.Unmarshal(raw, &c)
	}
	if c.Tags == nil {
		c.Tags = map[string]json.RawMessage{}
	}
	return c
}

// getRoomTags serves GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags
// (tags.yaml).
func (a *API) getRoomTags(w http.ResponseWriter, r *http.Request) error {
	if err := ownUser(r); err != nil {
		return err
	}
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	raw, err := a.accountData.Get(r.Context(), session(r).UserID, roomID, tagType)
	if err != nil && !errors.Is(err, mxerr.NotFound) {
		return err
	}
	return httpx.OK(w, decodeTags(raw))
}

// setRoomTag serves PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}
// (tags.yaml). The body is the tag's object; order, when present, must be
// a number in [0, 1].
func (a *API) setRoomTag(w http.ResponseWriter, r *http.Request) error {
	if err := ownUser(r); err != nil {
		return err
	}
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	tag, err := pathTag(r)
	if err != nil {
		return err
	}
	var body map[string]json.RawMessage
	if err := httpx.DecodeJSON(r, &body); err != nil {
		return err
	}
	if body == nil {
		return mxerr.BadJSON.With("the tag must be a JSON object")
	}
	if order, ok := body["order"]; ok {
		var f float64
		if err := json.Unmarshal(order, &f); err != nil || string(order) == "null" {
			return mxerr.BadJSON.With("order must be a number")
		}
		if f < 0 || f > 1 {
			return mxerr.BadJSON.With("order must be between 0 and 1")
		}
		// Stored in its shortest form: 2.5e-01, as some clients write
		// it, reads back as 0.25.
		if body["order"], err = json.Marshal(f); err != nil {
			return err
		}
	}
	value, err := json.Marshal(body)
	if err != nil {
		return err
	}
	_, err = a.accountData.Update(r.Context(), session(r).UserID, roomID, tagType, func(old json.RawMessage) (json.RawMessage, error) {
		c := decodeTags(old)
		c.Tags[tag] = value
		return json.Marshal(c)
	})
	if err != nil {
		return err
	}
	return httpx.OK(w, httpx.Empty)
}

// deleteRoomTag serves DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}
// (tags.yaml). Removing a tag the room does not have succeeds, as in
// Synapse.
func (a *API) deleteRoomTag(w http.ResponseWriter, r *http.Request) error {
	if err := ownUser(r); err != nil {
		return err
	}
	roomID, err := pathRoomID(r)
	if err != nil {
		return err
	}
	tag, err := pathTag(r)
	if err != nil {
		return err
	}
	_, err = a.accountData.Update(r.Context(), session(r).UserID, roomID, tagType, func(old json.RawMessage) (json.RawMessage, error) {
		c := decodeTags(old)
		delete(c.Tags, tag)
		return json.Marshal(c)
	})
	if err != nil {
		return err
	}
	return httpx.OK(w, httpx.Empty)
}

// pathTag reads the {tag} path parameter.
func pathTag(r *http.Request) (string, error) {
	tag := r.PathValue("tag")
	if tag == "" || len(tag) > maxTagBytes {
		return "", mxerr.InvalidParam.With("a tag name is 1 to %d bytes", maxTagBytes)
	}
	return tag, nil
}
