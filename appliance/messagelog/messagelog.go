// Package messagelog archives every message that passes through the
// security server (clauses 2.2.2, 6.3): encrypted at rest, hash-chained,
// committed in groups so that a caller's Append returns only once its
// records are durable.
//
// CONTRACT STUB: the signatures below are agreed between packages; the
// owner of this package replaces the bodies and this paragraph.
package messagelog

import (
	"context"
	"time"
)

// Kind says whether a record is a request or a response.
type Kind string

// Kinds of records.
const (
	KindRequest  Kind = "request"
	KindResponse Kind = "response"
)

// Record is one message as exchanged.
type Record struct {
	Kind      Kind
	MessageID string
	Client    string // ident.Client.String()
	Service   string // ident.Service.String()
	Time      time.Time
	// Signed is the exact multipart/signed body exchanged, and
	// ContentType its header value.
	Signed      []byte
	ContentType string
}

// Options configure a Log.
type Options struct {
	// Path is the bbolt file.
	Path string
	// Key is the 32-byte encryption key (keys.LogEncryption).
	Key []byte
	// MaxBatch and MaxDelay bound a group commit.
	MaxBatch int
	MaxDelay time.Duration
}

// Log is an open message log. Safe for concurrent use.
type Log struct{}

// Open opens or creates the log.
func Open(opts Options) (*Log, error) { panic("contract stub") }

// Append stores recs and returns once they are durable, or with the error
// that kept them from being stored; the caller must then not release the
// response (it answers CodeLogFailure).
func (l *Log) Append(ctx context.Context, recs ...Record) error { panic("contract stub") }

// Close flushes and closes the log.
func (l *Log) Close() error { panic("contract stub") }
