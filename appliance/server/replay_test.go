package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/server"
	"github.com/qapi-az/qapi/appliance/soap"
	bolt "go.etcd.io/bbolt"
)

// TestReplayAfterRestart shows clause 6.2.4 across a restart of the
// provider's server: a message id it accepted before is refused after,
// and so is one that an older version recorded in the configuration
// database, while a new id passes.
func TestReplayAfterRestart(t *testing.T) {
	e := newEnv(t)
	seen := newID()
	if status, body := call(t, http.DefaultClient, e.clientURL(),
		getPersonReq2(e, seen)); status != 200 {
		t.Fatalf("first use of the id: status %d: %s", status, body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.p.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// What an older version left in its configuration database: the
	// digest of client, NUL, id, cut to 16 bytes, and the signing time.
	legacy := newID()
	db, err := bolt.Open(filepath.Join(e.p.dir, "conf.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("replay-seen"))
		if err != nil {
			return err
		}
		sum := sha256.Sum256([]byte(client.String() + "\x00" + legacy))
		return b.Put(sum[:16], binary.BigEndian.AppendUint64(nil,
			uint64(time.Now().UnixNano())))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	e.p.srv = must[*server.Server](t)(server.New(e.p.cfg, e.p.opts))
	if err := e.p.srv.Start(); err != nil {
		t.Fatal(err)
	}
	e.setConf(nil) // the restarted server listens on a new port

	e.is.ResetHits()
	for _, id := range []string{seen, legacy} {
		status, body := call(t, http.DefaultClient, e.clientURL(), getPersonReq2(e, id))
		if status == 200 || faultCode(t, body) != soap.CodeReplay {
			t.Errorf("id %s replayed after the restart: status %d: %s", id, status, body)
		}
	}
	if e.is.Hits() != 0 {
		t.Errorf("a replayed request reached the information system %d times", e.is.Hits())
	}
	if status, body := call(t, http.DefaultClient, e.clientURL(),
		getPersonReq2(e, newID())); status != 200 {
		t.Fatalf("a new id after the restart: status %d: %s", status, body)
	}
}
