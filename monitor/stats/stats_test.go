package stats

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/events"
)

var t0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

// rec makes a record that finished at done after processing for pt, with
// 100 ms spent at the next hop (which 5.3 does not count).
func rec(client, service string, done time.Time, pt time.Duration, fault string) events.Record {
	r := events.Record{
		Role: events.RoleProvider, MessageID: "x", Client: client, Service: service,
		Received: done.Add(-pt - 100*time.Millisecond), Done: done,
		Result: events.ResultOK, RequestBytes: 1000, ResponseBytes: 2000,
	}
	r.Forwarded = r.Received.Add(pt / 2)
	r.Answered = r.Forwarded.Add(100 * time.Millisecond)
	if fault != "" {
		r.Result, r.FaultCode = events.ResultFault, fault
	}
	return r
}

func TestKnownStream(t *testing.T) {
	a := New(0)
	const cl, sv = "AZ/GOV/1/A", "AZ/GOV/2/B/getPerson"
	// 100 exchanges in second 0..9 of one minute, 10 per second: 90 fast
	// (3 ms), 8 slow (700 ms), 2 over the 2 s limit; 5 faults of two codes.
	for i := range 100 {
		pt := 3 * time.Millisecond
		switch {
		case i >= 98:
			pt = 2500 * time.Millisecond
		case i >= 90:
			pt = 700 * time.Millisecond
		}
		fault := ""
		switch {
		case i < 3:
			fault = "Client.AccessDenied"
		case i < 5:
			fault = "Client.Replay"
		}
		done := t0.Add(time.Duration(i/10) * time.Second)
		a.Add(rec(cl, sv, done, pt, fault))
	}
	a.Add(rec("AZ/GOV/3", sv, t0.Add(70*time.Second), time.Millisecond, ""))

	s := a.Snapshot(t0.Add(71 * time.Second))
	if len(s.Rows) != 2 {
		t.Fatalf("rows = %d, want 2", len(s.Rows))
	}
	r := s.Rows[0]
	if r.Client != cl || r.Requests != 100 || r.FaultCount() != 5 ||
		r.Faults["Client.AccessDenied"] != 3 || r.Faults["Client.Replay"] != 2 {
		t.Fatalf("row = %+v", r)
	}
	if r.OverLimit != 2 {
		t.Errorf("OverLimit = %d, want 2 (clause 5.3)", r.OverLimit)
	}
	if r.RequestBytes != 100_000 || r.ResponseBytes != 200_000 {
		t.Errorf("bytes = %d/%d", r.RequestBytes, r.ResponseBytes)
	}
	for q, want := range map[float64]time.Duration{
		0.5: 5 * time.Millisecond, 0.9: 5 * time.Millisecond,
		0.95: time.Second, 0.99: 2500 * time.Millisecond,
	} {
		if got := r.Processing.Quantile(q); got != want {
			t.Errorf("Quantile(%v) = %v, want %v", q, got, want)
		}
	}
	if tot := s.Total(); tot.Requests != 101 || tot.Faults["Client.Replay"] != 2 {
		t.Errorf("Total = %+v", tot)
	}

	mins := a.TakeMinutes(t0.Add(2 * time.Minute))
	if len(mins) != 2 {
		t.Fatalf("minutes = %d, want 2", len(mins))
	}
	if m := mins[0]; m.Requests != 100 || m.Faults != 5 || m.OverLimit != 2 || m.PeakRate != 10 {
		t.Errorf("first minute = %+v", m)
	}
	if m := mins[1]; m.Requests != 1 || !m.Start.Equal(t0.Add(time.Minute)) {
		t.Errorf("second minute = %+v", m)
	}
	if again := a.TakeMinutes(t0.Add(3 * time.Minute)); len(again) != 0 {
		t.Errorf("minutes taken twice: %d", len(again))
	}
}

func TestRate(t *testing.T) {
	a := New(0)
	// 70 requests/s for seconds 0..19: above the 60/s of clause 5.4.
	for s := range 20 {
		for i := range 70 {
			a.Add(rec("AZ/GOV/1", "AZ/GOV/2//svc", t0.Add(time.Duration(s)*time.Second+
				time.Duration(i)*time.Millisecond), time.Millisecond, ""))
		}
	}
	snap := a.Snapshot(t0.Add(20 * time.Second))
	if snap.Rate != 70 || snap.PeakRate != 70 {
		t.Fatalf("Rate = %v, PeakRate = %v; want 70, 70", snap.Rate, snap.PeakRate)
	}
	later := a.Snapshot(t0.Add(5 * time.Minute))
	if later.Rate != 0 || later.PeakRate != 0 {
		t.Fatalf("after 5 idle minutes Rate = %v, PeakRate = %v; want 0", later.Rate,
			later.PeakRate)
	}
}

func BenchmarkAdd(b *testing.B) {
	a := New(0)
	recs := make([]events.Record, 64)
	for i := range recs {
		recs[i] = rec(fmt.Sprintf("AZ/GOV/%d", i%8), "AZ/GOV/2//svc", t0, time.Millisecond, "")
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r := recs[i%len(recs)]
		r.Done = t0.Add(time.Duration(i) * time.Millisecond)
		a.Add(r)
	}
}

// The security server counts dropped records from 0 in each lifetime; the
// station adds the lifetimes up, takes a late smaller report of one as
// nothing new, and keeps the sum when it lists fewer lifetimes.
func TestDroppedAcrossServerLifetimes(t *testing.T) {
	a := New(0)
	first, second := t0, t0.Add(time.Hour)
	steps := []struct {
		since     time.Time
		n         uint64
		want      uint64
		wantGrown bool
	}{
		{first, 5, 5, true},
		{first, 12, 12, true},
		{first, 7, 12, false}, // an older report of the first lifetime
		{second, 3, 15, true}, // the server restarted: 12 + 3, not 12
		{second, 3, 15, false},
		{first, 12, 15, false}, // the first lifetime said again: not counted twice
		{second, 10, 22, true},
	}
	for i, s := range steps {
		now := t0.Add(time.Duration(i+1) * time.Minute)
		a.SetDropped(s.since, s.n, now)
		snap := a.Snapshot(now)
		if snap.Dropped != s.want {
			t.Fatalf("step %d: Dropped = %d, want %d", i, snap.Dropped, s.want)
		}
		if grown := snap.DroppedGrew.Equal(now); grown != s.wantGrown {
			t.Fatalf("step %d: DroppedGrew = %v at %v, want grown %v", i,
				snap.DroppedGrew, now, s.wantGrown)
		}
	}

	// Many more lifetimes: the first ones are folded into Earlier, and a
	// station restored from the totals shows the same sum.
	want := uint64(22)
	for i := range 3 * keptLifetimes {
		a.SetDropped(t0.Add(time.Duration(i+2)*time.Hour), uint64(i+1), t0)
		want += uint64(i + 1)
	}
	tot := a.Totals()
	if len(tot.Dropped.Lifetimes) != keptLifetimes || tot.Dropped.Earlier == 0 {
		t.Errorf("Totals lists %d lifetimes, earlier %d; want %d and the rest folded",
			len(tot.Dropped.Lifetimes), tot.Dropped.Earlier, keptLifetimes)
	}
	b := New(0)
	b.Restore(tot)
	if got := b.Snapshot(t0).Dropped; got != want {
		t.Errorf("restored Dropped = %d, want %d", got, want)
	}
	// The latest lifetime goes on counting in the restored station.
	last := t0.Add(time.Duration(3*keptLifetimes+1) * time.Hour)
	b.SetDropped(last, uint64(3*keptLifetimes)+4, t0)
	if got := b.Snapshot(t0).Dropped; got != want+4 {
		t.Errorf("restored Dropped after 4 more = %d, want %d", got, want+4)
	}
}

// Past its limit the aggregator folds the least recently seen rows into
// the row of OtherKey: the rows stay bounded and the totals whole, also
// through Totals and Restore under a lower limit.
func TestRowsBounded(t *testing.T) {
	a := New(3)
	const sv = "AZ/GOV/2/B/getPerson"
	client := func(i int) string { return fmt.Sprintf("AZ/GOV/%d", 100+i) }
	// Clients 0..9 one exchange each, a minute apart; client 0 again after
	// each, so that it is always the one seen last before the new one.
	at := t0
	for i := range 10 {
		at = at.Add(time.Minute)
		a.Add(rec(client(i), sv, at, time.Millisecond, ""))
		at = at.Add(time.Minute)
		a.Add(rec(client(0), sv, at, time.Millisecond, "Client.AccessDenied"))
	}
	s := a.Snapshot(at)
	var keys []string
	for _, r := range s.Rows {
		keys = append(keys, r.Client)
	}
	want := []string{client(0), client(8), client(9), "other"}
	if !slices.Equal(keys, want) {
		t.Fatalf("rows %v, want %v: client 0 kept, the two seen last, the rest folded",
			keys, want)
	}
	if s.Folded != 7 || s.MaxRows != 3 {
		t.Errorf("Folded = %d, MaxRows = %d; want 7 and 3", s.Folded, s.MaxRows)
	}
	other := s.Rows[3]
	if other.Key != OtherKey || other.Requests != 7 || other.Processing.Count != 7 ||
		other.RequestBytes != 7000 || !other.LastSeen.Equal(t0.Add(15*time.Minute)) {
		t.Errorf("other row %+v, want clients 1..7's 7 exchanges, last at 10:15", other)
	}
	if tot := s.Total(); tot.Requests != 20 || tot.Faults["Client.AccessDenied"] != 10 {
		t.Errorf("Total = %d exchanges, %v; want all 20 and 10 faults", tot.Requests,
			tot.Faults)
	}

	b := New(2)
	b.Restore(a.Totals())
	s = b.Snapshot(at)
	keys = keys[:0]
	for _, r := range s.Rows {
		keys = append(keys, r.Client)
	}
	if want := []string{client(0), client(9), "other"}; !slices.Equal(keys, want) ||
		s.Folded != 8 || s.Total().Requests != 20 || s.Rows[2].Requests != 8 {
		t.Errorf("restored under a limit of 2: rows %v, folded %d, %d exchanges; want "+
			"%v, 8 folded, 20", keys, s.Folded, s.Total().Requests, want)
	}
}

// BenchmarkAddNewKeyAtLimit is the worst case of the row limit: every
// record has a key not seen before, so each folds the least recently seen
// of DefaultMaxRows rows.
func BenchmarkAddNewKeyAtLimit(b *testing.B) {
	a := New(DefaultMaxRows)
	for i := range DefaultMaxRows {
		a.Add(rec(fmt.Sprintf("AZ/GOV/%d", i), "AZ/GOV/2//svc", t0, time.Millisecond, ""))
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		a.Add(rec(fmt.Sprintf("AZ/GOV/%d", DefaultMaxRows+i), "AZ/GOV/2//svc",
			t0.Add(time.Duration(i)*time.Millisecond), time.Millisecond, ""))
	}
}
