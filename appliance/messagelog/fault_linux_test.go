package messagelog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/qapi-az/qapi/internal/testenv"
)

// fill writes zeros to path until the filesystem is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			return
		}
	}
}

// TestDiskFull: on a full filesystem Append fails instead of acknowledging
// records it could not store, and works again by itself once space
// returns; nothing acknowledged is lost and the chain verifies.
func TestDiskFull(t *testing.T) {
	testenv.NeedRoot(t)
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=4m"); err != nil {
		testenv.Missing(t, "cannot mount a tmpfs: "+err.Error())
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })

	path := filepath.Join(mnt, "log.db")
	key := testKey(t)
	l := openTest(t, path, key)
	defer l.Close()
	ctx := context.Background()
	big := func(i int) Record {
		r := testRecord(i)
		r.MessageID = fmt.Sprintf("full-%d", i)
		r.Signed = make([]byte, 8<<10)
		r.Mark = Mark{Time: time.Unix(int64(i), 0), Key: []byte(r.MessageID)}
		return r
	}
	var acked []string
	for i := range 20 {
		if err := l.Append(ctx, big(i)); err != nil {
			t.Fatalf("Append %d with space left: %v", i, err)
		}
		acked = append(acked, big(i).MessageID)
	}

	filler := filepath.Join(mnt, "filler")
	fill(t, filler)
	var failed error
	for i := 20; i < 2000 && failed == nil; i++ {
		if err := l.Append(ctx, big(i)); err != nil {
			failed = err
		} else {
			acked = append(acked, big(i).MessageID)
		}
	}
	if failed == nil {
		t.Fatal("Append kept succeeding on a full filesystem")
	}
	if !errors.Is(failed, syscall.ENOSPC) {
		t.Logf("Append on a full disk: %v", failed)
	}
	// Still full: still refused.
	if err := l.Append(ctx, big(5000)); err == nil {
		t.Fatal("Append succeeded on a full filesystem after a failure")
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for i := 6000; i < 6005; i++ {
		if err := l.Append(ctx, big(i)); err != nil {
			t.Fatalf("Append after space returned: %v", err)
		}
		acked = append(acked, big(i).MessageID)
	}

	found := map[string]bool{}
	if err := l.Entries(0, 0, func(e *Entry) error {
		found[e.MessageID] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, id := range acked {
		if !found[id] {
			t.Fatalf("acknowledged record %s is missing", id)
		}
	}
	if len(found) != len(acked) {
		t.Fatalf("%d records stored, %d acknowledged: a refused record was stored",
			len(found), len(acked))
	}
	if !sameSet(found, marksOf(t, l)) {
		t.Fatal("the marks are not those of the stored records")
	}
	if _, err := l.Verify(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l = openTest(t, path, key)
	if n, err := l.Verify(); err != nil || n != len(acked) {
		t.Fatalf("after reopening: %d entries, %v; want %d", n, err, len(acked))
	}
}
