package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qapi-az/qapi/gokrazy"
)

// testRunner returns a runner in a temporary folder with one program, a
// shell script, and an instance naming it with the given required file.
func testRunner(t *testing.T, script, requires string, awaits ...string) (runner,
	*bytes.Buffer) {
	t.Helper()
	dir := t.TempDir()
	r := runner{
		manifest: filepath.Join(dir, "instance.json"),
		programs: filepath.Join(dir, "programs"),
		logs:     filepath.Join(dir, "log"),
		console:  filepath.Join(dir, "console"),
		stderr:   new(bytes.Buffer),
		poll:     10 * time.Millisecond,
	}
	in := &gokrazy.Instance{Hostname: "t", Programs: []gokrazy.Program{{Name: "prog",
		Package: "example.com/prog", Hint: "provide it"}}}
	if requires != "" {
		in.Programs[0].Requires = []string{requires}
	}
	in.Programs[0].Awaits = awaits
	b, err := in.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for p, data := range map[string][]byte{
		r.manifest:                        b,
		filepath.Join(r.programs, "prog"): []byte("#!/bin/sh\n" + script + "\n"),
		r.console:                         nil,
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return r, r.stderr.(*bytes.Buffer)
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRunProgramCopiesOutput(t *testing.T) {
	r, stderr := testRunner(t, `echo "out $1"; echo err >&2; exit 3`, "")
	if code := r.runProgram("prog", []string{"arg"}); code != 3 {
		t.Errorf("exit code %d, want the program's 3", code)
	}
	for name, got := range map[string]string{
		"gokrazy's log": stderr.String(),
		"the console":   read(t, r.console),
		"the log file":  read(t, filepath.Join(r.logs, "prog.log")),
	} {
		if !strings.Contains(got, "prog: out arg\n") || !strings.Contains(got, "prog: err\n") {
			t.Errorf("%s = %q, want both lines prefixed with the name", name, got)
		}
	}
}

func TestRunProgramWaitsForRequiredFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "server.json")
	r, _ := testRunner(t, "echo started", cfg)
	if code := r.runProgram("prog", nil); code != dontSupervise {
		t.Errorf("exit code %d without %s, want %d", code, cfg, dontSupervise)
	}
	if got := read(t, r.console); !strings.Contains(got, cfg+" is missing; provide it") {
		t.Errorf("console = %q, want the missing file and the hint", got)
	}

	if err := os.WriteFile(cfg, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code := r.runProgram("prog", nil); code != 0 {
		t.Errorf("exit code %d with %s present, want 0", code, cfg)
	}
	if got := read(t, r.console); !strings.Contains(got, "prog: started") {
		t.Errorf("console = %q, want the program's output once the file exists", got)
	}
}

func TestRunProgramAwaitsFiles(t *testing.T) {
	dir := t.TempDir()
	keys := []string{filepath.Join(dir, "signing.sealed"), filepath.Join(dir, "other.sealed")}
	r, _ := testRunner(t, "echo started", "", keys...)
	done := make(chan int)
	go func() { done <- r.runProgram("prog", nil) }()

	// The runner says what it waits for, and starts nothing until every
	// awaited file exists.
	for _, k := range keys {
		for !strings.Contains(read(t, r.console), "waiting for "+k) {
			time.Sleep(10 * time.Millisecond)
		}
		if strings.Contains(read(t, r.console), "prog: started") {
			t.Fatalf("the program started before %s existed", k)
		}
		if err := os.WriteFile(k, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if code := <-done; code != 0 {
		t.Errorf("exit code %d once the files exist, want 0", code)
	}
	if got := read(t, r.console); !strings.Contains(got, "prog: started") {
		t.Errorf("console = %q, want the program's output once the files exist", got)
	}
}

func TestRunProgramRotatesLog(t *testing.T) {
	r, _ := testRunner(t, "echo new", "")
	old := filepath.Join(r.logs, "prog.log")
	if err := os.MkdirAll(r.logs, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(old, bytes.Repeat([]byte("x"), logLimit+1), 0o600); err != nil {
		t.Fatal(err)
	}
	r.runProgram("prog", nil)
	if got := read(t, old); got != "prog: new\n" {
		t.Errorf("log after rotation = %.40q, want only the new line", got)
	}
	if fi, err := os.Stat(old + ".1"); err != nil || fi.Size() != logLimit+1 {
		t.Errorf("previous log not kept as prog.log.1: %v", err)
	}
}
