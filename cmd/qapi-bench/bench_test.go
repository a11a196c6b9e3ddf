package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/keys"
	"github.com/qapi-az/qapi/internal/testenv"
)

// TestSmoke runs the benchmark briefly: it builds qapi-server and
// qapi-sampleis, starts them as processes from their configuration files,
// and checks that every run succeeded, that the servers logged each
// exchange without its body, warned that their keys are not TPM-sealed, and
// stopped gracefully.
func TestSmoke(t *testing.T) {
	testenv.Short(t, "builds and starts three programs")
	testenv.NeedCommand(t, "go")
	dir := t.TempDir()
	var out bytes.Buffer
	o := options{clients: 4, duration: time.Second, rate: 20, rateDuration: time.Second,
		size: 10240, dir: dir, keep: true, serverLogLevel: "info"}
	if err := run(o, &out); err != nil {
		logs, _ := filepath.Glob(filepath.Join(dir, "qapi-bench-*", "*.log"))
		more, _ := filepath.Glob(filepath.Join(dir, "qapi-bench-*", "*", "server.log"))
		for _, path := range append(logs, more...) {
			b, _ := os.ReadFile(path)
			t.Logf("%s:\n%s", path, b[max(0, len(b)-4000):])
		}
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, name := range []string{"chain ", "direct ", "rate "} {
		var line string
		for l := range strings.Lines(out.String()) {
			if strings.HasPrefix(l, name) {
				line = l
			}
		}
		if !strings.Contains(line, " ok") || strings.Contains(line, "failed") {
			t.Errorf("run %q: %q", name, line)
		}
	}
	if !strings.Contains(out.String(), "VmHWM") {
		t.Errorf("no memory figures:\n%s", out.String())
	}

	logs, _ := filepath.Glob(filepath.Join(dir, "qapi-bench-*", "*", "server.log"))
	if len(logs) != 2 {
		t.Fatalf("found server logs %q, want 2", logs)
	}
	for _, path := range logs {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(keys.DevMode)) {
			t.Errorf("%s: no development-mode warning", path)
		}
		if !bytes.Contains(b, []byte(`"msg":"stopped"`)) {
			t.Errorf("%s: the server did not stop gracefully", path)
		}
		exchanges := 0
		s := bufio.NewScanner(bytes.NewReader(b))
		for s.Scan() {
			l := s.Text()
			if !strings.Contains(l, `"msg":"exchange"`) {
				continue
			}
			exchanges++
			for _, want := range []string{`"messageId":"bench-`, `"client":"AZ/GOV/2002/POLICE"`,
				`"service":"AZ/GOV/1001/EDR/searchPersons"`, `"result":"ok"`, `"totalMs":`} {
				if !strings.Contains(l, want) {
					t.Errorf("%s: exchange line lacks %s: %s", path, want, l)
					break
				}
			}
			// The request carries the surname searched for and the response
			// the persons found: neither may reach the log.
			if strings.Contains(l, "Əliyev") || strings.Contains(l, "<") {
				t.Errorf("%s: a message body reached the log: %s", path, l)
			}
		}
		if exchanges == 0 {
			t.Errorf("%s: no exchange was logged", path)
		}
	}
}
