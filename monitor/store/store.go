// Package store keeps the monitoring station's history in its own bbolt
// file: one record per minute, bounded by a retention period, and the
// running totals (stats.Totals, their rows bounded by the aggregator) so
// that a restart does not reset them. It never holds anything but
// statistics (clause 2.7).
package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/qapi-az/qapi/monitor/stats"
)

var (
	bucketMinutes = []byte("minutes")
	bucketRows    = []byte("rows")
	// keyRows held the rows alone, before the dropped count was kept;
	// keyTotals holds stats.Totals.
	keyRows   = []byte("rows")
	keyTotals = []byte("totals")
)

// Store is the history file. Safe for concurrent use.
type Store struct {
	db        *bolt.DB
	retention time.Duration
}

// Open opens or creates the history file at path, keeping minutes for
// retention (at least one hour).
func Open(path string, retention time.Duration) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open monitor history %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMinutes, bucketRows} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("prepare monitor history %s: %w", path, err)
	}
	return &Store{db: db, retention: max(retention, time.Hour)}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// minuteKey orders minutes by time; instants before 1970 map to 0.
func minuteKey(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(max(t.Unix(), 0)))
}

// Save stores closed minutes (merging into a minute already stored, as
// happens after a restart within one minute) and the running totals, and
// deletes minutes older than the retention before now.
func (s *Store) Save(now time.Time, minutes []stats.Minute, totals stats.Totals) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		mb := tx.Bucket(bucketMinutes)
		for _, m := range minutes {
			k := minuteKey(m.Start)
			if old := mb.Get(k); old != nil {
				var prev stats.Minute
				if err := json.Unmarshal(old, &prev); err == nil {
					m.Requests += prev.Requests
					m.Faults += prev.Faults
					m.OverLimit += prev.OverLimit
					m.Processing.Merge(&prev.Processing)
					m.PeakRate = max(m.PeakRate, prev.PeakRate)
				}
			}
			v, err := json.Marshal(m)
			if err != nil {
				return err
			}
			if err := mb.Put(k, v); err != nil {
				return err
			}
		}
		cut := minuteKey(now.Add(-s.retention))
		var old [][]byte
		c := mb.Cursor()
		for k, _ := c.First(); k != nil && string(k) < string(cut); k, _ = c.Next() {
			old = append(old, bytes.Clone(k))
		}
		for _, k := range old {
			if err := mb.Delete(k); err != nil {
				return err
			}
		}
		v, err := json.Marshal(totals)
		if err != nil {
			return err
		}
		rb := tx.Bucket(bucketRows)
		if err := rb.Put(keyTotals, v); err != nil {
			return err
		}
		return rb.Delete(keyRows)
	})
}

// Minutes returns the stored minutes at or after since, oldest first.
func (s *Store) Minutes(since time.Time) ([]stats.Minute, error) {
	var out []stats.Minute
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketMinutes).Cursor()
		for k, v := c.Seek(minuteKey(since)); k != nil; k, v = c.Next() {
			var m stats.Minute
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("minute %x: %w", k, err)
			}
			out = append(out, m)
		}
		return nil
	})
	return out, err
}

// Totals returns the running totals saved last, for
// stats.Aggregator.Restore; a file written before the dropped count was
// kept gives its rows alone.
func (s *Store) Totals() (stats.Totals, error) {
	var t stats.Totals
	err := s.db.View(func(tx *bolt.Tx) error {
		rb := tx.Bucket(bucketRows)
		if v := rb.Get(keyTotals); v != nil {
			return json.Unmarshal(v, &t)
		}
		if v := rb.Get(keyRows); v != nil {
			return json.Unmarshal(v, &t.Rows)
		}
		return nil
	})
	if err != nil {
		return stats.Totals{}, fmt.Errorf("read saved monitor totals: %w", err)
	}
	return t, nil
}
