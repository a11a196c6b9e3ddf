// Package stats aggregates the security server's exchange records into the
// figures the local monitoring station shows (clause 2.6): counts and
// fault rates per service and client, processing-time histograms against
// the 2 seconds of clause 5.3, and request rates against the 60 per second
// of clause 5.4.
//
// An Aggregator is fed events.Record values and read with Snapshot. It
// holds no message content: only what the record carries.
package stats

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/qapi-az/qapi/appliance/events"
)

// Clause 5.3: a request is answered within 2 seconds, not counting the
// provider's own database and network time.
const ProcessingLimit = 2 * time.Second

// Clause 5.4: the security server handles 60 requests per second.
const RateCapacity = 60.0

// Bounds are the upper bounds of the processing-time histogram buckets;
// a last bucket holds everything slower.
var Bounds = []time.Duration{
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond,
	time.Second, ProcessingLimit, 5 * time.Second,
}

// Histogram counts durations into Bounds.
type Histogram struct {
	Counts [13]uint64    `json:"counts"` // len(Bounds)+1
	Sum    time.Duration `json:"sum"`
	Count  uint64        `json:"count"`
	Max    time.Duration `json:"max"`
}

// Observe adds one duration.
func (h *Histogram) Observe(d time.Duration) {
	i, _ := slices.BinarySearch(Bounds, d)
	h.Counts[i]++
	h.Sum += d
	h.Count++
	h.Max = max(h.Max, d)
}

// Merge adds o into h.
func (h *Histogram) Merge(o *Histogram) {
	for i := range h.Counts {
		h.Counts[i] += o.Counts[i]
	}
	h.Sum += o.Sum
	h.Count += o.Count
	h.Max = max(h.Max, o.Max)
}

// Quantile returns the upper bound of the bucket holding the q-quantile
// (0 < q <= 1), or Max for the open last bucket; 0 when empty. The answer
// is an upper estimate, as for any bucketed histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.Count == 0 {
		return 0
	}
	rank := uint64(q*float64(h.Count) + 0.999999)
	var seen uint64
	for i, c := range h.Counts {
		seen += c
		if seen >= rank {
			if i < len(Bounds) {
				return min(Bounds[i], h.Max)
			}
			return h.Max
		}
	}
	return h.Max
}

// Key names one row of the statistics.
type Key struct {
	Role    events.Role `json:"role"`
	Client  string      `json:"client"`
	Service string      `json:"service"`
}

// Row is the running totals of one Key.
type Row struct {
	Key
	Requests      uint64            `json:"requests"`
	Faults        map[string]uint64 `json:"faults,omitempty"` // by fault code
	OverLimit     uint64            `json:"overLimit"`        // processing > 2 s (5.3)
	Processing    Histogram         `json:"processing"`
	RequestBytes  uint64            `json:"requestBytes"`
	ResponseBytes uint64            `json:"responseBytes"`
	LastSeen      time.Time         `json:"lastSeen"`
}

// FaultCount returns the total number of faults in r.
func (r *Row) FaultCount() uint64 {
	var n uint64
	for _, c := range r.Faults {
		n += c
	}
	return n
}

// merge adds o into r; r keeps its key.
func (r *Row) merge(o *Row) {
	r.Requests += o.Requests
	if len(o.Faults) > 0 && r.Faults == nil {
		r.Faults = map[string]uint64{}
	}
	for c, n := range o.Faults {
		r.Faults[c] += n
	}
	r.OverLimit += o.OverLimit
	r.Processing.Merge(&o.Processing)
	r.RequestBytes += o.RequestBytes
	r.ResponseBytes += o.ResponseBytes
	if o.LastSeen.After(r.LastSeen) {
		r.LastSeen = o.LastSeen
	}
}

// OtherKey is the key of the row into which an Aggregator folds the rows
// it no longer keeps. No record has it: "other" is no identifier.
var OtherKey = Key{Role: "other", Client: "other", Service: "other"}

// DefaultMaxRows is how many rows an Aggregator keeps when New is given
// no limit.
const DefaultMaxRows = 1000

// Minute is the totals of one minute, the unit of kept history.
type Minute struct {
	Start      time.Time `json:"start"`
	Requests   uint64    `json:"requests"`
	Faults     uint64    `json:"faults"`
	OverLimit  uint64    `json:"overLimit"`
	Processing Histogram `json:"processing"`
	// PeakRate is the busiest second of the minute, requests/s.
	PeakRate uint64 `json:"peakRate"`
}

// rateSeconds is how many one-second buckets the rate window keeps.
const rateSeconds = 60

// Aggregator accumulates records. Safe for concurrent use.
//
// It keeps at most a set number of rows: past it, the row seen least
// recently is folded into the row of OtherKey, so that the totals stay
// whole while the memory, the history file and the page stay bounded.
type Aggregator struct {
	mu      sync.Mutex
	maxRows int
	rows    map[Key]*Row
	other   *Row   // nil until a row is folded
	folded  uint64 // rows folded into other
	minute  Minute
	closed  []Minute // minutes closed since the last TakeMinutes
	seconds [rateSeconds]struct {
		unix int64
		n    uint64
	}
	dropped Dropped
}

// New returns an empty Aggregator that keeps at most maxRows rows besides
// the row of OtherKey; DefaultMaxRows when maxRows <= 0.
func New(maxRows int) *Aggregator {
	if maxRows <= 0 {
		maxRows = DefaultMaxRows
	}
	return &Aggregator{maxRows: maxRows, rows: map[Key]*Row{}}
}

// fold folds rows into other, least recently seen first, until no more
// than keep are left.
func (a *Aggregator) fold(keep int) {
	for len(a.rows) > keep {
		var oldest *Row
		for _, r := range a.rows {
			if oldest == nil || r.LastSeen.Before(oldest.LastSeen) ||
				r.LastSeen.Equal(oldest.LastSeen) && keyLess(r.Key, oldest.Key) {
				oldest = r
			}
		}
		if a.other == nil {
			a.other = &Row{Key: OtherKey}
		}
		a.other.merge(oldest)
		a.folded++
		delete(a.rows, oldest.Key)
	}
}

func keyLess(x, y Key) bool { return compareKeys(x, y) < 0 }

// compareKeys orders keys by role, service, client.
func compareKeys(x, y Key) int {
	switch {
	case x.Role != y.Role:
		return strings.Compare(string(x.Role), string(y.Role))
	case x.Service != y.Service:
		return strings.Compare(x.Service, y.Service)
	}
	return strings.Compare(x.Client, y.Client)
}

// Restore seeds the aggregator with the totals kept from an earlier run
// of the station. Call it before Add and SetDropped.
func (a *Aggregator) Restore(t Totals) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range t.Rows {
		r := t.Rows[i]
		if r.Key == OtherKey {
			a.other = &r
			continue
		}
		a.rows[r.Key] = &r
	}
	a.folded = t.Folded
	a.fold(a.maxRows) // the limit may have been lowered since
	a.dropped = t.Dropped
	a.dropped.Lifetimes = slices.Clone(t.Dropped.Lifetimes)
}

// Add counts one record, attributing it to the minute and second in which
// the exchange finished.
func (a *Aggregator) Add(rec events.Record) {
	a.mu.Lock()
	defer a.mu.Unlock()

	k := Key{Role: rec.Role, Client: rec.Client, Service: rec.Service}
	row := a.rows[k]
	if row == nil {
		a.fold(a.maxRows - 1)
		row = &Row{Key: k}
		a.rows[k] = row
	}
	pt := rec.ProcessingTime()
	row.Requests++
	row.Processing.Observe(pt)
	row.RequestBytes += uint64(rec.RequestBytes)
	row.ResponseBytes += uint64(rec.ResponseBytes)
	row.LastSeen = rec.Done
	if rec.Result == events.ResultFault {
		if row.Faults == nil {
			row.Faults = map[string]uint64{}
		}
		row.Faults[rec.FaultCode]++
	}
	if pt > ProcessingLimit {
		row.OverLimit++
	}

	a.rollMinute(rec.Done)
	a.minute.Requests++
	a.minute.Processing.Observe(pt)
	if rec.Result == events.ResultFault {
		a.minute.Faults++
	}
	if pt > ProcessingLimit {
		a.minute.OverLimit++
	}

	sec := rec.Done.Unix()
	b := &a.seconds[sec%rateSeconds]
	if b.unix != sec {
		b.unix, b.n = sec, 0
	}
	b.n++
	a.minute.PeakRate = max(a.minute.PeakRate, b.n)
}

// rollMinute closes the current minute when t is in a later one.
func (a *Aggregator) rollMinute(t time.Time) {
	start := t.Truncate(time.Minute)
	if a.minute.Start.IsZero() {
		a.minute.Start = start
		return
	}
	if start.After(a.minute.Start) {
		a.closed = append(a.closed, a.minute)
		a.minute = Minute{Start: start}
	}
}

// SetDropped records that the security server's lifetime that started at
// since (events.Message.Since) has dropped n records on the way to the
// station so far, as seen at now.
func (a *Aggregator) SetDropped(since time.Time, n uint64, now time.Time) {
	a.mu.Lock()
	a.dropped.set(since, n, now)
	a.mu.Unlock()
}

// keptLifetimes is how many lifetimes of the security server Dropped lists
// before it folds the first seen into Earlier.
const keptLifetimes = 16

// Lifetime is the dropped count of one lifetime of the security server.
type Lifetime struct {
	// Since is when the server's count started; zero from a server that
	// does not say, whose lifetimes then cannot be told apart.
	Since time.Time `json:"since,omitzero"`
	Count uint64    `json:"count"`
}

// Dropped counts the records the security server dropped on the way to
// the station, over every lifetime of the server: each lifetime counts
// from 0, and the station adds them up.
type Dropped struct {
	// Lifetimes are the last lifetimes seen, in the order first seen;
	// Earlier is the sum of those before them.
	Lifetimes []Lifetime `json:"lifetimes,omitempty"`
	Earlier   uint64     `json:"earlier,omitempty"`
	// Grew is when the station last saw the total grow; zero if never.
	Grew time.Time `json:"grew,omitzero"`
}

// Total returns the records dropped over all lifetimes.
func (d *Dropped) Total() uint64 {
	n := d.Earlier
	for _, l := range d.Lifetimes {
		n += l.Count
	}
	return n
}

func (d *Dropped) set(since time.Time, n uint64, now time.Time) {
	for i := range d.Lifetimes {
		l := &d.Lifetimes[i]
		if !l.Since.Equal(since) {
			continue
		}
		// A lifetime's count only grows; a smaller one is an older report
		// arriving late.
		if n > l.Count {
			l.Count, d.Grew = n, now
		}
		return
	}
	d.Lifetimes = append(d.Lifetimes, Lifetime{Since: since, Count: n})
	if n > 0 {
		d.Grew = now
	}
	if k := len(d.Lifetimes) - keptLifetimes; k > 0 {
		for _, l := range d.Lifetimes[:k] {
			d.Earlier += l.Count
		}
		d.Lifetimes = slices.Delete(d.Lifetimes, 0, k)
	}
}

// Totals is what of an Aggregator outlives a restart of the station:
// the running rows and the dropped count.
type Totals struct {
	// Rows include the row of OtherKey when rows were folded, and Folded
	// is how many were.
	Rows    []Row   `json:"rows"`
	Folded  uint64  `json:"folded,omitempty"`
	Dropped Dropped `json:"dropped"`
}

// Totals returns a copy of the running totals, for the store.
func (a *Aggregator) Totals() Totals {
	a.mu.Lock()
	defer a.mu.Unlock()
	t := Totals{Rows: a.copyRows(), Folded: a.folded, Dropped: a.dropped}
	t.Dropped.Lifetimes = slices.Clone(a.dropped.Lifetimes)
	return t
}

// TakeMinutes returns the minutes closed before now (including the
// current one when now is past it) and forgets them; the caller stores
// them as history.
func (a *Aggregator) TakeMinutes(now time.Time) []Minute {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.minute.Start.IsZero() && now.Truncate(time.Minute).After(a.minute.Start) {
		a.closed = append(a.closed, a.minute)
		a.minute = Minute{}
	}
	out := a.closed
	a.closed = nil
	return out
}

// Snapshot is a consistent copy of the aggregator's state.
type Snapshot struct {
	// Rows are sorted by role, service and client, and end with the row
	// of OtherKey when rows were folded into it: Folded of them, the least
	// recently seen, to keep no more than MaxRows others.
	Rows    []Row  `json:"rows"`
	Folded  uint64 `json:"folded"`
	MaxRows int    `json:"maxRows"`
	// Current is the minute in progress.
	Current Minute `json:"current"`
	// Rate is the mean requests/s over the last 10 full seconds, and
	// PeakRate the busiest second of the last 60 (clause 5.4).
	Rate     float64 `json:"rate"`
	PeakRate uint64  `json:"peakRate"`
	// Dropped is the records the security server dropped on the way to
	// the station over all its lifetimes, and DroppedGrew when the
	// station last saw that total grow.
	Dropped     uint64    `json:"dropped"`
	DroppedGrew time.Time `json:"droppedGrew,omitzero"`
}

// Total returns the sum of all rows.
func (s *Snapshot) Total() Row {
	var t Row
	t.Faults = map[string]uint64{}
	for i := range s.Rows {
		r := &s.Rows[i]
		t.Requests += r.Requests
		t.OverLimit += r.OverLimit
		t.Processing.Merge(&r.Processing)
		for c, n := range r.Faults {
			t.Faults[c] += n
		}
	}
	return t
}

// copyRows copies the rows, sorted, the row of OtherKey last.
func (a *Aggregator) copyRows() []Row {
	rows := make([]Row, 0, len(a.rows)+1)
	for _, r := range a.rows {
		c := *r
		c.Faults = maps.Clone(r.Faults)
		rows = append(rows, c)
	}
	slices.SortFunc(rows, func(x, y Row) int { return compareKeys(x.Key, y.Key) })
	if a.other != nil {
		c := *a.other
		c.Faults = maps.Clone(a.other.Faults)
		rows = append(rows, c)
	}
	return rows
}

// Snapshot copies the state at now.
func (a *Aggregator) Snapshot(now time.Time) Snapshot {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := Snapshot{Rows: a.copyRows(), Folded: a.folded, MaxRows: a.maxRows,
		Current: a.minute, Dropped: a.dropped.Total(), DroppedGrew: a.dropped.Grew}
	cur := now.Unix()
	var last10 uint64
	for _, b := range a.seconds {
		age := cur - b.unix
		if age < 0 || age >= rateSeconds {
			continue
		}
		s.PeakRate = max(s.PeakRate, b.n)
		if age >= 1 && age <= 10 {
			last10 += b.n
		}
	}
	s.Rate = float64(last10) / 10
	return s
}
