package monitor

import (
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/events"
)

// The events_dropped alert is raised while the dropped total grows and
// clears once it has not grown for Thresholds.DropQuiet; the total stays.
func TestDroppedAlertClearsWhenQuiet(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	clock := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	st, err := New(Config{Socket: filepath.Join(dir, "m.sock"),
		History: filepath.Join(dir, "m.db"), Disk: dir, Now: now,
		Thresholds: Thresholds{DropQuiet: 10 * time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	since := clock.Add(-time.Hour)
	dropped := func(n uint64) {
		st.ingest(&events.Message{Type: events.TypeDropped, Dropped: n, Since: since})
	}
	check := func(step string, wantAlert bool, wantTotal uint64) {
		t.Helper()
		r, err := st.Report()
		if err != nil {
			t.Fatal(err)
		}
		raised := slices.ContainsFunc(r.Alerts, func(a Alert) bool {
			return a.Name == "events_dropped"
		})
		if raised != wantAlert || r.Stats.Dropped != wantTotal {
			t.Errorf("%s: events_dropped raised %v with %d dropped; want %v with %d",
				step, raised, r.Stats.Dropped, wantAlert, wantTotal)
		}
	}

	check("nothing dropped", false, 0)
	dropped(5)
	check("just dropped", true, 5)
	advance(9 * time.Minute)
	dropped(5) // the same total reported again is nothing new
	check("9 minutes later, no new drop", true, 5)
	advance(time.Minute)
	check("10 minutes after the last drop", false, 5)
	advance(time.Hour)
	check("an hour later", false, 5)
	dropped(7)
	check("two more dropped", true, 7)
	advance(10 * time.Minute)
	check("quiet again", false, 7)

	// A new lifetime of the server that has dropped nothing yet raises
	// nothing.
	since = clock
	dropped(0)
	check("a restarted server that dropped nothing", false, 7)
}
