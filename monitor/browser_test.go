package monitor

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/events"
	"github.com/qapi-az/qapi/internal/browser"
)

// The status page as a person's browser shows it: alerts on top, charts
// drawn, the services table filled. Set QAPI_SCREENSHOTS to a directory to
// keep the screenshot.
func TestStatusPageInBrowser(t *testing.T) {
	browser.Need(t)
	dir := t.TempDir()
	st, stop := startStation(t, dir, time.Now)
	defer stop()
	now := time.Now()
	// Twenty minutes of traffic, faults in some, one slow minute.
	for m := 20; m >= 0; m-- {
		for i := range 30 + m {
			done := now.Add(-time.Duration(m) * time.Minute).Add(time.Duration(i) * time.Second)
			fault := ""
			if m%7 == 0 && i < 5 {
				fault = "Client.AccessDenied"
			}
			r := record(i, done, fault)
			if m == 3 && i < 10 {
				r.Received = r.Done.Add(-2500 * time.Millisecond)
			}
			st.ingest(&events.Message{Type: events.TypeExchange, Exchange: &r})
		}
		st.flush()
	}
	st.ingest(&events.Message{Type: events.TypeStatus, Status: &events.Status{
		GlobalConfSerial: 4, GlobalConfIssued: now.Add(-time.Minute),
		GlobalConfExpires: now.Add(time.Hour),
		Links: []events.LinkStatus{{Role: "external", Name: "eth1", Up: true, SpeedMbps: 100,
			FullDuplex: true}, {Role: "internal", Name: "eth0", Up: true, SpeedMbps: 1000,
			FullDuplex: true}}}})

	srv := httptest.NewServer(st.Handler())
	defer srv.Close()

	dom := browser.DumpDOM(t, srv.URL+"/")
	for _, want := range []string{`data-alert="link_speed"`, "AZ/GOV/2001/POP/getPerson/v1",
		`class="bar red"`, "2 s limit", "60/s capacity"} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered page lacks %q", want)
		}
	}
	if n := strings.Count(dom, "<rect"); n < 40 {
		t.Errorf("charts drew %d bars, want one per minute in each chart", n)
	}

	out := t.TempDir()
	if d := os.Getenv("QAPI_SCREENSHOTS"); d != "" {
		out = d
	}
	browser.Screenshot(t, srv.URL+"/", filepath.Join(out, "monitor-status.png"), 1280, 1400)
}
