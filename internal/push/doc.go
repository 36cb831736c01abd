// Package push owns push rules (the spec's "Push Notifications" module):
// the server-default ruleset, each user's own rules and changes to the
// defaults, and the evaluator that decides what a rule set says about an
// event.
//
// A user's rules are stored as one document in the push_rules table; every
// change rewrites it and, in the same transaction, the user's m.push_rules
// account data (the rendered {"global": …} ruleset), so the change reaches
// the user's other devices through /sync with no work in clientsync.
// Compiled rule sets are cached per user and replaced after each change
// commits, so evaluating one event for every member of a large room does
// no parsing or compiling.
//
// push imports storage, accountdata and mxerr; it must not import room,
// clientsync or clientapi. clientapi calls it for the pushrules.yaml
// endpoints.
package push
