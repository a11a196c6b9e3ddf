package messagelog_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/messagelog"
	"github.com/qapi-az/qapi/appliance/server"
	"github.com/qapi-az/qapi/appliance/soap"
	"github.com/qapi-az/qapi/internal/sampleis"
	"github.com/qapi-az/qapi/internal/testenv"
)

// TestDiskFullServer runs a client and a provider qapi-server, the
// client's message log on a 4 MB tmpfs, and fills that filesystem: the
// client's server then refuses exchanges with Server.MessageLogFailure
// instead of serving unlogged ones, and serves again by itself once space
// returns. Every answered exchange is in its log and the chain verifies
// (clauses 2.2.2, 6.3).
func TestDiskFullServer(t *testing.T) {
	testenv.Short(t, "builds qapi-server")
	testenv.NeedRoot(t)
	goBin := testenv.NeedCommand(t, "go")
	work := t.TempDir()
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=4m"); err != nil {
		testenv.Missing(t, "cannot mount a tmpfs: "+err.Error())
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	bin := filepath.Join(work, "qapi-server")
	build := exec.Command(goBin, "build", "-o", bin, "github.com/qapi-az/qapi/cmd/qapi-server")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/qapi-server: %v\n%s", err, out)
	}
	is := httptest.NewServer(sampleis.New())
	defer is.Close()
	c, p := setupServers(t, work, is.URL)
	logPath := filepath.Join(mnt, "messagelog.db")
	cfgPath := filepath.Join(c.dir, "qapi-server.json")
	var cfg server.Config
	b, err := os.ReadFile(cfgPath)
	if err == nil {
		err = json.Unmarshal(b, &cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	cfg.MessageLog = logPath
	if b, err = json.MarshalIndent(cfg, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	pSrv, pExited := startServer(t, bin, p)
	defer func() { pSrv.Process.Signal(syscall.SIGTERM); <-pExited }()
	cSrv, cExited := startServer(t, bin, c)

	fin := sampleis.Persons()[0].FIN
	hc := &http.Client{Timeout: 30 * time.Second}
	seq := 0
	// exchange returns the HTTP status and the fault code ("" for none).
	exchange := func() (string, int, string) {
		t.Helper()
		seq++
		id := fmt.Sprintf("full-%d", seq)
		body := sampleis.GetPersonRequest(sampleis.Header{Client: killClient,
			Service: killService, ID: id, UserID: "AZ0000001"}, fin)
		resp, err := hc.Post("http://"+c.clientAddr+"/", "text/xml; charset=utf-8",
			bytes.NewReader(body))
		if err != nil {
			t.Fatalf("exchange %s: %v", id, err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		m, err := soap.ParseResponse(out, soap.Limits{MaxBytes: 1 << 20, MaxDepth: 64})
		if err != nil {
			t.Fatalf("exchange %s: the answer is not SOAP: %v\n%s", id, err, out)
		}
		if m.Fault != nil {
			return id, resp.StatusCode, m.Fault.Code
		}
		return id, resp.StatusCode, ""
	}
	answered := map[string]bool{}
	for range 5 {
		id, status, code := exchange()
		if status != http.StatusOK || code != "" {
			t.Fatalf("exchange with space left: status %d, fault %q", status, code)
		}
		answered[id] = true
	}

	filler := filepath.Join(mnt, "filler")
	fillDisk(t, filler)
	refused := 0
	for i := 0; i < 2000 && refused < 3; i++ {
		id, status, code := exchange()
		switch {
		case status == http.StatusOK && code == "":
			answered[id] = true // the log still had room in its pages
		case code == soap.CodeLogFailure:
			refused++
		default:
			t.Fatalf("exchange on a full disk: status %d, fault %q; want %s", status, code,
				soap.CodeLogFailure)
		}
	}
	if refused < 3 {
		t.Fatal("the server kept answering on a full disk")
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		id, status, code := exchange()
		if status != http.StatusOK || code != "" {
			t.Fatalf("exchange after space returned: status %d, fault %q", status, code)
		}
		answered[id] = true
	}

	// The log is the server's while it runs.
	cSrv.Process.Signal(syscall.SIGTERM)
	<-cExited
	l, err := messagelog.Open(messagelog.Options{Path: logPath, Key: c.logKey})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	kinds := map[string]int{}
	err = l.Entries(0, 0, func(e *messagelog.Entry) error {
		kinds[e.MessageID+"/"+string(e.Kind)]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Verify(); err != nil {
		t.Fatalf("the chain does not verify after the full disk: %v", err)
	}
	for id := range answered {
		if kinds[id+"/request"] != 1 || kinds[id+"/response"] != 1 {
			t.Fatalf("exchange %s was answered but the log has %d request, %d response "+
				"records", id, kinds[id+"/request"], kinds[id+"/response"])
		}
	}
	t.Logf("%d exchanges answered, %d refused with %s while the disk was full",
		len(answered), refused, soap.CodeLogFailure)
}

// fillDisk writes zeros to path until its filesystem is full.
func fillDisk(t *testing.T, path string) {
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
