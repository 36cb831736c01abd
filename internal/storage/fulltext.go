package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// FullText is a full-text index kept in the engine's own facility, created
// by a migration's dialect sections:
//
//   - SQLite: an FTS5 table whose rowid is the document's key, whose first
//     column, document, holds its text, and whose other columns are
//     UNINDEXED attributes of the document; contentless (the text is not
//     stored twice) with contentless_unindexed=1 (the attributes are) and
//     contentless_delete=1 (rows can be deleted), with the porter stemmer
//     over unicode61;
//   - PostgreSQL: a table of (key BIGINT PRIMARY KEY, the attributes,
//     vector TSVECTOR) with a GIN index on vector, the text parsed with
//     the english configuration.
//
// The attributes let a query filter and order the matches without a join
// per match.
//
// Its methods write the statements and fragments that use the index, so a
// domain package writes each query once and storage keeps the dialects.
type FullText struct {
	table, key string
	attrs      []string
	dialect    Dialect
}

// FullText describes the full-text index table; key is its key column on
// PostgreSQL (SQLite's is the FTS5 rowid), attrs its attribute columns.
func (db *DB) FullText(table, key string, attrs ...string) FullText {
	return FullText{table: table, key: key, attrs: attrs, dialect: db.dialect}
}

// Key is the key column, qualified by alias when alias is not empty.
func (f FullText) Key(alias string) string {
	col := f.key
	if f.dialect == SQLite {
		col = "rowid"
	}
	if alias == "" {
		return col
	}
	return alias + "." + col
}

// Insert is the statement that indexes document $2 under key $1, with the
// attributes in $3, $4, ... in the order FullText named them. A key
// already indexed keeps its document.
func (f FullText) Insert() string {
	cols, vals := "", ""
	for i, a := range f.attrs {
		cols += ", " + a
		vals += ", $" + strconv.Itoa(i+3)
	}
	if f.dialect == SQLite {
		// FTS5 has no ON CONFLICT; its rowid lookup is an index probe.
		return `INSERT INTO ` + f.table + ` (rowid, document` + cols + `) SELECT $1, $2` + vals + `
			WHERE NOT EXISTS (SELECT 1 FROM ` + f.table + ` WHERE rowid = $1)`
	}
	return `INSERT INTO ` + f.table + ` (` + f.key + `, vector` + cols + `) VALUES ($1, to_tsvector('english', $2)` + vals + `) ON CONFLICT DO NOTHING`
}

// Match is the condition that the index table, under alias, matches the
// query in argument arg (a rendered TextQuery, see Query).
func (f FullText) Match(alias, arg string) string {
	if f.dialect == SQLite {
		// An FTS5 table has a hidden column of its own name, which MATCH
		// and the auxiliary functions take (the alias itself is no column).
		return alias + "." + f.table + " MATCH " + arg
	}
	return alias + ".vector @@ websearch_to_tsquery('english', " + arg + ")"
}

// Rank is the relevance of the matched row, higher for closer matches:
// BM25 on SQLite, ts_rank_cd (cover density) on PostgreSQL. It is only
// valid beside Match with the same arguments.
func (f FullText) Rank(alias, arg string) string {
	if f.dialect == SQLite {
		return "-bm25(" + alias + "." + f.table + ")"
	}
	return "ts_rank_cd(" + alias + ".vector, websearch_to_tsquery('english', " + arg + "))"
}

// TextQuery is a full-text query in a form both engines can express: any
// of the groups matches (OR), and a group matches a document holding all
// of its phrases (AND) and none of its excluded ones (NOT). A phrase is a
// sequence of words; a single word is a phrase of one.
type TextQuery []TextGroup

// TextGroup is one alternative of a TextQuery.
type TextGroup struct {
	All, None [][]string
}

// Query renders q in the syntax Match takes: FTS5's query language on
// SQLite, websearch_to_tsquery's on PostgreSQL. Words must be made of
// letters, digits, '_' and '-' (which both parsers treat as word
// separators or joiners, never as operators inside quotes). Groups
// without a phrase to match are left out; "" means q matches nothing.
func (f FullText) Query(q TextQuery) string {
	var groups []string
	for _, g := range q {
		if len(g.All) == 0 {
			continue
		}
		var parts []string
		for _, p := range g.All {
			parts = append(parts, `"`+strings.Join(p, " ")+`"`)
		}
		for _, p := range g.None {
			if f.dialect == SQLite {
				parts = append(parts, `NOT "`+strings.Join(p, " ")+`"`)
			} else {
				parts = append(parts, `-"`+strings.Join(p, " ")+`"`)
			}
		}
		if f.dialect == SQLite {
			// FTS5's NOT is binary: "a AND b NOT c" reads (a AND b) NOT c.
			s := strings.Join(parts[:len(g.All)], " AND ")
			if len(g.None) > 0 {
				s += " " + strings.Join(parts[len(g.All):], " ")
			}
			groups = append(groups, "("+s+")")
		} else {
			groups = append(groups, strings.Join(parts, " "))
		}
	}
	if f.dialect == SQLite {
		return strings.Join(groups, " OR ")
	}
	// websearch_to_tsquery binds AND tighter than or, as the groups need.
	return strings.Join(groups, " or ")
}

// QueryPlanned runs a read query that PostgreSQL plans with its arguments'
// values each time, rather than with a cached generic plan: the best plan
// of a full-text query depends on how common its words are (walk the
// newest rows and test each for a common word, read the index's matches
// for a rare one), which a plan made without the values cannot know. On
// SQLite it is QueryContext.
func (db *DB) QueryPlanned(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if db.dialect == Postgres {
		// The unnamed statement of the extended protocol is planned at
		// bind time, with the values.
		return db.read.QueryContext(ctx, q, append([]any{pgx.QueryExecModeExec}, args...)...)
	}
	return db.QueryContext(ctx, q, args...)
}

// CountEstimate returns how many rows the query q (a SELECT) returns:
// exact on SQLite, where counting a full-text match reads only the index;
// on PostgreSQL the planner's estimate (from the column statistics, which
// know how common each word is) when that is at least exactBelow, and the
// exact count below it. Counting a common word exactly there would read
// every matching row from the heap.
func (db *DB) CountEstimate(ctx context.Context, q string, exactBelow int64, args ...any) (int64, error) {
	if db.dialect == Postgres {
		rows, err := db.QueryPlanned(ctx, "EXPLAIN (FORMAT JSON) "+q, args...)
		if err != nil {
			return 0, err
		}
		var plan []byte
		for rows.Next() {
			err = rows.Scan(&plan)
		}
		if err = errors.Join(err, rows.Close(), rows.Err()); err != nil {
			return 0, err
		}
		var explained []struct {
			Plan struct {
				Rows float64 `json:"Plan Rows"`
			} `json:"Plan"`
		}
		if err := json.Unmarshal(plan, &explained); err != nil || len(explained) == 0 {
			return 0, fmt.Errorf("reading the plan of a count: %w", err)
		}
		if n := int64(explained[0].Plan.Rows); n >= exactBelow {
			return n, nil
		}
	}
	var n int64
	rows, err := db.QueryPlanned(ctx, "SELECT COUNT(*) FROM ("+q+") counted", args...)
	if err != nil {
		return 0, err
	}
	for rows.Next() {
		err = rows.Scan(&n)
	}
	return n, errors.Join(err, rows.Close(), rows.Err())
}
