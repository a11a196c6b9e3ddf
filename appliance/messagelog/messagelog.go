// Package messagelog archives every message that passes through the
// security server (clauses 2.2.2, 6.3): encrypted at rest, hash-chained,
// committed in groups so that a caller's Append returns only once its
// records are durable.
//
// # Store
//
// The log is one bbolt file with five buckets: records (one entry per
// message, keyed by its sequence number, in a nested bucket per commit:
// see records.go), chain (the chain head and a key
// check), timestamps (RFC 3161 tokens over the chain head, keyed by the last
// entry each covers), archive (what has left the live store) and marks
// (short keys committed with the records, see Mark). Every
// record value is sealed with AES-256-GCM under the 32-byte log key, with a
// fresh nonce, and the bucket and key as additional data.
//
// # Chain
//
// Each entry carries the SHA-256 of the canonical encoding of the entry
// before it (Entry.Canonical documents the encoding), so removing, reordering
// or altering any entry breaks the chain at that point. The head is
// persisted in the same transaction as the entries and continues across
// restarts and archives.
//
// # Group commit
//
// Append hands its records to one writer goroutine and waits. The writer
// takes every request queued (up to MaxBatch records, waiting at most
// MaxDelay for more) and commits them in one fsynced bbolt transaction, then
// answers all their callers.
package messagelog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/qapi-az/qapi/appliance/groupcommit"
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
	// Time is when the message passed; Append sets it to the current time
	// when zero. It is kept to the nanosecond in UTC.
	Time time.Time
	// Signed is the exact multipart/signed body exchanged, and
	// ContentType its header value.
	Signed      []byte
	ContentType string
	// Mark, when its Key is set, is kept in the same transaction as the
	// record (see Mark); it is not part of the entry.
	Mark Mark
}

// Options configure a Log. The zero value of every field but Path and Key
// selects a default.
type Options struct {
	// Path is the bbolt file.
	Path string
	// Key is the 32-byte encryption key (keys.LogEncryption).
	Key []byte
	// MaxBatch and MaxDelay bound a group commit: the writer commits at most
	// MaxBatch records (default 512) in one transaction, and waits at most
	// MaxDelay (default 0: no waiting beyond what is already queued) for more
	// to arrive after the first. It waits only after a commit that carried
	// the records of more than one Append: a lone caller is never delayed,
	// and under load, when commits are shared, fewer of them carry more.
	MaxBatch int
	MaxDelay time.Duration

	// Stamper, when set, time-stamps the chain head every StampInterval
	// (default one minute) while there are entries no stamp covers.
	Stamper       Stamper
	StampInterval time.Duration
	// StampGrace is how long entries may stay without a time stamp
	// (default ten StampIntervals). Past it, Append refuses new records with
	// ErrTimestampFailure until a stamp succeeds again.
	StampGrace time.Duration
	// StampTimeout bounds one call to the Stamper (default 30 s).
	StampTimeout time.Duration

	// Now returns the current time; time.Now when nil. For tests.
	Now func() time.Time
}

// Errors callers branch on.
var (
	// ErrClosed is returned by Append after Close.
	ErrClosed = errors.New("message log is closed")
	// ErrTimestampFailure is returned (wrapped) by Append while entries have
	// waited for a time stamp longer than Options.StampGrace; the proxy
	// answers soap.CodeTimestampFailure. It clears by itself once the TSA
	// answers again.
	ErrTimestampFailure = errors.New("message log cannot time-stamp its records")
)

// CorruptError reports an entry of the log (or of an archive) that failed a
// check: it does not decrypt, does not parse, or breaks the chain.
type CorruptError struct {
	// Where names the file; Seq the entry (0 when the fault is not in one).
	Where  string
	Seq    uint64
	Reason string
}

// Error names the file, the entry and the fault.
func (e *CorruptError) Error() string {
	if e.Seq == 0 {
		return fmt.Sprintf("%s: %s", e.Where, e.Reason)
	}
	return fmt.Sprintf("%s: entry %d: %s", e.Where, e.Seq, e.Reason)
}

var _ error = &CorruptError{}

// Bucket and key names of the store.
var (
	bucketRecords    = []byte("records")
	bucketChain      = []byte("chain")
	bucketTimestamps = []byte("timestamps")
	bucketArchive    = []byte("archive")
	bucketMarks      = []byte("marks")

	keyHead     = []byte("head")     // seq(8) || hash(32) of the last entry
	keyKeyCheck = []byte("keycheck") // sealed keyCheckText
	keyThrough  = []byte("through")  // seq(8) || hash(32) of the last archived entry
)

const keyCheckText = "qapi message log key check"

// Log is an open message log. Safe for concurrent use.
type Log struct {
	opts   Options
	sealer *sealer
	queue  chan *request
	quit   chan struct{}
	done   chan struct{} // closed when the writer has exited
	wg     sync.WaitGroup
	// stop cancels a time stamp under way when the log closes.
	stopCtx context.Context
	stop    context.CancelFunc

	closeOnce sync.Once
	closeErr  error

	// batchBuf is the writer's buffer for a batch's keys and sealed
	// values (see commit).
	batchBuf []byte

	mu sync.Mutex // guards the fields below
	db *bolt.DB   // nil while broken after a failed commit
	// head is the last committed entry; through the last archived one.
	head, through link
	// stamped is the last entry a time stamp covers.
	stamped uint64
	// unstampedSince is when the oldest entry no stamp covers was committed
	// (zero when there is none); stampErr is the last stamping failure.
	unstampedSince time.Time
	stampErr       error
}

// link is one position of the chain.
type link struct {
	seq  uint64
	hash Hash
}

func (k link) bytes() []byte {
	return append(binary.BigEndian.AppendUint64(nil, k.seq), k.hash[:]...)
}

func parseLink(b []byte) (link, error) {
	if len(b) != 8+HashSize {
		return link{}, fmt.Errorf("chain link is %d bytes, want %d", len(b), 8+HashSize)
	}
	var k link
	k.seq = binary.BigEndian.Uint64(b)
	copy(k.hash[:], b[8:])
	return k, nil
}

type request struct {
	recs []Record
	done chan error
}

// Open opens or creates the log. It fails when the file was written with
// another key. The caller must call Close.
func Open(opts Options) (*Log, error) {
	s, err := newSealer(opts.Key)
	if err != nil {
		return nil, err
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 512
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.StampInterval <= 0 {
		opts.StampInterval = time.Minute
	}
	if opts.StampGrace <= 0 {
		opts.StampGrace = 10 * opts.StampInterval
	}
	if opts.StampTimeout <= 0 {
		opts.StampTimeout = 30 * time.Second
	}
	l := &Log{
		opts:   opts,
		sealer: s,
		queue:  make(chan *request),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	if err := l.openDB(); err != nil {
		return nil, err
	}
	l.stopCtx, l.stop = context.WithCancel(context.Background())
	if l.head.seq > l.stamped {
		// Give the entries left unstamped by the last run a full grace.
		l.unstampedSince = opts.Now()
	}
	l.wg.Add(1)
	go l.writer()
	if opts.Stamper != nil {
		l.wg.Add(1)
		go l.stampLoop()
	}
	return l, nil
}

// openDB opens the bbolt file and loads the chain state. l.mu must be held
// or the Log not yet shared.
func (l *Log) openDB() error {
	var db *bolt.DB
	err := l.safely(func() (err error) {
		db, err = bolt.Open(l.opts.Path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
		return err
	})
	if err != nil {
		return fmt.Errorf("opening message log %s: %w", l.opts.Path, err)
	}
	err = l.safely(func() error { return db.Update(l.prepare) })
	if err != nil {
		db.Close()
		return fmt.Errorf("opening message log %s: %w", l.opts.Path, err)
	}
	l.db = db
	return nil
}

// prepare creates the buckets and loads the chain state.
func (l *Log) prepare(tx *bolt.Tx) error {
	var err error
	for _, name := range [][]byte{bucketRecords, bucketChain, bucketTimestamps,
		bucketArchive, bucketMarks} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	chain := tx.Bucket(bucketChain)
	if kc := chain.Get(keyKeyCheck); kc != nil {
		plain, err := l.sealer.open(bucketChain, keyKeyCheck, kc)
		if err != nil || string(plain) != keyCheckText {
			return errors.New("the file was written with another log key; " +
				"use the key it was created with")
		}
	} else {
		kc, err := l.sealer.seal(bucketChain, keyKeyCheck, []byte(keyCheckText))
		if err != nil {
			return err
		}
		if err := chain.Put(keyKeyCheck, kc); err != nil {
			return err
		}
	}
	if v := chain.Get(keyHead); v != nil {
		if l.head, err = parseLink(v); err != nil {
			return &CorruptError{Where: l.opts.Path, Reason: "chain head: " + err.Error()}
		}
	}
	if v := tx.Bucket(bucketArchive).Get(keyThrough); v != nil {
		if l.through, err = parseLink(v); err != nil {
			return &CorruptError{Where: l.opts.Path,
				Reason: "archive position: " + err.Error()}
		}
	}
	if k, _ := tx.Bucket(bucketTimestamps).Cursor().Last(); k != nil {
		l.stamped = binary.BigEndian.Uint64(k)
	}
	if l.stamped < l.through.seq {
		l.stamped = l.through.seq
	}
	return nil
}

// safely runs fn, turning a panic of bbolt over a damaged file into a
// *CorruptError naming the file.
func (l *Log) safely(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &CorruptError{Where: l.opts.Path,
				Reason: fmt.Sprintf("the file is damaged: %v", r)}
		}
	}()
	return fn()
}

// Append stores recs and returns once they are durable, or with the error
// that kept them from being stored; the caller must then not release the
// response (it answers CodeLogFailure, or CodeTimestampFailure when the error
// is ErrTimestampFailure). When ctx ends first Append returns its error, and
// the records may or may not be stored.
func (l *Log) Append(ctx context.Context, recs ...Record) error {
	if len(recs) == 0 {
		return nil
	}
	for i := range recs {
		if recs[i].Mark.Key != nil {
			if err := recs[i].Mark.valid(); err != nil {
				return err
			}
		}
	}
	if err := l.stampFailure(); err != nil {
		return err
	}
	req := &request{recs: recs, done: make(chan error, 1)}
	select {
	case l.queue <- req:
	case <-l.quit:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("message log: %w", ctx.Err())
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("message log: %w", ctx.Err())
	}
}

// writer is the one goroutine that commits records.
func (l *Log) writer() {
	defer l.wg.Done()
	defer close(l.done)
	released := time.Now()
	batches := groupcommit.Collector[*request]{Max: l.opts.MaxBatch, Delay: l.opts.MaxDelay,
		Weight: func(r *request) int { return len(r.recs) }}
	var batch []*request
	for {
		var first *request
		select {
		case first = <-l.queue:
		case <-l.quit:
			return
		}
		batch = batches.Next(first, l.queue, batch)
		err := l.commit(batch)
		for i, r := range batch {
			r.done <- err
			batch[i] = nil
		}
		if time.Since(released) >= releaseEvery {
			l.releaseMemory()
			released = time.Now()
		}
	}
}

// maxBatchBuf bounds the buffer the writer keeps between batches: a rare
// large batch does not pin its memory.
const maxBatchBuf = 4 << 20

// commit writes the records of batch in one transaction. On failure it
// reopens the file, so that the state in memory is what the disk holds.
func (l *Log) commit(batch []*request) error {
	l.mu.Lock()
	if l.db == nil {
		if err := l.openDB(); err != nil {
			l.mu.Unlock()
			return fmt.Errorf("message log unavailable, records not stored: %w", err)
		}
	}
	// The writer alone moves the head, so it may write without holding mu:
	// Append's checks and State do not wait for the disk.
	db, head := l.db, l.head
	l.mu.Unlock()
	now := l.opts.Now()
	// bbolt keeps the keys and values put until the transaction ends, so
	// the batch's are built in one buffer, reused by the next batch.
	buf := l.batchBuf[:0]
	err := l.safely(func() error {
		return db.Update(func(tx *bolt.Tx) error {
			// A nested bucket per commit (see records.go); keys only grow.
			records := tx.Bucket(bucketRecords)
			records.FillPercent = 1
			b, err := records.CreateBucket(seqKey(head.seq + 1))
			if err != nil {
				return err
			}
			b.FillPercent = 1
			for _, r := range batch {
				for _, rec := range r.recs {
					if rec.Time.IsZero() {
						rec.Time = now
					}
					rec.Time = rec.Time.UTC()
					e := Entry{Seq: head.seq + 1, Prev: head.hash, Record: rec}
					start := len(buf)
					buf = binary.BigEndian.AppendUint64(buf, e.Seq)
					key := buf[start:len(buf):len(buf)]
					var hash Hash
					var err error
					start = len(buf)
					if buf, hash, err = l.sealer.appendSealedEntry(buf, bucketRecords, key,
						&e); err != nil {
						return err
					}
					if err := b.Put(key, buf[start:len(buf):len(buf)]); err != nil {
						return err
					}
					if rec.Mark.Key != nil {
						start = len(buf)
						buf = appendMarkKey(buf, &rec.Mark)
						if err := putMark(tx, buf[start:len(buf):len(buf)]); err != nil {
							return err
						}
					}
					head = link{seq: e.Seq, hash: hash}
				}
			}
			return tx.Bucket(bucketChain).Put(keyHead, head.bytes())
		})
	})
	if cap(buf) <= maxBatchBuf {
		l.batchBuf = buf
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		// A failed commit (a full disk, an I/O error) may leave bbolt's view
		// of the file and the page cache behind the disk; start afresh from
		// what is on disk at the next batch.
		db.Close()
		l.db = nil
		return fmt.Errorf("message log: records not stored: %w", err)
	}
	if l.head.seq == l.stamped && l.unstampedSince.IsZero() {
		l.unstampedSince = now
	}
	l.head = head
	return nil
}

// Close stops the writer and the stamper and closes the file. Appends
// already handed to the writer complete first; later ones get ErrClosed.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		close(l.quit)
		l.stop()
		l.wg.Wait()
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.db != nil {
			l.closeErr = l.db.Close()
			l.db = nil
		}
	})
	return l.closeErr
}

// State is the position of the log.
type State struct {
	// Head is the last entry written and HeadHash its hash (Seq 0 and all
	// zero for an empty log).
	Head     uint64
	HeadHash Hash
	// Archived is the last entry moved to an archive and ArchivedHash its
	// hash; the live store holds Archived+1 through Head.
	Archived     uint64
	ArchivedHash Hash
	// Stamped is the last entry a time stamp covers.
	Stamped uint64
}

// State returns the current position of the log.
func (l *Log) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	return State{Head: l.head.seq, HeadHash: l.head.hash, Archived: l.through.seq,
		ArchivedHash: l.through.hash, Stamped: l.stamped}
}

// view runs fn in a read transaction on the open file.
func (l *Log) view(fn func(tx *bolt.Tx) error) error {
	db, err := l.openFile()
	if err != nil {
		return err
	}
	return l.safely(func() error { return db.View(fn) })
}

// openFile returns the open bbolt file, or why there is none: the log is
// closed, or a failed commit closed the file until the next batch reopens
// it.
func (l *Log) openFile() (*bolt.DB, error) {
	l.mu.Lock()
	db := l.db
	l.mu.Unlock()
	if db == nil {
		select {
		case <-l.quit:
			return nil, ErrClosed
		default:
		}
		return nil, errors.New("message log unavailable after a failed commit; retry")
	}
	return db, nil
}

// Entries calls fn with each entry from..to (inclusive; to 0 means the
// head) in order, decrypted. It stops at the first error: fn's, or a
// *CorruptError for an entry that does not decrypt or parse or is missing.
// It does not check the chain; Verify does.
func (l *Log) Entries(from, to uint64, fn func(*Entry) error) error {
	return l.view(func(tx *bolt.Tx) error {
		want := from
		return forRecords(tx.Bucket(bucketRecords), from, func(k, v []byte) error {
			seq := binary.BigEndian.Uint64(k)
			if to != 0 && seq > to {
				return errStop
			}
			if seq != want && want != 0 {
				return &CorruptError{Where: l.opts.Path, Seq: want, Reason: "entry missing"}
			}
			e, err := l.decode(k, v)
			if err != nil {
				return err
			}
			if err := fn(e); err != nil {
				return err
			}
			want = seq + 1
			return nil
		})
	})
}

func (l *Log) decode(k, v []byte) (*Entry, error) {
	seq := binary.BigEndian.Uint64(k)
	plain, err := l.sealer.open(bucketRecords, k, v)
	if err != nil {
		return nil, &CorruptError{Where: l.opts.Path, Seq: seq, Reason: err.Error()}
	}
	e, err := decodeStored(plain)
	if err != nil {
		return nil, &CorruptError{Where: l.opts.Path, Seq: seq, Reason: err.Error()}
	}
	if e.Seq != seq {
		return nil, &CorruptError{Where: l.opts.Path, Seq: seq,
			Reason: fmt.Sprintf("entry says it is number %d", e.Seq)}
	}
	return e, nil
}

// verifyChunk is how many entries Verify reads in one read transaction;
// tests lower it.
var verifyChunk uint64 = 4096

// Verify decrypts every entry of the live store and checks the chain from
// the last archived entry to the head as it was when Verify began. It
// returns the number of entries checked, and a *CorruptError naming the
// first entry that fails (missing, not decrypting, not parsing, or not
// linking to the one before); any other error means the store could not be
// read, not that it is damaged.
//
// Verify may run while the log is in use. It reads the entries in chunks,
// each in a read transaction of its own, so that it never holds the file
// for long; entries the archiver removes meanwhile, which it verified
// before removing them (3.8.4), are passed over from the new archive
// position on.
//
// TODO: nothing moves the entries after a damaged one out of the live
// store: the archiver stops at the damaged entry until an operator acts.
func (l *Log) Verify() (int, error) { return l.verify(context.Background()) }

// verify is Verify, stopping between chunks when ctx ends.
func (l *Log) verify(ctx context.Context) (int, error) {
	st := l.State()
	prev := st.ArchivedHash
	want := st.Archived + 1
	n := 0
	check := func(e *Entry) error {
		if e.Seq != want {
			return &CorruptError{Where: l.opts.Path, Seq: want, Reason: "entry missing"}
		}
		if e.Prev != prev {
			return &CorruptError{Where: l.opts.Path, Seq: e.Seq,
				Reason: "chain broken: the previous entry's hash does not match"}
		}
		prev = e.Hash()
		want++
		n++
		return nil
	}
	for want <= st.Head {
		if err := ctx.Err(); err != nil {
			return n, fmt.Errorf("verifying the message log: %w", err)
		}
		to := min(want+verifyChunk-1, st.Head)
		err := l.Entries(want, to, check)
		if err == nil && want <= to {
			err = &CorruptError{Where: l.opts.Path, Seq: want,
				Reason: fmt.Sprintf("entries end before the head %d", st.Head)}
		}
		if err != nil {
			var ce *CorruptError
			if now := l.State(); errors.As(err, &ce) && now.Archived >= want {
				// Archived meanwhile: go on from where the archive ends.
				prev, want = now.ArchivedHash, now.Archived+1
				continue
			}
			return n, err
		}
	}
	if want-1 > st.Head {
		return n, nil // archived past the head Verify began with
	}
	if !bytes.Equal(prev[:], st.HeadHash[:]) {
		return n, &CorruptError{Where: l.opts.Path, Seq: st.Head,
			Reason: "the last entry's hash does not match the stored chain head"}
	}
	return n, nil
}

// VerifyEvery runs Verify at once and then every interval (once only when
// interval is not positive) until ctx ends or the log closes, and passes
// each outcome to report; the caller reports a damaged entry (a
// *CorruptError) as a fault. A check under way when ctx ends stops there
// and is not reported.
func (l *Log) VerifyEvery(ctx context.Context, interval time.Duration,
	report func(n int, err error)) {
	run := func() {
		n, err := l.verify(ctx)
		if ctx.Err() == nil {
			report(n, err)
		}
	}
	run()
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.quit:
			return
		case <-t.C:
			run()
		}
	}
}
