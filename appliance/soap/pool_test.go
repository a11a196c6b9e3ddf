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
			m, err := parse(raw, DefaultLimits(), response)
			fm, ferr := parseWith(newScanner(raw, DefaultLimits().MaxDepth), raw, response)
			if !reflect.DeepEqual(m, fm) || !reflect.DeepEqual(err, ferr) {
				t.Fatalf("pooled: %+v, %v\nfresh: %+v, %v\ninput %q", m, err, fm, ferr, raw)
			}
		}
	}
}
