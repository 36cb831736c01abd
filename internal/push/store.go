package push

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/accountdata"
	"github.com/myelin-chat/myelin/internal/mxerr"
	"github.com/myelin-chat/myelin/internal/storage"
)

// AccountDataType is the account data type that carries a user's rules to
// their clients through /sync.
const AccountDataType = "m.push_rules"

// maxCached bounds the compiled-ruleset cache; past it the cache starts
// over (a compile costs microseconds, a stale entry never happens).
const maxCached = 100_000

// Service stores users' push rules and keeps their compiled form.
type Service struct {
	db          *storage.DB
	accountData *accountdata.Store

	mu    sync.Mutex
	cache map[id.UserID]*Compiled
	// gen counts changes per user, so that a compile that read the rules
	// before a change committed does not enter the cache after it.
	gen map[id.UserID]uint64
}

// New returns the push rule service.
func New(db *storage.DB, ad *accountdata.Store) *Service {
	return &Service{db: db, accountData: ad, cache: map[id.UserID]*Compiled{}, gen: map[id.UserID]uint64{}}
}

// DefaultAccountData is the m.push_rules content of a user who never
// changed a rule: the server defaults (accountdata.WithDefault).
func DefaultAccountData(user id.UserID) json.RawMessage {
	raw, _ := json.Marshal(map[string]Ruleset{"global": (&userRules{}).render(user)})
	return raw
}

// Rules returns the user's full ruleset.
func (s *Service) Rules(ctx context.Context, user id.UserID) (Ruleset, error) {
	u, err := s.load(ctx, s.db.QueryRowContext, user)
	if err != nil {
		return Ruleset{}, err
	}
	return u.render(user), nil
}

// Compiled returns the user's ruleset compiled for evaluation, from the
// cache when it is there.
func (s *Service) Compiled(ctx context.Context, user id.UserID) (*Compiled, error) {
	s.mu.Lock()
	c, ok := s.cache[user]
	g := s.gen[user]
	s.mu.Unlock()
	if ok {
		return c, nil
	}
	rs, err := s.Rules(ctx, user)
	if err != nil {
		return nil, err
	}
	c = Compile(rs, user)
	s.mu.Lock()
	if s.gen[user] == g {
		if len(s.cache) >= maxCached {
			clear(s.cache)
		}
		s.cache[user] = c
	}
	s.mu.Unlock()
	return c, nil
}

type queryRow func(ctx context.Context, q string, args ...any) *sql.Row

// load reads the user's stored document (empty when there is none).
func (s *Service) load(ctx context.Context, q queryRow, user id.UserID) (*userRules, error) {
	var doc string
	err := q(ctx, `SELECT rules FROM push_rules WHERE user_id = $1`, user.String()).Scan(&doc)
	u := &userRules{}
	if errors.Is(err, sql.ErrNoRows) {
		return u, nil
	}
	if err == nil {
		err = json.Unmarshal([]byte(doc), u)
	}
	if err != nil {
		return nil, fmt.Errorf("loading push rules of %s: %w", user, err)
	}
	return u, nil
}

// change applies fn to the user's document and stores the result together
// with the rendered m.push_rules account data, in one transaction. Write
// transactions are serialised, so the read-modify-write cannot interleave
// with another change.
func (s *Service) change(ctx context.Context, user id.UserID, fn func(u *userRules) error) error {
	return s.db.WriteTx(ctx, func(tx *storage.Tx) error {
		u, err := s.load(ctx, tx.QueryRowContext, user)
		if err != nil {
			return err
		}
		if err := fn(u); err != nil {
			return err
		}
		doc, err := json.Marshal(u)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO push_rules (user_id, rules) VALUES ($1, $2)
			ON CONFLICT (user_id) DO UPDATE SET rules = excluded.rules`, user.String(), string(doc)); err != nil {
			return fmt.Errorf("storing push rules of %s: %w", user, err)
		}
		rs := u.render(user)
		content, err := json.Marshal(map[string]Ruleset{"global": rs})
		if err != nil {
			return err
		}
		if _, err := s.accountData.PutTx(ctx, tx, user, "", AccountDataType, content); err != nil {
			return err
		}
		compiled := Compile(rs, user)
		tx.AfterCommit(func() {
			s.mu.Lock()
			s.gen[user]++
			s.cache[user] = compiled
			s.mu.Unlock()
		})
		return nil
	})
}

// RuleReq is the body of PUT /pushrules/global/{kind}/{ruleId}.
type RuleReq struct {
	Actions    []json.RawMessage `json:"actions"`
	Conditions []json.RawMessage `json:"conditions"`
	Pattern    *string           `json:"pattern"`
}

// errNotFound is the spec's answer for a rule that does not exist.
var errNotFound = mxerr.NotFound.With("The push rule was not found.")

// SetRule creates or replaces the user-defined rule kind/ruleID (spec
// setPushRule). A new or replaced rule becomes the most important
// user-defined rule of its kind, as in Synapse, unless before (which wins
// over after) or after names another user-defined rule of the kind to
// place it next to.
func (s *Service) SetRule(ctx context.Context, user id.UserID, kind Kind, ruleID string, req RuleReq, before, after string) error {
	if err := ValidateRuleID(ruleID); err != nil {
		return err
	}
	if isDefault(ruleID) {
		return mxerr.InvalidParam.With("rule IDs starting with '.' are reserved for server-default rules")
	}
	actions, err := cleanActions(req.Actions)
	if err != nil {
		return err
	}
	rule := Rule{RuleID: ruleID, Enabled: true, Actions: actions}
	switch kind {
	case Override, Underride:
		if req.Conditions == nil {
			req.Conditions = []json.RawMessage{}
		}
		if err := checkConditions(req.Conditions); err != nil {
			return err
		}
		rule.Conditions = req.Conditions
	case Content:
		if req.Pattern == nil {
			return mxerr.InvalidParam.With("content rules need a string pattern")
		}
		rule.Pattern = req.Pattern
	}
	return s.change(ctx, user, func(u *userRules) error {
		if u.Rules == nil {
			u.Rules = map[Kind][]Rule{}
		}
		// An update keeps the rule's enabled state; a new rule is enabled
		// (spec: "When creating push rules, they MUST be enabled").
		if old, ok := u.render(user).Find(kind, ruleID); ok {
			rule.Enabled = old.Enabled
		}
		rules := slices.DeleteFunc(slices.Clone(u.Rules[kind]), func(r Rule) bool { return r.RuleID == ruleID })
		at := 0
		if rel, offset := before, 0; rel != "" || after != "" {
			if rel == "" {
				rel, offset = after, 1
			}
			i := slices.IndexFunc(rules, func(r Rule) bool { return r.RuleID == rel })
			if i < 0 {
				return mxerr.Unknown.WithStatus(400).With("before/after rule not found: %s", rel)
			}
			at = i + offset
		}
		u.Rules[kind] = slices.Insert(rules, at, rule)
		return nil
	})
}

// DeleteRule removes the user-defined rule kind/ruleID (spec
// deletePushRule). Server-default rules cannot be deleted, only disabled.
func (s *Service) DeleteRule(ctx context.Context, user id.UserID, kind Kind, ruleID string) error {
	if isDefault(ruleID) {
		if _, ok := defaults(user).Find(kind, ruleID); ok {
			return mxerr.InvalidParam.With("server-default rules cannot be deleted")
		}
		return errNotFound
	}
	return s.change(ctx, user, func(u *userRules) error {
		n := len(u.Rules[kind])
		u.Rules[kind] = slices.DeleteFunc(u.Rules[kind], func(r Rule) bool { return r.RuleID == ruleID })
		if len(u.Rules[kind]) == n {
			return errNotFound
		}
		if len(u.Rules[kind]) == 0 {
			delete(u.Rules, kind)
		}
		return nil
	})
}

// SetEnabled enables or disables the rule kind/ruleID, user-defined or
// server-default (spec setPushRuleEnabled).
func (s *Service) SetEnabled(ctx context.Context, user id.UserID, kind Kind, ruleID string, enabled bool) error {
	return s.setAttr(ctx, user, kind, ruleID, func(r *Rule, d *defaultChange) {
		if r != nil {
			r.Enabled = enabled
		} else {
			d.Enabled = &enabled
		}
	})
}

// SetActions replaces the actions of the rule kind/ruleID, user-defined or
// server-default (spec setPushRuleActions).
func (s *Service) SetActions(ctx context.Context, user id.UserID, kind Kind, ruleID string, actions []json.RawMessage) error {
	actions, err := cleanActions(actions)
	if err != nil {
		return err
	}
	return s.setAttr(ctx, user, kind, ruleID, func(r *Rule, d *defaultChange) {
		if r != nil {
			r.Actions = actions
		} else {
			d.Actions = actions
		}
	})
}

// setAttr applies set to the user-defined rule kind/ruleID, or to the
// user's change record of the server-default rule of that ID.
func (s *Service) setAttr(ctx context.Context, user id.UserID, kind Kind, ruleID string, set func(*Rule, *defaultChange)) error {
	if isDefault(ruleID) {
		if _, ok := defaults(user).Find(kind, ruleID); !ok {
			return errNotFound
		}
	}
	return s.change(ctx, user, func(u *userRules) error {
		if isDefault(ruleID) {
			if u.Defaults == nil {
				u.Defaults = map[string]defaultChange{}
			}
			key := string(kind) + "/" + ruleID
			d := u.Defaults[key]
			set(nil, &d)
			u.Defaults[key] = d
			return nil
		}
		for i := range u.Rules[kind] {
			if u.Rules[kind][i].RuleID == ruleID {
				set(&u.Rules[kind][i], nil)
				return nil
			}
		}
		return errNotFound
	})
}
