package search

import (
	"strings"
	"unicode"

	"github.com/myelin-chat/myelin/internal/storage"
)

// stopWords are left out of queries, as Synapse does on SQLite (where the
// tokenizer keeps them): a search for "the cat" looks for "cat".
// PostgreSQL's english configuration drops these and more by itself.
var stopWords = map[string]bool{"the": true, "a": true, "you": true, "me": true, "and": true, "but": true}

// maxTerms bounds the words of one query: each costs an index lookup.
const maxTerms = 32

// parsed is a search term read as a query.
type parsed struct {
	query storage.TextQuery
	// terms are the words to match, lower-cased, for highlights.
	terms []string
}

// parseTerm reads a search term with the syntax Synapse accepts (and
// PostgreSQL's websearch_to_tsquery): words are ANDed, "double quotes"
// make a phrase, a word or phrase after '-' is excluded, and "or"
// between two alternatives matches either. A word is a run of letters,
// digits, '_' and '-'; everything else separates words.
func parseTerm(term string) parsed {
	var p parsed
	cur := storage.TextGroup{}
	negate, n := false, 0
	add := func(phrase []string) {
		if len(phrase) == 0 || n >= maxTerms {
			negate = false
			return
		}
		n += len(phrase)
		if negate {
			cur.None = append(cur.None, phrase)
		} else {
			cur.All = append(cur.All, phrase)
			for _, w := range phrase {
				p.terms = appendNew(p.terms, strings.ToLower(w))
			}
		}
		negate = false
	}
	for i, part := range strings.Split(term, `"`) {
		if i%2 == 1 {
			// Inside quotes: one phrase, without operators.
			var phrase []string
			for _, w := range words(part) {
				if w = strings.Trim(w, "-"); w != "" && !stopWords[strings.ToLower(w)] {
					phrase = append(phrase, w)
				}
			}
			add(phrase)
			continue
		}
		for _, w := range words(part) {
			switch {
			case strings.EqualFold(w, "or"):
				if len(cur.All) > 0 {
					p.query = append(p.query, cur)
					cur = storage.TextGroup{}
				}
				negate = false
			case strings.HasPrefix(w, "-"):
				if w = strings.Trim(w, "-"); w != "" {
					negate = true
					add([]string{w})
				}
			default:
				if w = strings.Trim(w, "-"); w != "" && !stopWords[strings.ToLower(w)] {
					add([]string{w})
				}
			}
		}
		// A '-' just before a quote excludes the phrase.
		negate = strings.HasSuffix(part, "-")
	}
	if len(cur.All) > 0 {
		p.query = append(p.query, cur)
	}
	return p
}

// words splits s into runs of letters, digits, '_' and '-'.
func words(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return !(unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) || r == '_' || r == '-')
	})
}

func appendNew(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}
