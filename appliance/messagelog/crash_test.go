package messagelog

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	mathrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const crashChildEnv = "QAPI_MESSAGELOG_CRASH_CHILD"

// TestCrashChild is the process TestKillNine kills: it appends from eight
// goroutines and prints "ack ID" once each Append has returned nil. It does
// nothing unless started by TestKillNine.
func TestCrashChild(t *testing.T) {
	spec := os.Getenv(crashChildEnv)
	if spec == "" {
		t.Skip("runs only as the child of TestKillNine")
	}
	parts := strings.Split(spec, ",")
	if len(parts) != 3 {
		t.Fatalf("%s=%q: want PATH,KEYHEX,PREFIX", crashChildEnv, spec)
	}
	path, prefix := parts[0], parts[2]
	key, _ := hex.DecodeString(parts[1])
	l, err := Open(Options{Path: path, Key: key})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(3)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				rec := testRecord(i)
				rec.MessageID = fmt.Sprintf("%s-%d-%d", prefix, g, i)
				rec.Mark = Mark{Time: time.Now(), Key: []byte(rec.MessageID)}
				if err := l.Append(context.Background(), rec); err != nil {
					fmt.Println("append:", err)
					os.Exit(3)
				}
				mu.Lock()
				// One write(2) per line: what reached the pipe was acknowledged.
				os.Stdout.WriteString("ack " + rec.MessageID + "\n")
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestKillNine kills a process appending under load with SIGKILL twenty
// times, each after a random number of acknowledged records: after each
// kill every acknowledged record is in the log, each record has its mark
// and each mark its record, the chain verifies, and the next process
// continues the same chain.
//
// TODO: SIGKILL keeps the page cache, so these tests would not catch a
// missing fsync; a power-cut test needs a VM or dm-flakey under the file.
func TestKillNine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "log.db")
	key := testKey(t)
	acked := map[string]bool{}
	rng := KillRand(t)
	for round := range 20 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%x,r%d", crashChildEnv, path, key,
			round))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		// Kill at a random depth of load each round.
		killAt, n := 1+rng.IntN(500), 0
		for sc.Scan() {
			line := sc.Text()
			id, ok := strings.CutPrefix(line, "ack ")
			if !ok {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("round %d: child said %q", round, line)
			}
			acked[id] = true
			if n++; n == killAt {
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
		}
		cmd.Wait()
		if n < killAt {
			t.Fatalf("round %d: the child stopped after %d records by itself", round, n)
		}

		l := openTest(t, path, key)
		found := map[string]bool{}
		err = l.Entries(0, 0, func(e *Entry) error { found[e.MessageID] = true; return nil })
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		marks := marksOf(t, l)
		count, err := l.Verify()
		if err != nil {
			t.Fatalf("round %d: the chain does not verify after SIGKILL: %v", round, err)
		}
		l.Close()
		for id := range acked {
			if !found[id] {
				t.Fatalf("round %d: acknowledged record %s is missing after SIGKILL", round, id)
			}
		}
		if !sameSet(found, marks) {
			t.Fatalf("round %d: %d records but %d marks after SIGKILL: a mark was not "+
				"committed with its record", round, len(found), len(marks))
		}
		if count < len(acked) {
			t.Fatalf("round %d: %d entries for %d acknowledged records", round, count,
				len(acked))
		}
	}
	t.Logf("%d acknowledged records survived 20 SIGKILLs", len(acked))
}

// KillRand returns the source of the kill tests' random moments, seeded
// from QAPI_KILL_SEED or the clock, and logs the seed so that a failing
// run can be repeated. It is exported for the test of qapi-server.
func KillRand(t *testing.T) *mathrand.Rand {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("QAPI_KILL_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("QAPI_KILL_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("kill moments from seed %d (QAPI_KILL_SEED repeats them)", seed)
	return mathrand.New(mathrand.NewPCG(seed, seed))
}

// marksOf returns the keys of the marks l keeps.
func marksOf(t testing.TB, l *Log) map[string]bool {
	t.Helper()
	marks := map[string]bool{}
	if err := l.Marks(func(m Mark) error { marks[string(m.Key)] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	return marks
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}
