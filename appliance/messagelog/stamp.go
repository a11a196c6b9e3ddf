package messagelog

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Stamper obtains an RFC 3161 time stamp over a SHA-256 digest and returns
// the verified token (the DER ContentInfo of its SignedData).
// timestamp.Client is one.
type Stamper interface {
	Stamp(ctx context.Context, digest []byte) (token []byte, err error)
}

// Stamp is a time stamp over the chain: the TSA signed Head, the hash of
// entry Last, which by the chain vouches for every entry up to Last. First
// is the first entry it adds to what earlier stamps cover.
type Stamp struct {
	First uint64    `json:"first"`
	Last  uint64    `json:"last"`
	Head  []byte    `json:"head"`  // the 32-byte hash of entry Last
	Time  time.Time `json:"time"`  // when the log received the token
	Token []byte    `json:"token"` // DER ContentInfo of the TimeStampToken
}

// stampFailure returns the error Append must give while stamping has failed
// for longer than the grace.
func (l *Log) stampFailure() error {
	if l.opts.Stamper == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.unstampedSince.IsZero() {
		return nil
	}
	since := l.opts.Now().Sub(l.unstampedSince)
	if since <= l.opts.StampGrace {
		return nil
	}
	if l.stampErr != nil {
		return fmt.Errorf("%w: entries %d to %d have waited %v: %w", ErrTimestampFailure,
			l.stamped+1, l.head.seq, since.Round(time.Second), l.stampErr)
	}
	return fmt.Errorf("%w: entries %d to %d have waited %v", ErrTimestampFailure,
		l.stamped+1, l.head.seq, since.Round(time.Second))
}

// stampLoop time-stamps the chain head every StampInterval.
func (l *Log) stampLoop() {
	defer l.wg.Done()
	t := time.NewTicker(l.opts.StampInterval)
	defer t.Stop()
	for {
		select {
		case <-l.quit:
			return
		case <-t.C:
			l.StampNow(l.stopCtx) // the error is kept for Append
		}
	}
}

// StampNow time-stamps the current chain head at once if any entry lacks a
// stamp, and records the result. It returns the stamping error, which Append
// also reports once the grace has passed. The log calls it by itself every
// StampInterval; tests and the archiver call it to close a period.
func (l *Log) StampNow(ctx context.Context) error {
	if l.opts.Stamper == nil {
		return fmt.Errorf("message log has no time-stamping authority configured")
	}
	l.mu.Lock()
	head, first := l.head, l.stamped+1
	l.mu.Unlock()
	if head.seq < first {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, l.opts.StampTimeout)
	defer cancel()
	token, err := l.opts.Stamper.Stamp(ctx, head.hash[:])
	if err == nil {
		err = l.saveStamp(Stamp{First: first, Last: head.seq, Head: head.hash[:],
			Time: l.opts.Now().UTC(), Token: token})
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.stampErr = fmt.Errorf("time-stamping entries %d to %d: %w", first, head.seq, err)
		return l.stampErr
	}
	l.stampErr = nil
	if head.seq > l.stamped {
		l.stamped = head.seq
	}
	if l.stamped == l.head.seq {
		l.unstampedSince = time.Time{}
	} else {
		// Entries committed while the TSA answered start a fresh wait.
		l.unstampedSince = l.opts.Now()
	}
	return nil
}

func (l *Log) saveStamp(s Stamp) error {
	v, err := json.Marshal(s)
	if err != nil {
		return err
	}
	l.mu.Lock()
	db := l.db
	l.mu.Unlock()
	if db == nil {
		return fmt.Errorf("message log unavailable after a failed commit")
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTimestamps).Put(seqKey(s.Last), v)
	})
	if err != nil {
		return fmt.Errorf("storing the time stamp: %w", err)
	}
	return nil
}

// Stamps returns the time stamps kept in the live store whose Last lies in
// from..to (inclusive; to 0 means no upper bound), in order.
func (l *Log) Stamps(from, to uint64) ([]Stamp, error) {
	var out []Stamp
	err := l.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketTimestamps).Cursor()
		for k, v := c.Seek(seqKey(from)); k != nil; k, v = c.Next() {
			seq := binary.BigEndian.Uint64(k)
			if to != 0 && seq > to {
				break
			}
			var s Stamp
			if err := json.Unmarshal(v, &s); err != nil {
				return &CorruptError{Where: l.opts.Path, Seq: seq,
					Reason: "time stamp does not parse: " + err.Error()}
			}
			out = append(out, s)
		}
		return nil
	})
	return out, err
}

// Remove deletes entries up to and including through, and the time stamps
// that cover only them, from the live store; hash must be the hash of entry
// through. The archiver calls it only once an archive holding those entries
// is written, synced, re-read and verified (3.8.4).
func (l *Log) Remove(through uint64, hash Hash) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.db == nil {
		return fmt.Errorf("message log unavailable after a failed commit; retry")
	}
	if through <= l.through.seq {
		return nil
	}
	if through > l.head.seq {
		return fmt.Errorf("removing through entry %d: the head is %d", through, l.head.seq)
	}
	err := l.db.Update(func(tx *bolt.Tx) error {
		k := seqKey(through)
		v := getRecord(tx.Bucket(bucketRecords), through)
		if v == nil {
			return fmt.Errorf("entry %d is not in the live store", through)
		}
		e, err := l.decode(k, v)
		if err != nil {
			return err
		}
		if e.Hash() != hash {
			return fmt.Errorf("entry %d does not have the hash the archive recorded", through)
		}
		if err := removeRecords(tx.Bucket(bucketRecords), through); err != nil {
			return err
		}
		c := tx.Bucket(bucketTimestamps).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.First() {
			if binary.BigEndian.Uint64(k) > through {
				break
			}
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketArchive).Put(keyThrough, link{through, hash}.bytes())
	})
	if err != nil {
		return fmt.Errorf("removing archived entries: %w", err)
	}
	l.through = link{through, hash}
	if l.stamped < through {
		l.stamped = through
	}
	return nil
}
