package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/events"
	"github.com/qapi-az/qapi/appliance/manage"
	"github.com/qapi-az/qapi/appliance/messagelog"
	"github.com/qapi-az/qapi/appliance/server"
	"github.com/qapi-az/qapi/monitor"
)

// TestMonitorDownThenUp is the local monitoring station's case (2.6):
// under load with the station stopped, exchanges go on without a fault and
// every answered exchange is in the message log; once the station starts it
// shows the records the server dropped and receives new ones, with the
// server's status.
func TestMonitorDownThenUp(t *testing.T) {
	e := newEnv(t)
	sock := filepath.Join(t.TempDir(), "monitor.sock")
	ss := events.NewSocketSink(sock, events.SocketOptions{Buffer: 4,
		Status: e.c.srv.Status, StatusInterval: 20 * time.Millisecond})
	defer ss.Close()
	var sink events.Sink = ss
	e.c.events.next.Store(&sink)

	var mu sync.Mutex
	var answered []string
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 8 {
				id := newID()
				status, body := call(t, http.DefaultClient, e.clientURL(),
					getPersonReq2(e, id))
				if status != 200 {
					t.Errorf("worker %d: status %d: %s", w, status, body)
					continue
				}
				mu.Lock()
				answered = append(answered, id)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	var inLog []string
	e.c.srv.MessageLog().Entries(1, 0, func(en *messagelog.Entry) error {
		if en.Kind == messagelog.KindResponse {
			inLog = append(inLog, en.MessageID)
		}
		return nil
	})
	for _, id := range answered {
		if !slices.Contains(inLog, id) {
			t.Errorf("answered exchange %s has no response in the message log", id)
		}
	}
	dropped := ss.Dropped()
	if dropped == 0 {
		t.Fatalf("no record dropped with the station down and a buffer of 4")
	}

	st := runStation(t, sock)

	report := func() *monitor.Report {
		r, err := st.Report()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	eventually(t, "the station to show the dropped total", func() bool {
		return report().Stats.Dropped == dropped
	})
	before := report().Received
	for range 3 {
		if status, body := call(t, http.DefaultClient, e.clientURL(),
			getPersonReq2(e, newID())); status != 200 {
			t.Fatalf("status %d: %s", status, body)
		}
	}
	eventually(t, "the station to receive the new records", func() bool {
		return report().Received >= before+3
	})
	eventually(t, "the server's status", func() bool {
		s := report().Server
		return s != nil && len(s.Certificates) == 2 && s.GlobalConfSerial == 1
	})
}

// TestMonitorStoppedThenRestarted is the station going away under load
// and coming back (2.6): exchanges keep being answered while it is down,
// every answered one is in the message log, and the station started again
// on its history keeps the totals it had, shows the records the server
// dropped meanwhile, and receives new ones.
func TestMonitorStoppedThenRestarted(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	sock, history := filepath.Join(dir, "monitor.sock"), filepath.Join(dir, "history.db")
	ss := events.NewSocketSink(sock, events.SocketOptions{Buffer: 4,
		Status: e.c.srv.Status, StatusInterval: 20 * time.Millisecond})
	defer ss.Close()
	var sink events.Sink = ss
	e.c.events.next.Store(&sink)

	start := func() (*monitor.Station, func()) {
		st, err := monitor.New(monitor.Config{Socket: sock, History: history, Disk: dir})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- st.Run(ctx) }()
		return st, func() { cancel(); <-done }
	}
	report := func(st *monitor.Station) *monitor.Report {
		r, err := st.Report()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	// Load from eight clients until the end of the test.
	var mu sync.Mutex
	var answered []string
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(answered) }
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				id := newID()
				resp, err := http.Post(e.clientURL(), "text/xml; charset=utf-8",
					bytes.NewReader(getPersonReq2(e, id)))
				if err != nil {
					t.Errorf("exchange %s: %v", id, err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("exchange %s: status %d with the station down or up", id,
						resp.StatusCode)
					return
				}
				mu.Lock()
				answered = append(answered, id)
				mu.Unlock()
			}
		}()
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()

	st, halt := start()
	eventually(t, "the station to receive records under load", func() bool {
		return report(st).Received >= 20
	})
	halt()
	kept := report(st).Stats.Total().Requests
	st.Close()
	droppedBefore, atStop := ss.Dropped(), count()
	eventually(t, "exchanges to go on and records to be dropped with the station down",
		func() bool { return count() >= atStop+40 && ss.Dropped() > droppedBefore })

	st, halt = start()
	defer st.Close()
	defer halt()
	eventually(t, "the restarted station to show the dropped records", func() bool {
		r := report(st)
		return r.Stats.Dropped > droppedBefore && r.Stats.Dropped == ss.Dropped()
	})
	eventually(t, "the restarted station to receive new records", func() bool {
		return report(st).Received >= 20
	})
	stopLoad()
	if got := report(st).Stats.Total().Requests; got < kept+20 {
		t.Errorf("restarted station counts %d exchanges, want the %d it had before "+
			"and the new ones", got, kept)
	}

	inLog := map[string]bool{}
	e.c.srv.MessageLog().Entries(1, 0, func(en *messagelog.Entry) error {
		if en.Kind == messagelog.KindResponse {
			inLog[en.MessageID] = true
		}
		return nil
	})
	for _, id := range answered {
		if !inLog[id] {
			t.Errorf("answered exchange %s has no response in the message log", id)
		}
	}
}

// TestMonitorThatDoesNotRead is a station that accepts the connection but
// never reads (2.6): the socket fills and the sink's writer is stuck in a
// write, and exchanges go on without waiting for it, each record dropped
// and counted.
func TestMonitorThatDoesNotRead(t *testing.T) {
	e := newEnv(t)
	sock := filepath.Join(t.TempDir(), "monitor.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var held sync.Mutex
	var conns []net.Conn
	accepted := make(chan struct{}, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held.Lock()
			conns = append(conns, c) // held open, never read
			held.Unlock()
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	}()
	// A write timeout of an hour keeps the writer stuck for the whole
	// test once the socket is full, instead of giving up after a second
	// and connecting again.
	ss := events.NewSocketSink(sock, events.SocketOptions{Buffer: 4,
		WriteTimeout: time.Hour})
	defer func() {
		// The stuck write ends only when the station's end closes.
		ln.Close()
		held.Lock()
		for _, c := range conns {
			c.Close()
		}
		held.Unlock()
		ss.Close()
	}()
	var sink events.Sink = ss
	e.c.events.next.Store(&sink)
	<-accepted

	// Records are a few hundred bytes: a few hundred fill the socket.
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	exchange := func() bool {
		id := newID()
		resp, err := hc.Post(e.clientURL(), "text/xml; charset=utf-8",
			bytes.NewReader(getPersonReq2(e, id)))
		if err != nil {
			t.Errorf("exchange %s: %v", id, err)
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("exchange %s: status %d", id, resp.StatusCode)
			return false
		}
		return true
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	answered := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ss.Dropped() == 0 && exchange() {
				mu.Lock()
				answered++
				stop := answered >= 20000
				mu.Unlock()
				if stop {
					t.Errorf("20000 exchanges and no record dropped: the sink writes " +
						"as if the station read")
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d exchanges answered before the first record was dropped; %d sent",
		answered, ss.Sent())
	if ss.Sent() == 0 {
		t.Error("no record reached the socket before it filled")
	}

	// The client's server emits one record per exchange, some after its
	// answer: wait for them all before comparing the sink's counts.
	emitted := func() int {
		e.c.events.mu.Lock()
		defer e.c.events.mu.Unlock()
		return len(e.c.events.recs)
	}
	settle := func() {
		eventually(t, "every answered exchange's record emitted", func() bool {
			return emitted() == answered
		})
	}
	// Once the writer is stuck, a batch of exchanges is answered while
	// nothing more is sent and every record of it is dropped; until then
	// the writer may still be draining its buffer into the socket.
	const batch = 10
	for try := 0; ; try++ {
		if try == 100 {
			t.Fatalf("%d batches of %d exchanges and the sink still writes to a station "+
				"that never reads (%d sent)", try, batch, ss.Sent())
		}
		settle()
		sent, dropped := ss.Sent(), ss.Dropped()
		for range batch {
			if !exchange() {
				return
			}
			answered++
		}
		settle()
		if ss.Sent() == sent && ss.Dropped() == dropped+batch {
			t.Logf("a batch of %d answered with the writer stuck after %d tries; "+
				"%d dropped, %d sent", batch, try+1, ss.Dropped(), ss.Sent())
			break
		}
	}
}

// TestManageAPI shows the management API (4.1.2) as the server serves it:
// a request with the connection file's token works, one without is
// refused.
func TestManageAPI(t *testing.T) {
	dir := t.TempDir()
	cfg := &server.Config{Identity: server.Identity{Member: "AZ/GOV/1001", ServerCode: "ss1"},
		Listen: server.Listen{Server: "127.0.0.1:0"},
		TLS:    server.TLSFiles{AuthCert: "auth.pem", SigningCert: "sign.pem"},
		KeyDir: "keys", MessageLog: "m.db", ConfigDB: "c.db",
		Manage: &server.ManageConfig{Listen: "127.0.0.1:0", Dir: filepath.Join(dir, "manage")},
	}
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	keys := &memKeys{sign: e.c.sign.Key, auth: e.c.auth.Key, secret: make([]byte, 32)}
	api, err := server.StartManage(cfg, keys, server.ManageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()

	c, err := manage.DialAPI(api.ConnFile())
	if err != nil {
		t.Fatal(err)
	}
	var status map[string]any
	if err := c.Do(context.Background(), "GET", "/api/status", nil, &status); err != nil {
		t.Fatalf("with the token: %v", err)
	}

	b, err := os.ReadFile(api.ConnFile())
	if err != nil {
		t.Fatal(err)
	}
	var conn manage.Conn
	if err := json.Unmarshal(b, &conn); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(conn.Cert))
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool}}}
	resp, err := hc.Get(conn.URL + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
		t.Errorf("without the token: %s, want 401 or 403", resp.Status)
	}
}

// runStation runs a monitoring station on the socket sock, with its
// history in a folder of the test's, until the test ends.
func runStation(t *testing.T, sock string) *monitor.Station {
	t.Helper()
	dir := t.TempDir()
	st, err := monitor.New(monitor.Config{Socket: sock,
		History: filepath.Join(dir, "history.db"), Disk: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		st.Close()
	})
	return st
}
