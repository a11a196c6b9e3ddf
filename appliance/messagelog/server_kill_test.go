package messagelog_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/keys"
	"github.com/qapi-az/qapi/appliance/messagelog"
	"github.com/qapi-az/qapi/appliance/server"
	"github.com/qapi-az/qapi/internal/loopback"
	"github.com/qapi-az/qapi/internal/sampleis"
	"github.com/qapi-az/qapi/internal/testenv"
	"github.com/qapi-az/qapi/internal/testpki"
)

var (
	killProvider = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1001",
		SubsystemCode: "EDR"}
	killClient = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "2002",
		SubsystemCode: "POLICE"}
	killService = ident.Service{Client: killProvider, ServiceCode: sampleis.CodeGetPerson}
)

// killNode is one security server of the test.
type killNode struct {
	dir         string
	code        string
	client      ident.Client
	clientAddr  string
	serverAddr  string
	logKey      []byte
	auth, signc *testpki.Cert
}

func freePort(t *testing.T) string {
	t.Helper()
	addr, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

func writePEMFile(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}),
		0o600); err != nil {
		t.Fatal(err)
	}
}

// setupServers writes the PKI, a signed global configuration and the two
// servers' configurations, the provider serving isURL.
func setupServers(t *testing.T, work, isURL string) (c, p *killNode) {
	t.Helper()
	ca, err := testpki.NewCA("kill test CA")
	if err != nil {
		t.Fatal(err)
	}
	c = &killNode{dir: filepath.Join(work, "client"), code: "ss-c", client: killClient}
	p = &killNode{dir: filepath.Join(work, "provider"), code: "ss-p", client: killProvider}
	for _, n := range []*killNode{c, p} {
		if n.auth, err = ca.IssueAuth(n.client.Member(), n.code); err != nil {
			t.Fatal(err)
		}
		if n.signc, err = ca.IssueSigning(n.client.Member()); err != nil {
			t.Fatal(err)
		}
		n.clientAddr, n.serverAddr = freePort(t), freePort(t)
		n.logKey = make([]byte, 32)
		rand.Read(n.logKey)
	}
	op, err := ca.IssueSigning(ident.Client{Instance: "AZ", MemberClass: "GOV",
		MemberCode: "OPERATOR"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	conf := &globalconf.Conf{
		Instance: "AZ", Serial: 1, Issued: now.Add(-time.Hour), Expires: now.Add(24 * time.Hour),
		Members: []globalconf.Member{
			{ID: killProvider.Member(), Name: "provider",
				Subsystems: []globalconf.Subsystem{{Code: "EDR"}}},
			{ID: killClient.Member(), Name: "client",
				Subsystems: []globalconf.Subsystem{{Code: "POLICE"}}},
		},
		CAs: []globalconf.CA{{Name: "kill test", Cert: ca.Cert.Raw}},
	}
	for _, n := range []*killNode{c, p} {
		conf.SecurityServers = append(conf.SecurityServers, globalconf.SecurityServer{
			Owner: n.client.Member(), Code: n.code, Address: n.serverAddr,
			Clients:        []ident.Client{n.client},
			AuthCertHashes: []string{globalconf.CertHash(n.auth.Cert.Raw)}})
	}
	signed, err := globalconf.Sign(conf, op.Key, op.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	anchor, err := json.Marshal(globalconf.Anchor{Instance: "AZ", Certs: [][]byte{op.Cert.Raw}})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []*killNode{c, p} {
		keyDir := filepath.Join(n.dir, "keys")
		for purpose, cert := range map[keys.Purpose]*testpki.Cert{keys.Signing: n.signc,
			keys.Authentication: n.auth} {
			der, err := x509.MarshalPKCS8PrivateKey(cert.Key)
			if err != nil {
				t.Fatal(err)
			}
			writePEMFile(t, filepath.Join(keyDir, string(purpose)+".key"), "PRIVATE KEY", der)
		}
		writePEMFile(t, filepath.Join(keyDir, string(keys.LogEncryption)+".secret"),
			"QAPI SECRET KEY", n.logKey)
		writePEMFile(t, filepath.Join(n.dir, "auth.pem"), "CERTIFICATE", n.auth.Cert.Raw)
		writePEMFile(t, filepath.Join(n.dir, "sign.pem"), "CERTIFICATE", n.signc.Cert.Raw)
		os.WriteFile(filepath.Join(n.dir, "anchor.json"), anchor, 0o600)
		os.WriteFile(filepath.Join(n.dir, "globalconf.json"), signed, 0o600)
		cfg := server.Config{
			Identity: server.Identity{Member: n.client.Member().String(), ServerCode: n.code,
				Clients: []string{n.client.String()}},
			Listen: server.Listen{ClientHTTP: n.clientAddr, Server: n.serverAddr},
			TLS:    server.TLSFiles{AuthCert: "auth.pem", SigningCert: "sign.pem"},
			KeyDir: "keys", Anchor: "anchor.json", GlobalConf: "globalconf.json",
			MessageLog: "messagelog.db", ConfigDB: "conf.db", LogLevel: "warn",
		}
		if n == p {
			cfg.Services = []server.ServiceConfig{{Provider: killProvider.String(),
				URL: isURL + "/", WSDL: isURL + "/?wsdl"}}
			cfg.AccessRights = []server.AccessRight{{Service: killService.String(),
				Subject: "subsystem:" + killClient.String()}}
		}
		b, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(n.dir, "qapi-server.json"), b, 0o600)
	}
	return c, p
}

// startServer starts qapi-server for n and waits until its ports accept.
// The channel is closed once the process has exited and been waited for.
func startServer(t *testing.T, bin string, n *killNode) (*exec.Cmd, <-chan struct{}) {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(n.dir, "server.log"),
		os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", filepath.Join(n.dir, "qapi-server.json"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	for _, addr := range []string{n.clientAddr, n.serverAddr} {
		for {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-exited:
				b, _ := os.ReadFile(filepath.Join(n.dir, "server.log"))
				t.Fatalf("qapi-server %s exited at start:\n%s", n.code, b)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	return cmd, exited
}

// TestKillNineServer builds cmd/qapi-server, runs a client and a provider
// security server, and kills one of them, chosen at random, with SIGKILL
// twenty times under load, after a random number of answered exchanges.
// After each kill, every exchange whose response reached the information
// system so far has its request and response in the killed server's
// message log, and its chain verifies; the provider's log holds a seen
// message id for each request record; the restarted server continues the
// chain. QAPI_KILL_SEED repeats a run.
func TestKillNineServer(t *testing.T) {
	testenv.Short(t, "builds qapi-server and restarts it twenty times")
	goBin := testenv.NeedCommand(t, "go")
	work := t.TempDir()
	bin := filepath.Join(work, "qapi-server")
	build := exec.Command(goBin, "build", "-o", bin, "github.com/qapi-az/qapi/cmd/qapi-server")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/qapi-server: %v\n%s", err, out)
	}
	is := httptest.NewServer(sampleis.New())
	defer is.Close()
	c, p := setupServers(t, work, is.URL)
	rng := messagelog.KillRand(t)

	type running struct {
		cmd    *exec.Cmd
		exited <-chan struct{}
	}
	procs := map[*killNode]*running{}
	defer func() {
		for _, r := range procs {
			r.cmd.Process.Signal(syscall.SIGTERM)
			<-r.exited
		}
	}()
	fin := sampleis.Persons()[0].FIN
	hc := &http.Client{Timeout: 30 * time.Second}
	acked := map[string]bool{}
	kills := map[string]int{}
	var mu sync.Mutex
	for round := range 20 {
		// The provider first: the client's server needs it to answer.
		for _, n := range []*killNode{p, c} {
			if procs[n] == nil {
				cmd, exited := startServer(t, bin, n)
				procs[n] = &running{cmd, exited}
			}
		}
		victim := []*killNode{c, p}[rng.IntN(2)]
		srv, exited := procs[victim].cmd, procs[victim].exited
		kills[victim.code]++
		ctx, stop := context.WithCancel(context.Background())
		killAt := 1 + rng.IntN(80)
		var n, refused int
		var lastRefusal string
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ctx.Err() == nil; i++ {
					id := fmt.Sprintf("kill-%d-%d-%d", round, g, i)
					body := sampleis.GetPersonRequest(sampleis.Header{Client: killClient,
						Service: killService, ID: id, UserID: "AZ0000001"}, fin)
					req, _ := http.NewRequestWithContext(ctx, http.MethodPost,
						"http://"+c.clientAddr+"/", bytes.NewReader(body))
					req.Header.Set("Content-Type", "text/xml; charset=utf-8")
					resp, err := hc.Do(req)
					if err != nil {
						continue // the server is gone; the loop ends with ctx
					}
					out, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					mu.Lock()
					if err != nil || resp.StatusCode != http.StatusOK ||
						bytes.Contains(out, []byte("Fault>")) {
						// A server that only refuses would never be killed.
						if refused++; refused == 200 && n < killAt {
							lastRefusal = string(out)
							srv.Process.Signal(syscall.SIGKILL)
						}
						mu.Unlock()
						continue
					}
					acked[id] = true
					n++
					if n == killAt {
						srv.Process.Signal(syscall.SIGKILL)
					}
					mu.Unlock()
				}
			}()
		}
		// The kill ends the server; the clients then fail until stopped.
		<-exited
		stop()
		wg.Wait()
		delete(procs, victim)
		if srv.ProcessState.Exited() {
			b, _ := os.ReadFile(filepath.Join(victim.dir, "server.log"))
			t.Fatalf("round %d: qapi-server %s exited by itself (%v):\n%s", round,
				victim.code, srv.ProcessState, b)
		}
		if n < killAt {
			t.Fatalf("round %d: the servers refused 200 requests, the last with:\n%s",
				round, lastRefusal)
		}

		// Every exchange answered so far passed through both servers, so
		// the killed one's log holds all of them.
		l, err := messagelog.Open(messagelog.Options{
			Path: filepath.Join(victim.dir, "messagelog.db"), Key: victim.logKey})
		if err != nil {
			t.Fatalf("round %d: %s: %v", round, victim.code, err)
		}
		kinds := map[string]int{}
		err = l.Entries(0, 0, func(e *messagelog.Entry) error {
			if strings.HasPrefix(e.MessageID, "kill-") {
				kinds[e.MessageID+"/"+string(e.Kind)]++
			}
			return nil
		})
		if err != nil {
			t.Fatalf("round %d: %s: %v", round, victim.code, err)
		}
		if _, err := l.Verify(); err != nil {
			t.Fatalf("round %d: the chain of %s does not verify after SIGKILL: %v", round,
				victim.code, err)
		}
		// The provider's seen message ids (clause 6.2.4) are committed with
		// its request records: one mark for each, no more, no fewer.
		marks := 0
		if err := l.Marks(func(messagelog.Mark) error { marks++; return nil }); err != nil {
			t.Fatalf("round %d: %s: %v", round, victim.code, err)
		}
		requests := 0
		for k, n := range kinds {
			if strings.HasSuffix(k, "/request") {
				requests += n
			}
		}
		if victim == p && marks != requests || victim == c && marks != 0 {
			t.Fatalf("round %d: the log of %s has %d request records and %d seen ids",
				round, victim.code, requests, marks)
		}
		l.Close()
		for id := range acked {
			if kinds[id+"/request"] != 1 || kinds[id+"/response"] != 1 {
				t.Fatalf("round %d: exchange %s was answered but the log of %s has %d "+
					"request, %d response records", round, id, victim.code,
					kinds[id+"/request"], kinds[id+"/response"])
			}
		}
	}
	t.Logf("%d answered exchanges survived 20 SIGKILLs of qapi-server (%v)", len(acked),
		kills)
}
