package soap

import (
	"os"
	"regexp"
	"slices"
	"testing"
)

// TestFaultsDocumented checks that docs/faults.md has one row for every
// code and none for a code that does not exist, and that no two constants
// share a code.
func TestFaultsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/faults.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]int{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Za-z0-9.]+)` \\|").FindAllSubmatch(doc, -1) {
		rows[string(m[1])]++
	}
	codes := Codes()
	seen := map[string]bool{}
	for _, c := range codes {
		if seen[c] {
			t.Errorf("code %s is declared twice", c)
		}
		seen[c] = true
		if rows[c] != 1 {
			t.Errorf("docs/faults.md has %d rows for %s, want 1", rows[c], c)
		}
	}
	for c := range rows {
		if !slices.Contains(codes, c) {
			t.Errorf("docs/faults.md documents %s, which is not a code", c)
		}
	}
}
