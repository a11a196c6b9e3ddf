package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/qapi-az/qapi/appliance/soap"
	"github.com/qapi-az/qapi/internal/sampleis"
)

// TestRequestTemplate checks that the load runs send the bytes request
// builds, for any size and id.
func TestRequestTemplate(t *testing.T) {
	for _, size := range []int{0, 100, 900, 1200, 4096, 10239, 10240} {
		tmpl := newRequestTemplate(size)
		for _, id := range []string{"x", "bench-1764842400000000000-1",
			"bench-1764842400000000000-123456789", "a<b&c", "ü", ""} {
			want := request(size, id)
			got := tmpl.appendRequest([]byte("old"), id)
			if !bytes.Equal(got[3:], want) {
				t.Errorf("size %d, id %q: template gives %d bytes %.300q..., request %d %.300q...",
					size, id, len(got)-3, got[3:], len(want), want)
			}
			if len(want) > len(request(0, id)) && len(want) != size {
				t.Errorf("size %d, id %q: request is %d bytes", size, id, len(want))
			}
		}
	}
}

// TestCheckAnswer checks which answers count as failures.
func TestCheckAnswer(t *testing.T) {
	is := sampleis.New()
	const id = "bench-1-1"
	answer := func(req []byte) (int, []byte) {
		w := httptest.NewRecorder()
		is.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(req)))
		return w.Code, w.Body.Bytes()
	}
	status, ok := answer(request(10240, id))
	if msg := checkAnswer(status, ok, id); msg != "" {
		t.Fatalf("a good answer fails: %s", msg)
	}

	_, notFound := answer(sampleis.GetPersonRequest(sampleis.Header{Client: client,
		Service: service, ID: id}, "0000000"))
	fault := (&soap.Fault{Code: soap.CodeProviderFault, String: "down"}).Envelope(nil)
	tests := []struct {
		name   string
		status int
		body   []byte
		want   string
	}{
		{"HTTP 500", 500, ok, "HTTP 500"},
		{"register's fault with HTTP 200", 200, notFound, "SOAP fault"},
		{"server's fault with HTTP 200", 200, fault, "SOAP fault"},
		{"another request's answer", 200, ok, "message id"},
		{"cut short", 200, ok[:len(ok)-20], "end tag"},
		{"not SOAP", 200, []byte("<a/>"), "not a searchPersons response"},
		{"empty", 200, nil, "not a searchPersons response"},
		{"unprefixed fault", 200, bytes.Replace(ok, []byte("<soapenv:Body>"),
			[]byte(`<soapenv:Body><Fault xmlns="`+soap.NSEnvelope+`"/>`), 1), "SOAP fault"},
	}
	for _, tt := range tests {
		want := id
		if tt.name == "another request's answer" {
			want = "bench-1-2"
		}
		if msg := checkAnswer(tt.status, tt.body, want); !strings.Contains(msg, tt.want) {
			t.Errorf("%s: %q, want a failure saying %q", tt.name, msg, tt.want)
		}
	}
}

// BenchmarkRequest measures building a request the load runs' way.
func BenchmarkRequest(b *testing.B) {
	tmpl := newRequestTemplate(10240)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = tmpl.appendRequest(buf[:0], "bench-1764842400000000000-12345")
	}
}

// BenchmarkCheckAnswer measures the check of an answer.
func BenchmarkCheckAnswer(b *testing.B) {
	is := sampleis.New()
	w := httptest.NewRecorder()
	is.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/",
		bytes.NewReader(request(10240, "bench-1-1"))))
	body := w.Body.Bytes()
	b.ReportAllocs()
	for b.Loop() {
		if msg := checkAnswer(200, body, "bench-1-1"); msg != "" {
			b.Fatal(msg)
		}
	}
}
