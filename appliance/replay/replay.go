// Package replay refuses replayed requests (clause 6.2.4): a message id
// that a client already used, and a request whose signing time is outside
// a window around the server's clock.
//
// The two checks bound each other: an id needs to be remembered only as long
// as a request carrying it could still pass the signing-time check, so the
// set of seen ids is pruned past the window and stays small. The set lives in
// memory for the fast path and in the server's configuration database
// (bbolt) so that it survives a restart; Check returns only once the id is
// durable, with concurrent checks committed together in one transaction.
package replay

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/qapi-az/qapi/appliance/groupcommit"
	"github.com/qapi-az/qapi/appliance/ident"
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

var bucketSeen = []byte("replay-seen")

// idKey names a (client, message id) pair by the first 128 bits of its
// SHA-256: 16 bytes whatever the id's length, so that the ids of a busy
// window fit in memory (a million take about 40 MB), with a chance of two
// pairs colliding that is negligible against a window's count.
type idKey [16]byte

func keyOf(client ident.Client, id string) idKey {
	h := sha256.New()
	h.Write([]byte(client.String()))
	h.Write([]byte{0})
	h.Write([]byte(id))
	var k idKey
	copy(k[:], h.Sum(nil))
	return k
}

// Store is the set of seen (client, message id) pairs. Safe for concurrent
// use.
type Store struct {
	db     *bolt.DB
	window time.Duration

	mu   sync.Mutex
	seen map[idKey]int64 // -> signing time, Unix nanoseconds

	writes chan write
	stop   chan struct{}
	done   chan struct{}
}

type write struct {
	key    idKey
	signed int64
	errc   chan error
}

// maxBatch bounds the ids committed in one transaction.
const maxBatch = 512

// maxDelay is how long the committer waits for more ids after the first,
// and only after a commit that carried more than one: a lone request is
// not delayed, and under load, when the caller's own message-log commit
// takes as long, fewer commits carry more ids.
const maxDelay = time.Millisecond

// Open loads the seen ids from db (creating its bucket on first use) and
// starts the committer and the pruner. window is the accepted distance
// between a signing time and the clock (DefaultWindow when zero). The
// caller owns db and closes it after Close.
func Open(db *bolt.DB, window time.Duration) (*Store, error) {
	if window <= 0 {
		window = DefaultWindow
	}
	s := &Store{db: db, window: window, seen: map[idKey]int64{},
		writes: make(chan write, maxBatch), stop: make(chan struct{}),
		done: make(chan struct{})}
	err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketSeen)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			if len(k) != len(idKey{}) || len(v) != 8 {
				return fmt.Errorf("seen id record %x has a %d-byte key and a %d-byte "+
					"value, want 16 and 8", k, len(k), len(v))
			}
			s.seen[idKey(k)] = int64(binary.BigEndian.Uint64(v))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load seen message ids from %s: %w", db.Path(), err)
	}
	go s.run()
	return s, nil
}

// Window returns the accepted distance between signing time and clock.
func (s *Store) Window() time.Duration { return s.window }

// Check accepts a request from client with message id, signed at signed,
// arriving at now: it returns an error wrapping ErrSigningTime or ErrReplay
// to refuse, another error when the id could not be stored (refuse too), and
// nil once the id is durably recorded as seen.
func (s *Store) Check(client ident.Client, id string, signed, now time.Time) error {
	wait, err := s.Begin(client, id, signed, now)
	if err != nil {
		return err
	}
	return wait()
}

// Begin is Check in two steps, so that the caller can overlap the disk
// write with its own (the message log's): it refuses at once, from memory,
// an id already seen or a signing time outside the window; otherwise it
// claims the id, starts writing it, and returns wait, which returns nil
// once the id is durable or the error that kept it from being stored. The
// caller must call wait and must not forward the request before it returned
// nil.
func (s *Store) Begin(client ident.Client, id string, signed,
	now time.Time) (wait func() error, err error) {
	// Clause 6.2.4: a signature made long ago, or in the future, is refused
	// whatever its id, so ids need remembering only within the window.
	if d := now.Sub(signed); d > s.window || d < -s.window || signed.IsZero() {
		return nil, fmt.Errorf("%w: signed at %s, server time %s, window ±%s",
			ErrSigningTime, signed.UTC().Format(time.RFC3339),
			now.UTC().Format(time.RFC3339), s.window)
	}
	k := keyOf(client, id)
	s.mu.Lock()
	if _, dup := s.seen[k]; dup {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: id %q from %s", ErrReplay, id, client)
	}
	s.seen[k] = signed.UnixNano()
	s.mu.Unlock()

	w := write{key: k, signed: signed.UnixNano(), errc: make(chan error, 1)}
	select {
	case s.writes <- w:
	case <-s.stop:
		s.forget(k)
		return nil, errors.New("replay store is closed")
	}
	return func() error {
		if err := <-w.errc; err != nil {
			s.forget(k)
			return fmt.Errorf("record message id as seen: %w", err)
		}
		return nil
	}, nil
}

func (s *Store) forget(k idKey) {
	s.mu.Lock()
	delete(s.seen, k)
	s.mu.Unlock()
}

// Len returns how many ids are remembered.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

// Prune forgets the ids whose signing time is so old that the signing-time
// check alone refuses them now, and returns how many it forgot.
func (s *Store) Prune(now time.Time) (int, error) {
	limit := now.Add(-s.window - time.Second).UnixNano()
	var old []idKey
	s.mu.Lock()
	for k, t := range s.seen {
		if t < limit {
			old = append(old, k)
		}
	}
	s.mu.Unlock()
	if len(old) == 0 {
		return 0, nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSeen)
		for _, k := range old {
			if err := b.Delete(k[:]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune seen message ids: %w", err)
	}
	s.mu.Lock()
	for _, k := range old {
		delete(s.seen, k)
	}
	s.mu.Unlock()
	return len(old), nil
}

// Close stops the committer and the pruner. Checks after Close fail.
func (s *Store) Close() error {
	close(s.stop)
	<-s.done
	return nil
}

// run commits pending ids: it takes whatever has queued up while the
// previous commit was on disk, so a lone request pays one commit and a
// burst shares one; while commits are shared it waits up to maxDelay for
// more.
func (s *Store) run() {
	defer close(s.done)
	tick := time.NewTicker(s.window / 4)
	defer tick.Stop()
	batches := groupcommit.Collector[write]{Max: maxBatch, Delay: maxDelay}
	batch := make([]write, 0, maxBatch)
	for {
		select {
		case <-s.stop:
			return
		case now := <-tick.C:
			// A failed prune keeps the ids; the next tick tries again.
			_, _ = s.Prune(now)
			continue
		case w := <-s.writes:
			batch = batches.Next(w, s.writes, batch)
		}
		err := s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketSeen)
			var v [8]byte
			for _, w := range batch {
				binary.BigEndian.PutUint64(v[:], uint64(w.signed))
				if err := b.Put(w.key[:], v[:]); err != nil {
					return err
				}
			}
			return nil
		})
		for _, w := range batch {
			w.errc <- err
		}
	}
}
