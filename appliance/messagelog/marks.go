package messagelog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Mark is a short key that the log keeps beside its entries, in a bucket
// of its own, until PruneMarks drops it. A mark carried by a Record is
// committed in the same transaction as the record, so that one disk sync
// makes both durable; the replay store keeps the message ids it has seen
// this way (clause 6.2.4).
//
// A mark is not part of any entry: it is not chained, not archived and not
// encrypted, so it must not hold message content or tell who talked to
// whom (the replay store's keys are digests under a secret). Entries read
// back from the log carry no mark.
type Mark struct {
	// Time orders the marks; PruneMarks drops them by it. Required.
	Time time.Time
	// Key names the mark, 1 to MaxMarkKey bytes. Marks with the same Time
	// and Key are one mark.
	Key []byte
}

// MaxMarkKey bounds the length of a Mark's Key.
const MaxMarkKey = 64

func (m *Mark) valid() error {
	if len(m.Key) == 0 || len(m.Key) > MaxMarkKey {
		return fmt.Errorf("a mark's key is %d bytes, want 1 to %d", len(m.Key), MaxMarkKey)
	}
	if m.Time.IsZero() {
		return errors.New("a mark needs a time")
	}
	return nil
}

// markKey is the mark's key in the bucket: its time, so that the bucket
// is in time order and a prune takes a prefix, then its key.
func markKey(m *Mark) []byte { return appendMarkKey(make([]byte, 0, 8+len(m.Key)), m) }

// appendMarkKey appends markKey(m) to dst.
func appendMarkKey(dst []byte, m *Mark) []byte {
	// The sign bit flipped, so that byte order is time order across 1970.
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.Time.UnixNano())^1<<63)
	return append(dst, m.Key...)
}

func markTime(k []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(k)^1<<63))
}

// putMark stores the mark whose markKey is key in the marks bucket of tx.
// bbolt keeps key until tx ends.
func putMark(tx *bolt.Tx, key []byte) error {
	b := tx.Bucket(bucketMarks)
	// Marks arrive in about time order, so pages split nearly full.
	b.FillPercent = 0.9
	return b.Put(key, nil)
}

// Marks calls fn with every mark kept, in time order, until fn fails.
func (l *Log) Marks(fn func(Mark) error) error {
	return l.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketMarks).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) <= 8 {
				return &CorruptError{Where: l.opts.Path,
					Reason: fmt.Sprintf("a mark has a %d-byte key", len(k))}
			}
			if err := fn(Mark{Time: markTime(k), Key: k[8:len(k):len(k)]}); err != nil {
				return err
			}
		}
		return nil
	})
}

// PutMarks stores marks durably without a record, for marks that did not
// arrive with one (such as those carried over from an older store).
func (l *Log) PutMarks(marks ...Mark) error {
	for i := range marks {
		if err := marks[i].valid(); err != nil {
			return err
		}
	}
	err := l.update(func(tx *bolt.Tx) error {
		for i := range marks {
			if err := putMark(tx, markKey(&marks[i])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storing marks: %w", err)
	}
	return nil
}

// pruneChunk bounds the marks one transaction of PruneMarks drops, so
// that a prune holds up the records' commits only briefly.
const pruneChunk = 4096

// PruneMarks drops the marks whose Time is before before and returns how
// many it dropped. It stops between transactions when ctx ends.
func (l *Log) PruneMarks(ctx context.Context, before time.Time) (int, error) {
	limit := markKey(&Mark{Time: before})
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("pruning marks: %w", err)
		}
		n := 0
		err := l.update(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketMarks).Cursor()
			// A cursor's Next after Delete may skip a key: start again
			// from the first each time.
			for k, _ := c.First(); k != nil && n < pruneChunk; k, _ = c.First() {
				if string(k[:min(8, len(k))]) >= string(limit[:8]) {
					break
				}
				if err := c.Delete(); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		total += n
		if err != nil {
			return total, fmt.Errorf("pruning marks: %w", err)
		}
		if n < pruneChunk {
			return total, nil
		}
	}
}

// update runs fn in a write transaction on the open file, beside the
// writer's own (bbolt serializes them).
func (l *Log) update(fn func(tx *bolt.Tx) error) error {
	db, err := l.openFile()
	if err != nil {
		return err
	}
	return l.safely(func() error { return db.Update(fn) })
}
