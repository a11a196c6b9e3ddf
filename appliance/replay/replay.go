// Package replay refuses replayed requests (clause 6.2.4): a message id
// that a client already used, and a request whose signing time is outside
// a window around the server's clock.
//
// The two checks bound each other: an id needs to be remembered only as long
// as a request carrying it could still pass the signing-time check, so the
// set of seen ids is pruned past the window and stays small. The set lives in
// memory for the fast path and in a Journal, the message log, so that it
// survives a restart. The store does not write the journal itself: Claim
// returns a mark that the caller commits with the request's own log record,
// so that one disk sync makes both durable.
package replay

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/messagelog"
	bolt "go.etcd.io/bbolt"
)

// DefaultWindow is how far a signing time may be from the server's clock.
const DefaultWindow = 5 * time.Minute

// ErrReplay is returned (wrapped) for a message id already seen from the
// client.
var ErrReplay = errors.New("message id was already used by this client")

// ErrSigningTime is returned (wrapped) for a signing time outside the
// window.
var ErrSigningTime = errors.New("signing time is outside the accepted window")

// idKey names a (client, message id) pair by the first 128 bits of its
// HMAC-SHA256 under the store's secret: 16 bytes whatever the id's length,
// so that the ids of a busy window fit in memory (a million take about
// 40 MB), with a chance of two pairs colliding that is negligible against a
// window's count. Keyed, so that the journal on disk does not tell who
// sent which id to anybody without the secret.
type idKey [16]byte

func (s *Store) keyOf(client ident.Client, id string) idKey {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(client.String()))
	m.Write([]byte{0})
	m.Write([]byte(id))
	var k idKey
	copy(k[:], m.Sum(nil))
	return k
}

// legacyKeyOf is the unkeyed digest an older version stored in the
// configuration database.
func legacyKeyOf(client ident.Client, id string) idKey {
	sum := sha256.Sum256([]byte(client.String() + "\x00" + id))
	return idKey(sum[:16])
}

// legacyPrefix starts the journal key of an id imported from the
// configuration database, which is known only by its unkeyed digest.
const legacyPrefix = 0

// Journal keeps a Store's seen ids durable, as marks whose Key is the id's
// 16-byte digest (after a zero byte for an id moved by Import) and whose
// Time is its signing time; it holds no other marks. *messagelog.Log is
// one; the ids reach it on the request records (Claim.Mark).
type Journal interface {
	// Marks calls fn with every mark kept.
	Marks(fn func(messagelog.Mark) error) error
	// PutMarks stores marks durably on their own.
	PutMarks(marks ...messagelog.Mark) error
	// PruneMarks drops the marks older than before.
	PruneMarks(ctx context.Context, before time.Time) (int, error)
}

// Store is the set of seen (client, message id) pairs. Safe for concurrent
// use.
type Store struct {
	journal Journal
	window  time.Duration
	secret  []byte // the HMAC key of idKey

	mu   sync.Mutex
	seen map[idKey]int64 // -> signing time, Unix nanoseconds
	// legacy holds the imported ids (see Import) by their unkeyed digest,
	// until they are past the window.
	legacy map[idKey]int64

	ctx    context.Context // ends at Close, stopping a prune under way
	cancel context.CancelFunc
	done   chan struct{}
}

// Open loads the seen ids from j and starts the pruner. window is the
// accepted distance between a signing time and the clock (DefaultWindow
// when zero). secret, at least 32 bytes that the server keeps secret (the
// message log's key), keys the digests of the ids in the journal; it must
// be the same at every start. The caller owns j and closes it after Close.
func Open(j Journal, window time.Duration, secret []byte) (*Store, error) {
	if window <= 0 {
		window = DefaultWindow
	}
	if len(secret) < 32 {
		return nil, fmt.Errorf("the replay store's secret is %d bytes, want at least 32",
			len(secret))
	}
	// A key of its own, so that the digests say nothing about the secret's
	// other uses.
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("qapi replay store: message id digests"))
	s := &Store{journal: j, window: window, secret: m.Sum(nil),
		seen: map[idKey]int64{}, legacy: map[idKey]int64{}, done: make(chan struct{})}
	err := j.Marks(func(m messagelog.Mark) error {
		switch {
		case len(m.Key) == len(idKey{}):
			remember(s.seen, idKey(m.Key), m.Time.UnixNano())
		case len(m.Key) == 1+len(idKey{}) && m.Key[0] == legacyPrefix:
			remember(s.legacy, idKey(m.Key[1:]), m.Time.UnixNano())
		default:
			return fmt.Errorf("a seen id has a %d-byte key, want %d", len(m.Key),
				len(idKey{}))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load seen message ids: %w", err)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.run()
	return s, nil
}

// remember adds k to set, keeping the later signing time when k is known.
func remember(set map[idKey]int64, k idKey, signed int64) {
	if t, ok := set[k]; !ok || t < signed {
		set[k] = signed
	}
}

// Window returns the accepted distance between signing time and clock.
func (s *Store) Window() time.Duration { return s.window }

// Claim is a message id accepted and held in memory, not yet durable.
type Claim struct {
	s      *Store
	key    idKey
	signed time.Time
}

// Claim accepts a request from client with message id, signed at signed,
// arriving at now. It refuses at once, from memory, an id already seen
// (an error wrapping ErrReplay) or a signing time outside the window
// (ErrSigningTime). Otherwise it claims the id, so that a concurrent or
// later request with it is refused, and returns the claim. The caller must
// commit the claim's Mark to the Journal (with the request's log record)
// before it forwards the request, and call Release when that commit fails.
func (s *Store) Claim(client ident.Client, id string, signed, now time.Time) (Claim, error) {
	// Clause 6.2.4: a signature made long ago, or in the future, is refused
	// whatever its id, so ids need remembering only within the window.
	if d := now.Sub(signed); d > s.window || d < -s.window || signed.IsZero() {
		return Claim{}, fmt.Errorf("%w: signed at %s, server time %s, window ±%s",
			ErrSigningTime, signed.UTC().Format(time.RFC3339),
			now.UTC().Format(time.RFC3339), s.window)
	}
	k := s.keyOf(client, id)
	s.mu.Lock()
	defer s.mu.Unlock()
	_, dup := s.seen[k]
	if !dup && len(s.legacy) > 0 {
		_, dup = s.legacy[legacyKeyOf(client, id)]
	}
	if dup {
		return Claim{}, fmt.Errorf("%w: id %q from %s", ErrReplay, id, client)
	}
	s.seen[k] = signed.UnixNano()
	return Claim{s: s, key: k, signed: signed}, nil
}

// Mark returns what makes the claim durable: the caller sets it on the
// request's log record.
func (c Claim) Mark() messagelog.Mark {
	k := c.key
	return messagelog.Mark{Time: c.signed, Key: k[:]}
}

// Release forgets the claimed id, for when its mark could not be stored:
// the request was refused, so a retry with the same id is no replay.
func (c Claim) Release() {
	c.s.mu.Lock()
	delete(c.s.seen, c.key)
	c.s.mu.Unlock()
}

// Len returns how many ids are remembered.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen) + len(s.legacy)
}

// Prune forgets the ids whose signing time is so old that the signing-time
// check alone refuses them now, in memory and in the journal, and returns
// how many it forgot from memory.
func (s *Store) Prune(now time.Time) (int, error) {
	limit := now.Add(-s.window - time.Second)
	n := 0
	s.mu.Lock()
	for _, set := range []map[idKey]int64{s.seen, s.legacy} {
		for k, t := range set {
			if t < limit.UnixNano() {
				delete(set, k)
				n++
			}
		}
	}
	s.mu.Unlock()
	// A mark left behind costs only space: it is past the window, and the
	// next prune, or the one after a restart, drops it.
	if _, err := s.journal.PruneMarks(s.ctx, limit); err != nil {
		return n, fmt.Errorf("prune seen message ids: %w", err)
	}
	return n, nil
}

// legacyBucket is where the configuration database kept the seen ids
// before they moved to the message log: 16-byte digests, each with its
// signing time in Unix nanoseconds, 8 bytes big-endian.
var legacyBucket = []byte("replay-seen")

// Import moves the seen ids that an older version kept in db into the
// store and its journal, and drops them from db; those past the window at
// now are dropped only. It returns how many it moved. Without it a request
// seen just before an upgrade could be replayed just after. The old ids are
// known by their unkeyed digests only, and checked as such until they are
// past the window.
func (s *Store) Import(db *bolt.DB, now time.Time) (int, error) {
	limit := now.Add(-s.window - time.Second).UnixNano()
	var marks []messagelog.Mark
	err := db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(legacyBucket)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if len(k) != len(idKey{}) || len(v) != 8 {
				return fmt.Errorf("seen id record %x has a %d-byte key and a %d-byte "+
					"value, want 16 and 8", k, len(k), len(v))
			}
			if t := int64(binary.BigEndian.Uint64(v)); t >= limit {
				marks = append(marks, messagelog.Mark{Time: time.Unix(0, t),
					Key: append([]byte{legacyPrefix}, k...)})
			}
			return nil
		})
	})
	if err == nil && len(marks) > 0 {
		err = s.journal.PutMarks(marks...)
	}
	if err == nil {
		err = db.Update(func(tx *bolt.Tx) error {
			if tx.Bucket(legacyBucket) == nil {
				return nil
			}
			return tx.DeleteBucket(legacyBucket)
		})
	}
	if err != nil {
		return 0, fmt.Errorf("move seen message ids from %s to the message log: %w",
			db.Path(), err)
	}
	s.mu.Lock()
	for _, m := range marks {
		remember(s.legacy, idKey(m.Key[1:]), m.Time.UnixNano())
	}
	s.mu.Unlock()
	return len(marks), nil
}

// Close stops the pruner. Claims made before stay valid; the caller closes
// the journal after Close.
func (s *Store) Close() error {
	s.cancel()
	<-s.done
	return nil
}

// run prunes the seen ids a few times per window.
func (s *Store) run() {
	defer close(s.done)
	tick := time.NewTicker(s.window / 4)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-tick.C:
			// A failed prune keeps the ids; the next tick tries again.
			_, _ = s.Prune(now)
		}
	}
}
