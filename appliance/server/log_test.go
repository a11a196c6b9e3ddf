package server_test

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/qapi-az/qapi/appliance/soap"
)

// TestLogBeforeRelease proves clause 2.2.2's order: a request the message
// log cannot store is not passed on, and a response it cannot store is
// withheld.
func TestLogBeforeRelease(t *testing.T) {
	for _, tt := range []struct {
		name     string
		breakLog func(e *env)
		wantHits int64
		wantCode string
	}{
		{"client's log fails: request not sent", func(e *env) {
			e.c.srv.MessageLog().Close()
		}, 0, soap.CodeLogFailure},
		{"provider's log fails: information system not called", func(e *env) {
			e.p.srv.MessageLog().Close()
		}, 0, soap.CodeLogFailure},
		{"provider's log fails after the request: response withheld", func(e *env) {
			f := func() { e.p.srv.MessageLog().Close() }
			e.onIS.Store(&f)
		}, 1, soap.CodeLogFailure},
		{"client's log fails after the request: response withheld", func(e *env) {
			f := func() { e.c.srv.MessageLog().Close() }
			e.onIS.Store(&f)
		}, 1, soap.CodeLogFailure},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			tt.breakLog(e)
			p := e.is.Persons()[5]
			req := getPersonReqFor(e, p.FIN)
			status, body := call(t, http.DefaultClient, e.clientURL(), req)
			if status != http.StatusInternalServerError || faultCode(t, body) != tt.wantCode {
				t.Fatalf("status %d, want a %s fault: %s", status, tt.wantCode, body)
			}
			if e.is.Hits() != tt.wantHits {
				t.Errorf("register reached %d times, want %d", e.is.Hits(), tt.wantHits)
			}
			if bytes.Contains(body, []byte(p.Surname)) {
				t.Error("the response was released although the log did not store it")
			}
		})
	}
}
