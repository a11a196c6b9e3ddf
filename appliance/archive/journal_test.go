package archive

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// writeJournal records n accesses from four writers at once and returns the
// journal's path and lines.
func writeJournal(t *testing.T, n int) (string, [][]byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "access.log")
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				err := RecordAccess(path, Access{Time: time.Now().UTC(),
					Who: fmt.Sprintf("auditor-%d", i), Key: "sha256:00", Action: "verify",
					Files: []string{"/perm/archive/qapi-log-1-4.p7m"}, Outcome: "started"})
				if err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, bytes.SplitAfter(b, []byte("\n"))[:n]
}

func wantBroken(t *testing.T, path string, line int) {
	t.Helper()
	_, err := VerifyJournal(path)
	var je *JournalError
	if !errors.As(err, &je) || je.Line != line {
		t.Fatalf("VerifyJournal = %v, want line %d named", err, line)
	}
}

// TestJournalChain: lines written concurrently form one chain; an edited
// line is found by the link of the line after it, a deleted line by the
// line that took its place, and the first line must link to zero.
func TestJournalChain(t *testing.T) {
	path, lines := writeJournal(t, 20)
	if n, err := VerifyJournal(path); err != nil || n != 20 {
		t.Fatalf("VerifyJournal of an intact journal = %d, %v", n, err)
	}
	if !bytes.HasPrefix(lines[0], []byte(`{"prev":"`+zeroHash+`"`)) {
		t.Fatalf("first line %s does not link to zero", lines[0])
	}
	write := func(ls [][]byte) {
		t.Helper()
		if err := os.WriteFile(path, bytes.Join(ls, nil), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	edited := append([][]byte{}, lines...)
	edited[7] = bytes.Replace(lines[7], []byte(`"who":"auditor-`), []byte(`"who":"auditer-`), 1)
	write(edited)
	wantBroken(t, path, 9)

	write(append(append([][]byte{}, lines[:7]...), lines[8:]...))
	wantBroken(t, path, 8)

	write(lines[1:])
	wantBroken(t, path, 1)

	// Lines appended after a break continue the chain from the file as it is;
	// the break stays.
	write(edited)
	if err := RecordAccess(path, Access{Who: "later", Outcome: "ok"}); err != nil {
		t.Fatal(err)
	}
	wantBroken(t, path, 9)
}

// TestJournalTornLine: a line cut short by a crash is reported, and the
// next reading starts a line of its own after it.
func TestJournalTornLine(t *testing.T) {
	path, lines := writeJournal(t, 3)
	torn := append(append([][]byte{}, lines[:2]...), lines[2][:len(lines[2])/2])
	os.WriteFile(path, bytes.Join(torn, nil), 0o600)
	if err := RecordAccess(path, Access{Who: "next", Outcome: "started"}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if got := strings.Count(string(b), "\n"); got != 4 {
		t.Fatalf("journal has %d lines after a torn one, want 4:\n%s", got, b)
	}
	wantBroken(t, path, 3)
}
