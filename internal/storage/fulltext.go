package storage

import (
	"strings"
)

// FullText is a full-text index kept in the engine's own facility, created
// by a migration's dialect sections:
//
//   - SQLite: an FTS5 table whose rowid is the document's key and whose one
//     column, document, holds its text (contentless, so the text is not
//     stored twice; contentless_delete=1, so rows can be deleted), with
//     the porter stemmer over unicode61;
//   - PostgreSQL: a table of (key BIGINT PRIMARY KEY, vector TSVECTOR)
//     with a GIN index on vector, the text parsed with the english
//     configuration.
//
// Its methods write the statements and fragments that use the index, so a
// domain package writes each query once and storage keeps the dialects.
type FullText struct {
	table, key string
	dialect    Dialect
}

// FullText describes the full-text index table; key is its key column on
// PostgreSQL (SQLite's is the FTS5 rowid).
func (db *DB) FullText(table, key string) FullText {
	return FullText{table: table, key: key, dialect: db.dialect}
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

// Insert is the statement that indexes document $2 under key $1. A key
// already indexed keeps its document.
func (f FullText) Insert() string {
	if f.dialect == SQLite {
		// FTS5 has no ON CONFLICT; its rowid lookup is an index probe.
		return `INSERT INTO ` + f.table + ` (rowid, document) SELECT $1, $2
			WHERE NOT EXISTS (SELECT 1 FROM ` + f.table + ` WHERE rowid = $1)`
	}
	return `INSERT INTO ` + f.table + ` (` + f.key + `, vector) VALUES ($1, to_tsvector('english', $2)) ON CONFLICT DO NOTHING`
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
