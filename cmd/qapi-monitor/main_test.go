package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/events"
	"github.com/qapi-az/qapi/internal/testenv"
)

var buildOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "qapi-monitor-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "qapi-monitor")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build: %v\n%s", err, out)
	}
	return bin, nil
})

// build returns the monitor binary, built once per test run as the
// appliance builds it (pure Go).
func build(t *testing.T) string {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// A world-traversable tree standing in for the appliance's /perm.
func perm(t *testing.T) (root string, deny []string) {
	t.Helper()
	root, err := os.MkdirTemp("", "perm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	os.Chmod(root, 0o755)
	files := map[string]os.FileMode{
		"messagelog/messagelog.db": 0o644, // readable by mode: Landlock must stop it
		"keys/signing.pem":         0o600,
		"config/server.json":       0o644,
	}
	for name, mode := range files {
		p := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("secret"), mode); err != nil {
			t.Fatal(err)
		}
		deny = append(deny, p)
	}
	return root, append(deny, filepath.Join(root, "keys"))
}

// Clause 2.7: inside the running monitor, opening the message log, the
// keys and the configuration fails; the monitor still does its job.
func TestConfinedMonitorCannotReadData(t *testing.T) {
	testenv.NeedRoot(t)
	bin := build(t)
	root, deny := perm(t)
	state := filepath.Join(root, "qapi-monitor")

	cmd := exec.Command(bin, "-state", state, "-listen", "127.0.0.1:0",
		"-deny", strings.Join(deny, ","))
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	var confined map[string]any
	var page string
	sc := bufio.NewScanner(stderr)
	for page == "" && sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		switch line["msg"] {
		case "confined":
			confined = line
		case "monitoring station listening":
			page, _ = line["page"].(string)
		}
	}
	if confined == nil || page == "" {
		t.Fatalf("monitor did not confine and listen; stderr ended: %v", sc.Err())
	}
	go io.Copy(io.Discard, stderr)
	if got := confined["denied"].([]any); len(got) != len(deny) {
		t.Fatalf("monitor checked %v, want %v", got, deny)
	}

	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), "Uid:\t65534\t65534\t65534\t65534") {
		t.Errorf("monitor does not run as 65534:\n%s", status)
	}

	sink := events.NewSocketSink(filepath.Join(state, "monitor.sock"), events.SocketOptions{})
	defer sink.Close()
	now := time.Now()
	sink.Emit(events.Record{Role: events.RoleProvider, MessageID: "m1",
		Client: "AZ/GOV/1001", Service: "AZ/GOV/2001/POP/getPerson", Received: now,
		Done: now.Add(time.Millisecond), Result: events.ResultOK})
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(page + "metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), `qapi_exchanges_total{role="provider"`) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("confined monitor never counted the record: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The running monitor's own tries, reported while it serves: each
	// path refused, no alert that one opened.
	resp, err := http.Get(page + "metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, p := range deny {
		if want := `qapi_confinement_refused{path="` + p + `"} 1`; !strings.Contains(
			string(b), want) {
			t.Errorf("running monitor's metrics lack %s", want)
		}
	}
	if strings.Contains(string(b), "confinement_broken") {
		t.Errorf("running monitor reports a broken confinement:\n%s", b)
	}
}

// Unconfined (development mode), the running monitor's own tries open
// the paths, and it says so: the check is not one that always passes.
func TestUnconfinedMonitorReportsReachablePaths(t *testing.T) {
	testenv.NeedRoot(t)
	bin := build(t)
	root, deny := perm(t)
	state := filepath.Join(root, "qapi-monitor")

	cmd := exec.Command(bin, "-state", state, "-listen", "127.0.0.1:0", "-confine=false",
		"-deny", strings.Join(deny, ","))
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var page string
	sc := bufio.NewScanner(stderr)
	for page == "" && sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == "monitoring station listening" {
			page, _ = line["page"].(string)
		}
	}
	if page == "" {
		t.Fatalf("monitor did not listen; stderr ended: %v", sc.Err())
	}
	go io.Copy(io.Discard, stderr)

	resp, err := http.Get(page + "metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, p := range deny {
		if want := `qapi_confinement_refused{path="` + p + `"} 0`; !strings.Contains(
			string(b), want) {
			t.Errorf("unconfined monitor's metrics lack %s", want)
		}
	}
	if !strings.Contains(string(b), `qapi_alert{name="confinement_broken",severity="critical"}`) {
		t.Errorf("unconfined monitor raises no confinement alert:\n%s", b)
	}
}

// The monitor refuses to run when a path it must not read is readable.
func TestMonitorRefusesWhenConfinementLeaks(t *testing.T) {
	testenv.NeedRoot(t)
	bin := build(t)
	root, _ := perm(t)
	state := filepath.Join(root, "qapi-monitor")
	os.MkdirAll(state, 0o700)
	leak := filepath.Join(state, "copied-messagelog.db")
	os.WriteFile(leak, []byte("secret"), 0o600)

	out, err := exec.Command(bin, "-state", state, "-listen", "127.0.0.1:0",
		"-deny", leak).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "can still read "+leak) {
		t.Fatalf("monitor ran with a readable deny path: %v\n%s", err, out)
	}
}
