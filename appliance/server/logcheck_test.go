package server_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/server"
	"github.com/qapi-az/qapi/portal/incident"
	bolt "go.etcd.io/bbolt"
)

// syncBuffer is a bytes.Buffer safe for the server's ErrorLog.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDamagedLogAtStart: a server whose live message log holds a damaged
// entry starts and serves, and names the entry in its status for the
// monitoring station, in its error log and in an incident report.
func TestDamagedLogAtStart(t *testing.T) {
	inc := &incidentSink{}
	is := httptest.NewServer(inc)
	defer is.Close()
	e := newEnv(t)
	e.setConf(func(c, p *globalconf.Conf) { c.IncidentURL, p.IncidentURL = is.URL, is.URL })
	for range 2 {
		if status, body := call(t, http.DefaultClient, e.clientURL(),
			getPersonReq2(e, newID())); status != 200 {
			t.Fatalf("status %d: %s", status, body)
		}
	}
	if f := e.c.srv.MessageLogFault(); f != "" {
		t.Fatalf("an intact log has the fault %q", f)
	}

	// Stop the client's server and flip a byte of its entry 3.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.c.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(e.c.dir, "messagelog.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		// Entries sit in a nested bucket per commit (messagelog's
		// records.go).
		k := binary.BigEndian.AppendUint64(nil, 3)
		records := tx.Bucket([]byte("records"))
		return records.ForEachBucket(func(name []byte) error {
			b := records.Bucket(name)
			if v := b.Get(k); v != nil {
				v = bytes.Clone(v)
				v[len(v)/2] ^= 1
				return b.Put(k, v)
			}
			return nil
		})
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	errLog := &syncBuffer{}
	e.c.opts.ErrorLog = log.New(errLog, "", 0)
	e.c.srv = must[*server.Server](t)(server.New(e.c.cfg, e.c.opts))
	if err := e.c.srv.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the damaged entry in the status", func() bool {
		return strings.Contains(e.c.srv.Status().MessageLogFault, "entry 3:")
	})
	if f := e.c.srv.Faults(); len(f) != 1 || !strings.Contains(f[0], "entry 3:") {
		t.Errorf("the faults for the management API are %q, want the damaged entry 3", f)
	}
	if status, body := call(t, http.DefaultClient, e.clientURL(),
		getPersonReq2(e, newID())); status != 200 {
		t.Fatalf("exchange with a damaged log: status %d: %s", status, body)
	}
	if !strings.Contains(errLog.String(), path+": entry 3:") {
		t.Fatalf("error log does not name the entry:\n%s", errLog)
	}
	eventually(t, "an incident naming the damaged entry", func() bool {
		inc.mu.Lock()
		defer inc.mu.Unlock()
		for _, r := range inc.reports {
			if r.Kind == incident.OtherIncident && strings.Contains(r.Detail,
				"message log damaged") && strings.Contains(r.Detail, "entry 3:") {
				return true
			}
		}
		return false
	})
}
