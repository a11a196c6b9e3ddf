package server_test

import (
	"bytes"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/proxy"
	"github.com/qapi-az/qapi/appliance/soap"
)

// callHeaders posts a request to the client proxy and returns the status,
// the notice headers and the body of the answer.
func callHeaders(t *testing.T, e *env, req []byte) (int, []string, []byte) {
	t.Helper()
	resp, err := http.Post(e.clientURL(), "text/xml; charset=utf-8", bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Values(proxy.NoticeHeader), b
}

// TestServiceNotices: an information system calling a service with an
// end-of-life (3.12) or disconnection (3.14) notice gets its answer with a
// header naming each notice and its date; once the announced disconnection
// date passes, the client's server refuses the call, and so does the
// provider's server when only its configuration says so, without the
// provider's information system being reached.
func TestServiceNotices(t *testing.T) {
	e := newEnv(t)
	date := time.Now().Add(30 * time.Minute).UTC().Truncate(time.Second)
	eol := globalconf.Notice{Kind: globalconf.NoticeEndOfLife, Service: getPerson,
		Effective: date.Add(time.Hour), Text: "use v2"}
	disc := globalconf.Notice{Kind: globalconf.NoticeDisconnect, Service: getPerson,
		Effective: date, Text: "register retired"}
	other := globalconf.Notice{Kind: globalconf.NoticeDisconnect, Service: searchPersons,
		Effective: date}
	wantEOL := "end-of-life; date=" + date.Add(time.Hour).Format(time.RFC3339) +
		"; service=" + getPerson.String()
	wantDisc := "disconnect; date=" + date.Format(time.RFC3339) + "; service=" +
		getPerson.String()

	e.setConf(func(c, p *globalconf.Conf) {
		c.Notices = []globalconf.Notice{other, eol, disc}
		p.Notices = c.Notices
	})
	status, notices, body := callHeaders(t, e, getPersonReq(e))
	if status != http.StatusOK || faultCode(t, body) != "" {
		t.Fatalf("call before the disconnection date: status %d: %s", status, body)
	}
	if !slices.Equal(notices, []string{wantEOL, wantDisc}) {
		t.Errorf("%s headers = %q, want %q", proxy.NoticeHeader, notices,
			[]string{wantEOL, wantDisc})
	}
	if e.is.Hits() != 1 {
		t.Errorf("register hit %d times, want 1", e.is.Hits())
	}

	for _, tt := range []struct {
		name string
		// move sets the clocks and configurations.
		move     func()
		wantText string
	}{
		{"the client's server, past the announced date", func() {
			e.c.clock.offset.Store(int64(31 * time.Minute))
			e.p.clock.offset.Store(int64(31 * time.Minute))
		}, "AZ/GOV/1001/EDR/getPerson was disconnected on " + date.Format(time.RFC3339)},
		{"the provider's server, listed as disconnected", func() {
			e.c.clock.offset.Store(0)
			e.p.clock.offset.Store(0)
			e.setConf(func(c, p *globalconf.Conf) {
				p.Disconnected = []globalconf.Disconnected{{Service: getPerson,
					Since: date}}
			})
		}, "AZ/GOV/1001/EDR/getPerson was disconnected on " + date.Format(time.RFC3339)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.move()
			e.is.ResetHits()
			status, _, body := callHeaders(t, e, getPersonReq(e))
			if status != http.StatusInternalServerError {
				t.Errorf("status %d, want 500", status)
			}
			checkRefused(t, e, body, soap.CodeDisconnected, tt.wantText)
		})
	}
	e.p.clock.offset.Store(0)
	e.setConf(nil)
	if status, notices, body := callHeaders(t, e, getPersonReq(e)); status != 200 ||
		len(notices) != 0 {
		t.Errorf("without notices: status %d, headers %q: %s", status, notices, body)
	}
}
