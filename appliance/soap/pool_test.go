package soap

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"unicode/utf8"
)

// TestPooledScannerForgets parses random variants of a request, each
// right after another one, through pooled scanners, and checks each
// result against a parse with a scanner never used before: nothing of a
// message may carry over to the next, whether it was accepted or refused
// half-way.
func TestPooledScannerForgets(t *testing.T) {
	tmpl := NewRequest(testHeader(), []byte(testBody))
	rnd := rand.New(rand.NewPCG(3, 4))
	n := 5000
	if testing.Short() {
		n = 500
	}
	dirty := []byte(`<q:E xmlns:q="urn:q" xmlns="urn:d"><b a="&lt;&#13;">x&amp;y` +
		"\r\n" + `</b><q:a q:x="1">`)
	probes := [][]byte{[]byte("<q:a/>"), []byte("<E/>"), []byte(`<E xmlns:r="urn:r"><q:a/></E>`),
		dirty, NewRequest(testHeader(), []byte(`<p:x xmlns:p="urn:p"><q:a/></p:x>`))}
	for range n {
		raw := bytes.Clone(tmpl)
		for range 1 + rnd.IntN(4) {
			at := rnd.IntN(len(raw) + 1)
			raw = slices.Insert(raw, at, []byte(fragments[rnd.IntN(len(fragments))])...)
		}
		if !utf8.Valid(raw) {
			continue // refused before any scanner is used
		}
		for _, response := range []bool{false, true} {
			// A message refused half-way, leaving the scanner dirty.
			_, _ = parse(dirty, DefaultLimits(), response)
			for _, probe := range probes {
				compareFresh(t, probe, response)
			}
			_, _ = parse(dirty, DefaultLimits(), response)
			m, err := parse(raw, DefaultLimits(), response)
			fm, ferr := parseWith(newScanner(raw, DefaultLimits().MaxDepth), raw, response)
			if !reflect.DeepEqual(m, fm) || !reflect.DeepEqual(err, ferr) {
				t.Fatalf("pooled: %+v, %v\nfresh: %+v, %v\ninput %q", m, err, fm, ferr, raw)
			}
		}
	}
}

// compareFresh fails t unless a pooled scanner and a new one parse raw
// alike.
func compareFresh(t *testing.T, raw []byte, response bool) {
	t.Helper()
	m, err := parse(raw, DefaultLimits(), response)
	fm, ferr := parseWith(newScanner(raw, DefaultLimits().MaxDepth), raw, response)
	if !reflect.DeepEqual(m, fm) || !reflect.DeepEqual(err, ferr) {
		t.Fatalf("pooled: %+v, %v\nfresh: %+v, %v\ninput %q", m, err, fm, ferr, raw)
	}
}
