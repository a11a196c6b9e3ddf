package store

import (
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/qapi-az/qapi/monitor/stats"
)

func TestRetentionMergeAndRows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "monitor.db")
	s, err := Open(path, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	var mins []stats.Minute
	for i := range 120 {
		mins = append(mins, stats.Minute{Start: t0.Add(time.Duration(i) * time.Minute),
			Requests: uint64(i)})
	}
	rows := stats.Totals{Rows: []stats.Row{{Key: stats.Key{Client: "AZ/GOV/1",
		Service: "AZ/GOV/2//s"}, Requests: 7}},
		Dropped: stats.Dropped{Lifetimes: []stats.Lifetime{{Since: t0, Count: 3}},
			Earlier: 4, Grew: t0}}
	now := t0.Add(120 * time.Minute)
	if err := s.Save(now, mins, rows); err != nil {
		t.Fatal(err)
	}
	// The last minute again, as after a restart within it: merged, not lost.
	if err := s.Save(now, []stats.Minute{{Start: mins[119].Start, Requests: 5,
		PeakRate: 9}}, rows); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(path, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Minutes(time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 60 {
		t.Fatalf("kept %d minutes, want the last 60 (retention one hour)", len(got))
	}
	if last := got[len(got)-1]; last.Requests != 119+5 || last.PeakRate != 9 {
		t.Errorf("merged minute = %+v, want 124 requests, peak 9", last)
	}
	r, err := s.Totals()
	if err != nil || len(r.Rows) != 1 || r.Rows[0].Requests != 7 {
		t.Errorf("Totals = %+v, %v", r, err)
	}
	if r.Dropped.Total() != 7 || !r.Dropped.Grew.Equal(t0) {
		t.Errorf("dropped = %+v, want 7 grown at %v", r.Dropped, t0)
	}
}

// A history file written when only the rows were kept still gives them.
func TestTotalsFromRowsAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "monitor.db")
	s, err := Open(path, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRows).Put(keyRows,
			[]byte(`[{"role":"client","client":"AZ/GOV/1","service":"","requests":9}]`))
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Totals()
	if err != nil || len(r.Rows) != 1 || r.Rows[0].Requests != 9 || r.Dropped.Total() != 0 {
		t.Fatalf("Totals = %+v, %v; want the one row of 9", r, err)
	}
}
