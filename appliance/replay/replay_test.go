package replay_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/replay"
	bolt "go.etcd.io/bbolt"
)

var (
	clientA = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1", SubsystemCode: "A"}
	clientB = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "2", SubsystemCode: "B"}
	t0      = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
)

func open(t *testing.T, path string) (*bolt.DB, *replay.Store) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := replay.Open(db, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return db, s
}

func TestCheck(t *testing.T) {
	db, s := open(t, filepath.Join(t.TempDir(), "conf.db"))
	defer db.Close()
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
		err := s.Check(st.client, st.id, st.signed, st.now)
		if st.wantErr == nil && err != nil || st.wantErr != nil && !errors.Is(err, st.wantErr) {
			t.Errorf("%s: Check = %v, want %v", st.name, err, st.wantErr)
		}
	}
}

func TestSurvivesRestartAndPrunes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "conf.db")
	db, s := open(t, path)
	if err := s.Check(clientA, "old", t0, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(clientA, "new", t0.Add(4*time.Minute), t0.Add(4*time.Minute)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	db.Close()

	db, s = open(t, path)
	defer db.Close()
	defer s.Close()
	if err := s.Check(clientA, "old", t0, t0.Add(time.Minute)); !errors.Is(err,
		replay.ErrReplay) {
		t.Fatalf("after restart Check(old) = %v, want ErrReplay", err)
	}
	n, err := s.Prune(t0.Add(7 * time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v; want 1 id forgotten", n, err)
	}
	if s.Len() != 1 {
		t.Errorf("Len after prune = %d, want 1", s.Len())
	}
	if err := s.Check(clientA, "new", t0.Add(4*time.Minute), t0.Add(7*time.Minute)); !errors.Is(
		err, replay.ErrReplay) {
		t.Errorf("an id inside the window was pruned: Check = %v", err)
	}
}

func TestConcurrentSameID(t *testing.T) {
	db, s := open(t, filepath.Join(t.TempDir(), "conf.db"))
	defer db.Close()
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
			errs[i] = s.Check(clientA, id, t0, t0)
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
