package sampleis_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/internal/sampleis"
)

// discard is a ResponseWriter that keeps only the status and the size, so
// that the benchmarks measure the register rather than a recorder.
type discard struct {
	h      http.Header
	status int
	n      int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) WriteHeader(status int)      { d.status = status }
func (d *discard) Write(b []byte) (int, error) { d.n += len(b); return len(b), nil }

// benchServe serves body to the register b.N times, as qapi-bench sends
// it, and fails on any answer but 200.
func benchServe(b *testing.B, body []byte) {
	is := sampleis.New()
	r, err := http.NewRequest(http.MethodPost, "/", nil)
	if err != nil {
		b.Fatal(err)
	}
	rd := bytes.NewReader(body)
	w := &discard{h: http.Header{}}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		r.Body = readCloser{rd}
		r.ContentLength = int64(len(body))
		w.status, w.n = 200, 0
		is.ServeHTTP(w, r)
		if w.status != 200 || w.n == 0 {
			b.Fatalf("status %d, %d bytes", w.status, w.n)
		}
	}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// benchHeader is the header qapi-bench sends.
var benchHeader = sampleis.Header{
	Client: ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "2002",
		SubsystemCode: "POLICE"},
	Service: ident.Service{Client: ident.Client{Instance: "AZ", MemberClass: "GOV",
		MemberCode: "1001", SubsystemCode: "EDR"}, ServiceCode: sampleis.CodeSearchPersons},
	ID: "bench-1764842400000000000-1", UserID: "AZ0000001",
}

// BenchmarkSearchPersons is the request of qapi-bench: a 10 KB
// searchPersons (one result, a long purpose).
func BenchmarkSearchPersons(b *testing.B) {
	q := sampleis.Search{Surname: "Əliyev", MaxResults: 1}
	base := sampleis.SearchPersonsRequest(benchHeader, q)
	q.Purpose = strings.Repeat("a", 10240-len(base)-len("<pr:purpose></pr:purpose>"))
	benchServe(b, sampleis.SearchPersonsRequest(benchHeader, q))
}

// BenchmarkSearchPersons20 is a small searchPersons with the most results.
func BenchmarkSearchPersons20(b *testing.B) {
	benchServe(b, sampleis.SearchPersonsRequest(benchHeader, sampleis.Search{BirthYear: ""}))
}

// BenchmarkGetPerson is a small getPerson.
func BenchmarkGetPerson(b *testing.B) {
	h := benchHeader
	h.Service.ServiceCode = sampleis.CodeGetPerson
	benchServe(b, sampleis.GetPersonRequest(h, sampleis.Persons()[500].FIN))
}
