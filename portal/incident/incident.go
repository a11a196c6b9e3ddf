// Package incident is the register of information-security incidents
// (clause 6.8): security servers report the security events they see (bad
// signatures, replays, access denials, revoked certificates, blocked
// participants calling), the portal keeps them, and the operator lists and
// filters them.
//
// A report names identifiers and what happened; it never carries a
// message body. Reports are signed with the reporting server's
// authentication key, so the register knows which server reported.
package incident

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.etcd.io/bbolt"

	"github.com/qapi-az/qapi/portal/wire"
)

// Kind is what kind of security event happened.
type Kind string

// Kinds of events.
const (
	BadSignature  Kind = "bad-signature"       // a signature did not verify (2.2.1)
	Replay        Kind = "replay"              // a message id was seen again (6.2.4)
	AccessDenied  Kind = "access-denied"       // no access right (2.2.3)
	RevokedCert   Kind = "revoked-certificate" // a revoked certificate was used
	BlockedClient Kind = "blocked-client"      // a blocked participant called (3.7)
	UnknownPeer   Kind = "unknown-peer"        // TLS from an unregistered server
	OtherIncident Kind = "other"
)

var kinds = []Kind{BadSignature, Replay, AccessDenied, RevokedCert, BlockedClient,
	UnknownPeer, OtherIncident}

// MaxDetail bounds Report.Detail in bytes.
const MaxDetail = 1024

// Report is one security event as a security server saw it.
type Report struct {
	Kind Kind      `json:"kind"`
	Time time.Time `json:"time"`
	// Client and Service are identifiers in string form; MessageID the
	// exchange's id. Any may be empty.
	Client    string `json:"client,omitempty"`
	Service   string `json:"service,omitempty"`
	MessageID string `json:"messageId,omitempty"`
	// Detail says what happened, in at most MaxDetail bytes; never a
	// message body or a secret.
	Detail string `json:"detail,omitempty"`
}

// Validate checks the kind, the time and the detail's size.
func (r *Report) Validate() error {
	known := false
	for _, k := range kinds {
		known = known || r.Kind == k
	}
	if !known {
		return fmt.Errorf("incident kind %q is not one of %v", r.Kind, kinds)
	}
	if r.Time.IsZero() {
		return errors.New("incident report needs the time of the event")
	}
	if len(r.Detail) > MaxDetail || !utf8.ValidString(r.Detail) {
		return fmt.Errorf("incident detail must be UTF-8 of at most %d bytes", MaxDetail)
	}
	return nil
}

// Client sends reports to the portal, signed with a security server's
// authentication key.
type Client struct {
	// URL is the global configuration's IncidentURL.
	URL  string
	Key  crypto.Signer
	Cert []byte // DER authentication certificate
	// HTTP sends; a client with a 10-second timeout when nil.
	HTTP *http.Client
}

// Report sends r and returns once the portal stored it.
func (c *Client) Report(ctx context.Context, r Report) error {
	if err := r.Validate(); err != nil {
		return err
	}
	s, err := wire.Sign(r, c.Key, c.Cert)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(s)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("report incident: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("report incident to %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("report incident to %s: %s: %s", c.URL, resp.Status,
			bytes.TrimSpace(msg))
	}
	return nil
}

// Queue sends reports in the background so that the exchange never waits
// for the portal: Add returns at once and drops the report (counting it)
// when the queue is full.
type Queue struct {
	c       *Client
	ch      chan Report
	dropped atomic.Int64
	failed  atomic.Int64
}

// NewQueue returns a queue of up to size reports for c; call Run.
func NewQueue(c *Client, size int) *Queue {
	return &Queue{c: c, ch: make(chan Report, size)}
}

// Add queues r, or drops it when the queue is full.
func (q *Queue) Add(r Report) {
	select {
	case q.ch <- r:
	default:
		q.dropped.Add(1)
	}
}

// Dropped is how many reports Add dropped; Failed how many the portal did
// not take.
func (q *Queue) Dropped() int64 { return q.dropped.Load() }

// Failed is how many reports could not be delivered.
func (q *Queue) Failed() int64 { return q.failed.Load() }

// Run sends queued reports until ctx ends, and returns ctx's error.
func (q *Queue) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case r := <-q.ch:
			if err := q.c.Report(ctx, r); err != nil {
				q.failed.Add(1)
			}
		}
	}
}

var bucketIncidents = []byte("incidents")

// Record is a stored report with who sent it and when it arrived.
type Record struct {
	ID       uint64    `json:"id"`
	Received time.Time `json:"received"`
	// Server is the reporting security server, OWNER/CODE, from its
	// authentication certificate.
	Server string `json:"server"`
	Report
}

// Register stores reports in a bbolt database.
type Register struct {
	db *bbolt.DB
	// Roots are the certification centre(s) whose authentication
	// certificates may sign reports.
	roots *x509.CertPool
	// registered reports whether the DER authentication certificate
	// belongs to a registered security server.
	registered func(der []byte) bool
	now        func() time.Time
}

// Open creates the register's bucket in db. registered decides which
// authentication certificates may report.
func Open(db *bbolt.DB, roots *x509.CertPool, registered func(der []byte) bool,
	now func() time.Time) (*Register, error) {
	if now == nil {
		now = time.Now
	}
	err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketIncidents)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open incident register: %w", err)
	}
	return &Register{db: db, roots: roots, registered: registered, now: now}, nil
}

// Add stores a report from server.
func (g *Register) Add(server string, r Report) (Record, error) {
	if err := r.Validate(); err != nil {
		return Record{}, err
	}
	rec := Record{Received: g.now().UTC(), Server: server, Report: r}
	err := g.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketIncidents)
		id, err := b.NextSequence()
		if err != nil {
			return err
		}
		rec.ID = id
		j, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		return b.Put(fmt.Appendf(nil, "%016x", id), j)
	})
	return rec, err
}

// Filter selects records; zero fields match everything.
type Filter struct {
	Kind   Kind      `json:"kind,omitempty"`
	Server string    `json:"server,omitempty"`
	Client string    `json:"client,omitempty"`
	Since  time.Time `json:"since,omitzero"`
	Until  time.Time `json:"until,omitzero"`
}

func (f Filter) match(r Record) bool {
	return (f.Kind == "" || r.Kind == f.Kind) &&
		(f.Server == "" || r.Server == f.Server) &&
		(f.Client == "" || r.Client == f.Client) &&
		(f.Since.IsZero() || !r.Time.Before(f.Since)) &&
		(f.Until.IsZero() || r.Time.Before(f.Until))
}

// List returns the records f selects, oldest first.
func (g *Register) List(f Filter) ([]Record, error) {
	var out []Record
	err := g.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketIncidents).ForEach(func(_, v []byte) error {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			if f.match(r) {
				out = append(out, r)
			}
			return nil
		})
	})
	return out, err
}

// ServeHTTP takes a POST of a wire.Signed report from a registered
// security server.
func (g *Register) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST a signed incident report", http.StatusMethodNotAllowed)
		return
	}
	var s wire.Signed
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&s); err != nil {
		http.Error(w, "incident report is not a signed JSON document: "+err.Error(),
			http.StatusBadRequest)
		return
	}
	var rep Report
	cert, err := s.Open(&rep, g.roots, g.now())
	if err != nil {
		http.Error(w, "incident report refused: "+err.Error(), http.StatusForbidden)
		return
	}
	if !g.registered(cert.Raw) {
		http.Error(w, "incident report refused: the signing certificate is not the "+
			"authentication certificate of a registered security server",
			http.StatusForbidden)
		return
	}
	if _, err := g.Add(cert.Subject.SerialNumber, rep); err != nil {
		http.Error(w, "incident report refused: "+err.Error(), http.StatusBadRequest)
		return
	}
	w.Write([]byte("{}\n"))
}
