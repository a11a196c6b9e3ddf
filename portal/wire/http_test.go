package wire

import (
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func TestReadAnswer(t *testing.T) {
	answer := func(status int, body string) *http.Response {
		return &http.Response{StatusCode: status, Status: http.StatusText(status),
			Body: io.NopCloser(strings.NewReader(body))}
	}
	tests := []struct {
		name    string
		resp    *http.Response
		wantErr string
		wantID  uint64
	}{
		{"ok", answer(200, `{"id": 7}`), "", 7},
		{"API error", answer(400, `{"error":"member AZ/GOV/1 is blocked"}`),
			"member AZ/GOV/1 is blocked", 0},
		{"plain error", answer(502, "bad gateway\n"), "the portal answered", 0},
		{"not JSON", answer(200, `<html>`), "not the expected JSON", 0},
		{"too long", answer(200, `{"id": 7}`+strings.Repeat(" ", 100)), "over 100 bytes", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st CertRequestStatus
			err := ReadAnswer(tt.resp, "the portal", 100, &st)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" &&
				(err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("ReadAnswer = %v, want %q", err, tt.wantErr)
			}
			if st.ID != tt.wantID {
				t.Errorf("id = %d, want %d", st.ID, tt.wantID)
			}
		})
	}
	var raw json.RawMessage
	if err := ReadAnswer(answer(200, `[1]`), "x", 100, &raw); err != nil || string(raw) != "[1]" {
		t.Errorf("raw answer = %q, %v", raw, err)
	}
}

func TestBearerOnly(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})
	tests := []struct {
		token, header string
		want          int
	}{
		{"secret", "Bearer secret", 200},
		{"secret", "", 401},
		{"secret", "Bearer secre", 401},
		{"secret", "Bearer secret ", 401},
		{"secret", "secret", 401},
		// An unset token must not let an empty bearer in.
		{"", "Bearer ", 401},
		{"", "", 401},
	}
	for _, tt := range tests {
		h := BearerOnly(tt.token, "test", "wrong token", ok)
		r := httptest.NewRequest("GET", "/api/status", nil)
		if tt.header != "" {
			r.Header.Set("Authorization", tt.header)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tt.want {
			t.Errorf("token %q, header %q: %d, want %d", tt.token, tt.header, w.Code, tt.want)
		}
		if w.Code == 401 && !strings.Contains(w.Body.String(), `"error":"wrong token"`) {
			t.Errorf("refusal body %q", w.Body)
		}
	}
}

func TestSetCertHosts(t *testing.T) {
	var tmpl x509.Certificate
	SetCertHosts(&tmpl, []string{"127.0.0.1", "localhost", "::1", "ss1.example.az"})
	if !slices.Equal(tmpl.DNSNames, []string{"localhost", "ss1.example.az"}) {
		t.Errorf("DNS names = %v", tmpl.DNSNames)
	}
	if len(tmpl.IPAddresses) != 2 || !tmpl.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) ||
		!tmpl.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("IP addresses = %v", tmpl.IPAddresses)
	}
}
