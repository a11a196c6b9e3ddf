package boltmem

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// mappedKB returns the resident kilobytes of this process's mappings of
// the file named name, from /proc/self/smaps.
func mappedKB(t *testing.T, name string) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kb, in := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) > 0 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = len(fields) >= 6 && strings.HasSuffix(fields[len(fields)-1], name)
			continue
		}
		if in && len(fields) >= 2 && fields[0] == "Rss:" {
			n, err := strconv.Atoi(fields[1])
			if err != nil {
				t.Fatal(err)
			}
			kb += n
		}
	}
	return kb
}

// TestRelease reads every page of a 16 MB database, so that all of it is
// mapped, and checks that Release unmaps those pages while every value
// reads back the same afterwards.
func TestRelease(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Release does something only on Linux")
	}
	path := filepath.Join(t.TempDir(), "release-test.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	want := make(map[string][]byte)
	for i := range 1024 {
		v := make([]byte, 16<<10)
		rand.Read(v)
		k := fmt.Sprintf("%06d", i)
		want[k] = v
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("b"))
		if err != nil {
			return err
		}
		for k, v := range want {
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	readAll := func() {
		t.Helper()
		err := db.View(func(tx *bolt.Tx) error {
			n := 0
			err := tx.Bucket([]byte("b")).ForEach(func(k, v []byte) error {
				n++
				if !bytes.Equal(v, want[string(k)]) {
					return fmt.Errorf("value of %s changed", k)
				}
				return nil
			})
			if err == nil && n != len(want) {
				err = fmt.Errorf("read %d values, want %d", n, len(want))
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	readAll()
	before := mappedKB(t, "release-test.db")
	if before < 12<<10 {
		t.Fatalf("only %d kB of the 16 MB file is mapped after reading all of it; "+
			"the test cannot tell whether Release works", before)
	}
	if err := Release(db); err != nil {
		t.Fatal(err)
	}
	after := mappedKB(t, "release-test.db")
	t.Logf("resident pages of the file's map: %d kB before Release, %d kB after", before, after)
	if after > before/8 {
		t.Errorf("%d kB still resident after Release, of %d kB before", after, before)
	}
	readAll()
}
