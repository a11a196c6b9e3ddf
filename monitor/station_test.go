package monitor

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/events"
)

func record(i int, done time.Time, fault string) events.Record {
	r := events.Record{
		Role: events.RoleClient, MessageID: "msg-" + string(rune('a'+i%26)),
		Client: "AZ/GOV/1001/REG", Service: "AZ/GOV/2001/POP/getPerson/v1",
		Received: done.Add(-30 * time.Millisecond), Forwarded: done.Add(-25 * time.Millisecond),
		Answered: done.Add(-5 * time.Millisecond), Done: done,
		RequestBytes: 800, ResponseBytes: 1500, Result: events.ResultOK,
	}
	if fault != "" {
		r.Result, r.FaultCode = events.ResultFault, fault
	}
	return r
}

func startStation(t *testing.T, dir string, now func() time.Time) (*Station, func()) {
	t.Helper()
	st, err := New(Config{Socket: filepath.Join(dir, "m.sock"),
		History: filepath.Join(dir, "m.db"), Disk: dir, Now: now,
		FlushInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx) }()
	return st, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		st.Close()
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The security server goes on while the monitor is down; what the sink
// dropped is reported once the monitor is back, and nothing is counted
// twice or lost without being counted.
func TestMonitorDownThenBack(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	sink := events.NewSocketSink(filepath.Join(dir, "m.sock"), events.SocketOptions{
		Buffer: 100, StatusInterval: 20 * time.Millisecond,
		Status: func() events.Status {
			return events.Status{GlobalConfSerial: 3, GlobalConfIssued: now.Add(-time.Minute),
				GlobalConfExpires: now.Add(time.Hour),
				Links: []events.LinkStatus{{Role: "external", Name: "eth1", Up: true,
					SpeedMbps: 100, FullDuplex: true}}}
		}})
	defer sink.Close()

	for i := range 1000 {
		sink.Emit(record(i, now, ""))
	}
	st, stop := startStation(t, dir, time.Now)
	defer stop()
	waitFor(t, "the buffered records to reach the monitor", func() bool {
		return sink.Sent() == 100
	})
	for i := range 50 {
		sink.Emit(record(i, now, "Client.AccessDenied"))
	}
	waitFor(t, "all records accounted for", func() bool {
		r, err := st.Report()
		return err == nil && r.Received+r.Stats.Dropped == 1050 && r.Server != nil
	})
	r, err := st.Report()
	if err != nil {
		t.Fatal(err)
	}
	if r.Stats.Dropped != 900 || r.Received != 150 {
		t.Fatalf("received %d, dropped %d; want 150 and 900", r.Received, r.Stats.Dropped)
	}
	names := map[string]bool{}
	for _, a := range r.Alerts {
		names[a.Name] = true
	}
	for _, want := range []string{"events_dropped", "link_speed", "fault_rate"} {
		if !names[want] {
			t.Errorf("alert %s missing from %+v", want, r.Alerts)
		}
	}
	if names["server_silent"] || names["globalconf_expired"] {
		t.Errorf("unexpected alerts %+v", r.Alerts)
	}
}

func TestMetricsAndPage(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	st, stop := startStation(t, dir, time.Now)
	defer stop()
	for i := range 10 {
		fault := ""
		if i < 2 {
			fault = "Client.Replay"
		}
		st.ingest(&events.Message{Type: events.TypeExchange, Exchange: ptr(record(i, now, fault))})
	}
	st.ingest(&events.Message{Type: events.TypeStatus, Status: &events.Status{
		Certificates:     []events.CertStatus{{Purpose: "signing", NotAfter: now.Add(72 * time.Hour)}},
		GlobalConfSerial: 9, GlobalConfIssued: now.Add(-2 * time.Hour),
		GlobalConfExpires: now.Add(-time.Hour),
		MessageLogFault:   "message log damaged: /perm/messagelog.db: entry 3: bad seal"}})

	srv := httptest.NewServer(st.Handler())
	defer srv.Close()
	get := func(path string) string {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s\n%s", path, resp.Status, b)
		}
		return string(b)
	}
	metrics := get("/metrics")
	for _, want := range []string{
		`qapi_exchanges_total{role="client",client="AZ/GOV/1001/REG",` +
			`service="AZ/GOV/2001/POP/getPerson/v1"} 10`,
		`qapi_faults_total{role="client",client="AZ/GOV/1001/REG",` +
			`service="AZ/GOV/2001/POP/getPerson/v1",code="Client.Replay"} 2`,
		`qapi_processing_seconds_bucket{role="client",client="AZ/GOV/1001/REG",` +
			`service="AZ/GOV/2001/POP/getPerson/v1",le="0.01"} 10`,
		`qapi_alert{name="globalconf_expired",severity="critical"} 1`,
		`qapi_alert{name="message_log_damaged",severity="critical"} 1`,
		`qapi_alert{name="certificate_expiry",severity="warning"} 1`,
		`qapi_globalconf_expires_in_seconds -`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	html := get("/")
	for _, want := range []string{`data-alert="globalconf_expired"`, "AZ/GOV/2001/POP/getPerson/v1",
		"2 (20.0%)", "<svg",
		`<tr data-fault="Client.Replay"><td>client</td>`, "<td class=\"num\">20.0%</td>"} {
		if !strings.Contains(html, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if js := get("/api/status"); !strings.Contains(js, `"globalConfSerial":9`) {
		t.Errorf("JSON status lacks the configuration serial: %s", js)
	}
}

func ptr[T any](v T) *T { return &v }

// The real security server under load across a stop and a restart of the
// station is appliance/server's TestMonitorStoppedThenRestarted, and a
// station that accepts the connection but never reads is its
// TestMonitorThatDoesNotRead.

// The station stopped, then restarted on the same history, while the
// security server goes on: the totals from before the stop are kept, and
// what the server dropped meanwhile is counted and shown on the page.
func TestMonitorStoppedThenRestarted(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "m.sock")
	sink := events.NewSocketSink(sock, events.SocketOptions{Buffer: 10,
		StatusInterval: 20 * time.Millisecond})
	defer sink.Close()

	first, stopFirst := startStation(t, dir, time.Now)
	for i := range 20 {
		waitFor(t, "the sink to keep up", func() bool { return sink.Sent() == uint64(i) })
		sink.Emit(record(i, time.Now(), ""))
	}
	waitFor(t, "20 records at the first station", func() bool {
		return first.received.Load() == 20
	})
	stopFirst()

	// The station is down: ten records wait, the rest are dropped.
	for i := range 100 {
		sink.Emit(record(i, time.Now(), "Client.AccessDenied"))
	}
	waitFor(t, "the sink to drop what it cannot hold", func() bool {
		return sink.Dropped() >= 90
	})

	second, stopSecond := startStation(t, dir, time.Now)
	defer stopSecond()
	var r *Report
	waitFor(t, "every record accounted for", func() bool {
		var err error
		r, err = second.Report()
		return err == nil && r.Received+r.Stats.Dropped == 100 && r.Received > 0
	})
	if r.Stats.Dropped != sink.Dropped() {
		t.Errorf("station shows %d dropped, the server dropped %d", r.Stats.Dropped,
			sink.Dropped())
	}
	if got, want := r.Stats.Total().Requests, 20+r.Received; got != want {
		t.Errorf("total exchanges %d after the restart, want %d (20 before it)", got, want)
	}

	var page strings.Builder
	if err := WritePage(&page, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`data-alert="events_dropped"`,
		fmt.Sprintf("%d exchange records did not reach the monitor", r.Stats.Dropped)} {
		if !strings.Contains(page.String(), want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// Clause 2.7: the station tries its Deny paths itself and shows the
// outcome; a path it can open raises a critical alert.
func TestConfinementCheckedWhileRunning(t *testing.T) {
	dir := t.TempDir()
	readable := filepath.Join(dir, "messagelog.db")
	if err := os.WriteFile(readable, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	gone := filepath.Join(t.TempDir(), "missing", "keys")
	st, err := New(Config{Socket: filepath.Join(dir, "m.sock"),
		History: filepath.Join(dir, "m.db"), Disk: dir, Deny: []string{readable, gone}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.checkConfinement()
	r, err := st.Report()
	if err != nil {
		t.Fatal(err)
	}
	want := []PathCheck{{Path: readable, Opened: readable}, {Path: gone, Refused: true}}
	if !slices.Equal(r.Confinement, want) {
		t.Fatalf("Confinement = %+v, want %+v", r.Confinement, want)
	}
	var page, metrics strings.Builder
	WritePage(&page, r)
	WriteMetrics(&metrics, r)
	if !strings.Contains(page.String(), `data-alert="confinement_broken"`) {
		t.Errorf("page shows no confinement alert")
	}
	for _, w := range []string{`qapi_confinement_refused{path="` + readable + `"} 0`,
		`qapi_confinement_refused{path="` + gone + `"} 1`} {
		if !strings.Contains(metrics.String(), w) {
			t.Errorf("metrics lack %s", w)
		}
	}
}

// The security server restarted counts its dropped records from 0 again:
// the station adds its lifetimes up, also across a restart of the station.
func TestDroppedSummedAcrossServerRestarts(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "m.sock")
	// dropAndReport runs one lifetime of the server: with no station
	// reachable it drops all but two of ten records, and it reports them to
	// the station once one listens. A running station st is made
	// unreachable meanwhile by moving its socket aside.
	dropAndReport := func(st *Station, want uint64) {
		t.Helper()
		if st != nil {
			if err := os.Rename(sock, sock+".aside"); err != nil {
				t.Fatal(err)
			}
		}
		sink := events.NewSocketSink(sock, events.SocketOptions{Buffer: 2})
		defer sink.Close()
		for i := range 10 {
			sink.Emit(record(i, time.Now(), ""))
		}
		if d := sink.Dropped(); d != 8 {
			t.Fatalf("sink dropped %d, want 8", d)
		}
		if st == nil {
			var stop func()
			st, stop = startStation(t, dir, time.Now)
			defer stop()
		} else if err := os.Rename(sock+".aside", sock); err != nil {
			t.Fatal(err)
		}
		waitFor(t, fmt.Sprintf("the station to show %d dropped", want), func() bool {
			r, err := st.Report()
			return err == nil && r.Stats.Dropped == want && sink.Sent() == 2
		})
	}

	dropAndReport(nil, 8)
	dropAndReport(nil, 16) // a restarted server, a restarted station
	st, stop := startStation(t, dir, time.Now)
	defer stop()
	dropAndReport(st, 24) // a restarted server, the same station
	if r, err := st.Report(); err != nil || r.Received != 2 {
		t.Fatalf("received %d (%v), want the 2 records of the last lifetime", r.Received, err)
	}
}

// Past Config.MaxRows the rows seen least recently are folded into one
// "other" row, which the page and the metrics show and a restart keeps.
func TestRowsFoldedIntoOther(t *testing.T) {
	dir := t.TempDir()
	open := func() *Station {
		st, err := New(Config{Socket: filepath.Join(dir, "m.sock"),
			History: filepath.Join(dir, "m.db"), Disk: dir, MaxRows: 2})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := open()
	now := time.Now()
	for i := range 5 {
		r := record(i, now.Add(time.Duration(i)*time.Second), "")
		r.Client = fmt.Sprintf("AZ/GOV/%d/REG", 1001+i)
		st.ingest(&events.Message{Type: events.TypeExchange, Exchange: &r})
	}
	if _, err := st.Report(); err != nil { // saves the totals
		t.Fatal(err)
	}
	st.Close()

	st = open()
	defer st.Close()
	r, err := st.Report()
	if err != nil {
		t.Fatal(err)
	}
	var page, metrics strings.Builder
	if err := WritePage(&page, r); err != nil {
		t.Fatal(err)
	}
	if err := WriteMetrics(&metrics, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`qapi_exchanges_total{role="other",client="other",service="other"} 3`,
		`qapi_exchanges_total{role="client",client="AZ/GOV/1005/REG",`,
		"qapi_rows_folded_total 3", "qapi_rows_max 2",
	} {
		if !strings.Contains(metrics.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(metrics.String(), `client="AZ/GOV/1001/REG"`) {
		t.Errorf("metrics still show the first client, which was folded")
	}
	for _, want := range []string{`data-folded="3"`, "<td>other</td>",
		"to keep at most 2 apart", "Exchanges<b>5</b>"} {
		if !strings.Contains(page.String(), want) {
			t.Errorf("page lacks %q", want)
		}
	}
}
