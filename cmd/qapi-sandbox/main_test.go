package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

var binary string

// TestMain builds the sandbox once, as 'go run' does, for the tests that
// run it as a user does.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "qapi-sandbox-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "qapi-sandbox")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		panic(fmt.Sprintf("build: %v\n%s", err, out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestStartTryStop runs the command as a user does: it prints that it is
// up, the request it prints goes through both security servers, and
// Ctrl-C stops it with status 0, its temporary state removed.
func TestStartTryStop(t *testing.T) {
	tmp := t.TempDir()
	cmd := exec.Command(binary)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var printed strings.Builder
	timeout := time.After(time.Minute)
	for !strings.Contains(printed.String(), "Ctrl-C stops everything.") {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("exited before it was up:\n%s\n%s", printed.String(), stderr.String())
			}
			printed.WriteString(l + "\n")
		case <-timeout:
			t.Fatalf("not up within a minute:\n%s\n%s", printed.String(), stderr.String())
		}
	}
	out := printed.String()
	state := submatch(t, out, `state in (\S+)`)
	if filepath.Dir(state) != tmp {
		t.Fatalf("state %s is not a fresh folder of TMPDIR %s", state, tmp)
	}

	// The request it prints, sent where it says (the curl line).
	req, err := os.ReadFile(submatch(t, out, `sed "[^"]*" (\S+) \|`))
	if err != nil {
		t.Fatal(err)
	}
	url := submatch(t, out, `--data-binary @- (\S+)`)
	resp, err := http.Post(url, "text/xml; charset=utf-8", bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || bytes.Contains(body, []byte("Fault")) {
		t.Errorf("the printed request: HTTP %d\n%s", resp.StatusCode, body)
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for range lines {
		}
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("after Ctrl-C: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("still running 20 s after Ctrl-C:\n%s", stderr.String())
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("state left behind after Ctrl-C: %v", left)
	}
}

func submatch(t *testing.T, s, re string) string {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("output has no %s:\n%s", re, s)
	}
	return m[1]
}

// TestRefusesExistingDir: -dir must name a new folder, so that the
// sandbox never builds on another run's state.
func TestRefusesExistingDir(t *testing.T) {
	out, err := exec.Command(binary, "-dir", t.TempDir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "exists; give a new folder") {
		t.Errorf("with an existing -dir: %v\n%s", err, out)
	}
}
