package storage

import (
	"bufio"
	"bytes"
	"context"
	"embed"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate applies every pending migration. The migration files are written
// once in SQL that both engines accept, except for statements in dialect
// sections (see dialectFS).
func (db *DB) Migrate(ctx context.Context) error {
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	p, err := db.migrationProvider()
	if err != nil {
		return err
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("applying migrations: %w", err)
	}
	for _, r := range results {
		db.log.Info("applied migration", "version", r.Source.Version, "path", r.Source.Path)
	}
	return nil
}

// migrationProvider returns the goose provider of db's migration set, as
// db's engine sees it.
func (db *DB) migrationProvider() (*goose.Provider, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("loading migrations: %w", err)
	}
	dialect := goose.DialectSQLite3
	if db.dialect == Postgres {
		dialect = goose.DialectPostgres
	}
	p, err := goose.NewProvider(dialect, db.write, dialectFS{FS: sub, dialect: db.dialect})
	if err != nil {
		return nil, fmt.Errorf("preparing migrations: %w", err)
	}
	return p, nil
}

// dialectFS serves the migration files with the dialect sections of other
// engines removed. A section starts with a line
//
//	-- +myelin dialect sqlite
//
// (or postgres) and ends at the next such line or at
//
//	-- +myelin dialect end
//
// Statements outside sections serve both engines. Sections are for what
// has no portable form, such as a full-text index (FTS5 on SQLite,
// tsvector on PostgreSQL): the migration set stays one numbered sequence
// and each file still says everything it changes.
type dialectFS struct {
	fs.FS
	dialect Dialect
}

// sectionMarker starts every line that opens or closes a dialect section.
const sectionMarker = "-- +myelin dialect "

// Open returns the file with the other engines' sections removed.
func (d dialectFS) Open(name string) (fs.File, error) {
	f, err := d.FS.Open(name)
	if err != nil || !strings.HasSuffix(name, ".sql") {
		return f, err
	}
	defer f.Close()
	raw, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("reading migration %s: %w", name, err)
	}
	text, err := forDialect(raw, d.dialect)
	if err != nil {
		return nil, fmt.Errorf("migration %s: %w", name, err)
	}
	return &memFile{name: name, Reader: bytes.NewReader(text), size: int64(len(text))}, nil
}

// ReadDir lists the underlying directory.
func (d dialectFS) ReadDir(name string) ([]fs.DirEntry, error) { return fs.ReadDir(d.FS, name) }

// forDialect keeps the lines of raw that apply to dialect.
func forDialect(raw []byte, dialect Dialect) ([]byte, error) {
	var out bytes.Buffer
	keep := true
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), sectionMarker); ok {
			switch strings.TrimSpace(rest) {
			case "sqlite":
				keep = dialect == SQLite
			case "postgres":
				keep = dialect == Postgres
			case "end":
				keep = true
			default:
				return nil, fmt.Errorf("unknown dialect section %q", rest)
			}
			// An empty line keeps line numbers in goose's errors.
			out.WriteByte('\n')
			continue
		}
		if keep {
			out.WriteString(line)
		}
		out.WriteByte('\n')
	}
	return out.Bytes(), sc.Err()
}

// memFile is a migration file after forDialect.
type memFile struct {
	name string
	*bytes.Reader
	size int64
}

func (f *memFile) Stat() (fs.FileInfo, error) { return memInfo{f}, nil }
func (f *memFile) Close() error               { return nil }

type memInfo struct{ f *memFile }

func (i memInfo) Name() string       { return i.f.name[strings.LastIndexByte(i.f.name, '/')+1:] }
func (i memInfo) Size() int64        { return i.f.size }
func (i memInfo) Mode() fs.FileMode  { return 0o444 }
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return false }
func (i memInfo) Sys() any           { return nil }
