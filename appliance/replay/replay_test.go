package replay_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/messagelog"
	"github.com/qapi-az/qapi/appliance/replay"
	bolt "go.etcd.io/bbolt"
)

var (
	clientA = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1", SubsystemCode: "A"}
	clientB = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "2", SubsystemCode: "B"}
	t0      = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	logKey  = make([]byte, 32)
)

// open opens the message log at path and a store journaling to it.
func open(t *testing.T, path string) (*messagelog.Log, *replay.Store) {
	t.Helper()
	l, err := messagelog.Open(messagelog.Options{Path: path, Key: logKey})
	if err != nil {
		t.Fatal(err)
	}
	s, err := replay.Open(l, 5*time.Minute, logKey)
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	return l, s
}

// admit is what the provider's proxy does: claim the id, then make it
// durable with the request's record.
func admit(l *messagelog.Log, s *replay.Store, client ident.Client, id string,
	signed, now time.Time) error {
	c, err := s.Claim(client, id, signed, now)
	if err != nil {
		return err
	}
	err = l.Append(context.Background(), messagelog.Record{Kind: messagelog.KindRequest,
		MessageID: id, Client: client.String(), Time: now, Signed: []byte("body"),
		ContentType: "text/xml", Mark: c.Mark()})
	if err != nil {
		c.Release()
	}
	return err
}

func TestClaim(t *testing.T) {
	l, s := open(t, filepath.Join(t.TempDir(), "log.db"))
	defer l.Close()
	defer s.Close()
	steps := []struct {
		name    string
		client  ident.Client
		id      string
		signed  time.Time
		now     time.Time
		wantErr error
	}{
		{"first use", clientA, "id-1", t0, t0, nil},
		{"same id same client", clientA, "id-1", t0, t0.Add(time.Second), replay.ErrReplay},
		{"same id other client", clientB, "id-1", t0, t0, nil},
		{"signed too long ago", clientA, "id-2", t0.Add(-6 * time.Minute), t0,
			replay.ErrSigningTime},
		{"signed in the future", clientA, "id-3", t0.Add(6 * time.Minute), t0,
			replay.ErrSigningTime},
		{"edge of window", clientA, "id-4", t0.Add(-5 * time.Minute), t0, nil},
		{"no signing time", clientA, "id-5", time.Time{}, t0, replay.ErrSigningTime},
		{"refused id is not consumed", clientA, "id-2", t0, t0, nil},
	}
	for _, st := range steps {
		err := admit(l, s, st.client, st.id, st.signed, st.now)
		if st.wantErr == nil && err != nil || st.wantErr != nil && !errors.Is(err, st.wantErr) {
			t.Errorf("%s: admit = %v, want %v", st.name, err, st.wantErr)
		}
	}
}

// TestReleasedClaim is a request whose record the log refused: its id is
// free again, in memory and after a restart.
func TestReleasedClaim(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	l, s := open(t, path)
	c, err := s.Claim(clientA, "id", t0, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(clientA, "id", t0, t0); !errors.Is(err, replay.ErrReplay) {
		t.Fatalf("a claimed id was claimed again: %v", err)
	}
	c.Release()
	if _, err := s.Claim(clientA, "id", t0, t0); err != nil {
		t.Fatalf("a released id is refused: %v", err)
	}
	// Claimed but never committed: the request never went on, so the id
	// is free after a restart too.
	s.Close()
	l.Close()
	l, s = open(t, path)
	defer l.Close()
	defer s.Close()
	if err := admit(l, s, clientA, "id", t0, t0); err != nil {
		t.Fatalf("after restart an id never committed is refused: %v", err)
	}

	l.Close() // the log fails: the claim must not stay
	if err := admit(l, s, clientA, "other", t0, t0); !errors.Is(err, messagelog.ErrClosed) {
		t.Fatalf("admit on a closed log = %v, want ErrClosed", err)
	}
	if _, err := s.Claim(clientA, "other", t0, t0); err != nil {
		t.Errorf("the id of a request the log refused is kept: %v", err)
	}
}

func TestSurvivesRestartAndPrunes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	l, s := open(t, path)
	if err := admit(l, s, clientA, "old", t0, t0); err != nil {
		t.Fatal(err)
	}
	if err := admit(l, s, clientA, "new", t0.Add(4*time.Minute),
		t0.Add(4*time.Minute)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	l.Close()

	l, s = open(t, path)
	if s.Len() != 2 {
		t.Fatalf("after restart %d ids are known, want 2", s.Len())
	}
	if err := admit(l, s, clientA, "old", t0, t0.Add(time.Minute)); !errors.Is(err,
		replay.ErrReplay) {
		t.Fatalf("after restart admit(old) = %v, want ErrReplay", err)
	}
	n, err := s.Prune(t0.Add(7 * time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v; want 1 id forgotten", n, err)
	}
	if s.Len() != 1 {
		t.Errorf("Len after prune = %d, want 1", s.Len())
	}
	s.Close()
	l.Close()

	// The prune reached the disk: only the id inside the window is loaded.
	l, s = open(t, path)
	defer l.Close()
	defer s.Close()
	if s.Len() != 1 {
		t.Errorf("after prune and restart %d ids are known, want 1", s.Len())
	}
	if err := admit(l, s, clientA, "new", t0.Add(4*time.Minute),
		t0.Add(7*time.Minute)); !errors.Is(err, replay.ErrReplay) {
		t.Errorf("an id inside the window was pruned: admit = %v", err)
	}
}

func TestConcurrentSameID(t *testing.T) {
	l, s := open(t, filepath.Join(t.TempDir(), "log.db"))
	defer l.Close()
	defer s.Close()
	const n = 64
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			// Half the goroutines race on one id, the rest use their own.
			id := "shared"
			if i%2 == 1 {
				id = fmt.Sprint("own-", i)
			}
			errs[i] = admit(l, s, clientA, id, t0, t0)
		})
	}
	wg.Wait()
	accepted := 0
	for i, err := range errs {
		if i%2 == 1 && err != nil {
			t.Errorf("own id %d refused: %v", i, err)
		}
		if i%2 == 0 && err == nil {
			accepted++
		}
	}
	if accepted != 1 {
		t.Errorf("shared id accepted %d times, want exactly once", accepted)
	}
}

// TestImport is an upgrade from a version that kept the seen ids in the
// configuration database: those inside the window move to the message
// log, and the old bucket goes.
func TestImport(t *testing.T) {
	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, "conf.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The old layout: the digest of client, NUL, id, cut to 16 bytes, and
	// the signing time in Unix nanoseconds.
	legacy := func(c ident.Client, id string, signed time.Time) ([]byte, []byte) {
		sum := sha256.Sum256([]byte(c.String() + "\x00" + id))
		return sum[:16], binary.BigEndian.AppendUint64(nil, uint64(signed.UnixNano()))
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("replay-seen"))
		if err != nil {
			return err
		}
		for _, r := range []struct {
			id     string
			signed time.Time
		}{{"recent", t0.Add(-time.Minute)}, {"expired", t0.Add(-10 * time.Minute)}} {
			if err := b.Put(legacy(clientA, r.id, r.signed)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(dir, "log.db")
	l, s := open(t, path)
	if n, err := s.Import(db, t0); err != nil || n != 1 {
		t.Fatalf("Import = %d, %v; want 1 id moved", n, err)
	}
	if err := admit(l, s, clientA, "recent", t0.Add(-time.Minute), t0); !errors.Is(err,
		replay.ErrReplay) {
		t.Errorf("an imported id is accepted again: %v", err)
	}
	err = db.View(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte("replay-seen")) != nil {
			return errors.New("the old bucket is still there")
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	if n, err := s.Import(db, t0); err != nil || n != 0 {
		t.Errorf("a second Import = %d, %v; want nothing to do", n, err)
	}
	s.Close()
	l.Close()

	l, s = open(t, path)
	defer l.Close()
	defer s.Close()
	if err := admit(l, s, clientA, "recent", t0.Add(-time.Minute),
		t0.Add(time.Second)); !errors.Is(err, replay.ErrReplay) {
		t.Errorf("after restart an imported id is accepted again: %v", err)
	}
}

// TestJournalTellsNothing: the journal holds digests keyed by the secret,
// so that the log file does not show who sent which id (the log encrypts
// its records for the same reason).
func TestJournalTellsNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	l, s := open(t, path)
	if err := admit(l, s, clientA, "id", t0, t0); err != nil {
		t.Fatal(err)
	}
	plain := sha256.Sum256([]byte(clientA.String() + "\x00id"))
	n := 0
	err := l.Marks(func(m messagelog.Mark) error {
		n++
		if bytes.Contains(m.Key, plain[:16]) || bytes.Contains(m.Key, []byte("id")) {
			return fmt.Errorf("mark %x shows the id", m.Key)
		}
		return nil
	})
	if err != nil || n != 1 {
		t.Fatalf("%d marks, %v; want one that shows nothing", n, err)
	}
	s.Close()

	// The same journal read under another secret matches nothing.
	other, err := replay.Open(l, 5*time.Minute, bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	defer other.Close()
	if _, err := other.Claim(clientA, "id", t0, t0); err != nil {
		t.Errorf("under another secret the id is still known: %v", err)
	}
	if _, err := replay.Open(l, 0, make([]byte, 16)); err == nil {
		t.Error("a 16-byte secret was accepted")
	}
}
