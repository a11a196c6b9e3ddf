package publish

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/internal/testpki"
	"github.com/qapi-az/qapi/portal/registry"
)

// TestRunPublishesChanges: a block recorded in the registry is published
// by Run without anyone asking, under a higher serial, and served.
func TestRunPublishesChanges(t *testing.T) {
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "p.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var p *Publisher
	reg, err := registry.Open(db, registry.Options{Instances: []string{"AZ", "AZ-TEST"},
		Changed: func(i string) { p.Changed(i) }})
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := testpki.NewCA("conf")
	signer, _ := ca.IssueSigning(ident.Client{Instance: "AZ", MemberClass: "GOV",
		MemberCode: "OP"})
	p, err = New(db, Options{Registry: reg, Key: signer.Key, Cert: signer.Cert.Raw,
		BaseURL: "http://portal"})
	if err != nil {
		t.Fatal(err)
	}
	member := ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1"}
	if err := reg.AddMember(registry.Member{ID: member, Name: "Nazirlik"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()

	srv := httptest.NewServer(p.Handler())
	defer srv.Close()
	anchor := p.Anchor("AZ")
	fetch := func() *globalconf.Conf {
		resp, err := http.Get(srv.URL + "/globalconf/AZ")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return nil
		}
		c, err := globalconf.Verify(b, anchor)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	var first *globalconf.Conf
	for first == nil {
		first = fetch()
	}
	if !first.HasClient(member) || first.IsBlocked(member) {
		t.Fatalf("first version: %+v", first)
	}
	if _, _, err := reg.BlockClient(member, "3.7.1", "test"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for c := fetch(); !c.IsBlocked(member); c = fetch() {
		if time.Now().After(deadline) {
			t.Fatal("Run did not publish the block")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if c := fetch(); c.Serial <= first.Serial {
		t.Errorf("serial went from %d to %d", first.Serial, c.Serial)
	}
	if resp, _ := http.Get(srv.URL + "/globalconf/NOPE"); resp.StatusCode != 404 {
		t.Errorf("unknown instance: HTTP %d", resp.StatusCode)
	}
}
