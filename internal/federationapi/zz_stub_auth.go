package federationapi

import (
	"context"
	"encoding/json"
)

type originKey struct{}

// Origin stub until the fedtransport branch lands.
func Origin(ctx context.Context) string { s, _ := ctx.Value(originKey{}).(string); return s }

// CheckACL stub.
func CheckACL(acl json.RawMessage, server string) bool { return true }
