package incident

import (
	"context"
	"crypto/x509"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/internal/testpki"
)

func TestRegisterAndQueue(t *testing.T) {
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "i.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ca, _ := testpki.NewCA("cc")
	owner := ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1"}
	auth, _ := ca.IssueAuth(owner, "SS1")
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	reg, err := Open(db, roots, func(der []byte) bool {
		return globalconf.CertHash(der) == globalconf.CertHash(auth.Cert.Raw)
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg)
	defer srv.Close()
	c := &Client{URL: srv.URL, Key: auth.Key, Cert: auth.Cert.Raw}
	now := time.Now()

	for _, tt := range []struct {
		r    Report
		want string
	}{
		{Report{Kind: "ddos", Time: now}, "is not one of"},
		{Report{Kind: Replay}, "needs the time"},
		{Report{Kind: Replay, Time: now, Detail: strings.Repeat("x", MaxDetail+1)},
			"at most"},
	} {
		if err := c.Report(context.Background(), tt.r); err == nil ||
			!strings.Contains(err.Error(), tt.want) {
			t.Errorf("Report(%+v) = %v, want %q", tt.r.Kind, err, tt.want)
		}
	}

	q := NewQueue(c, 2)
	for _, k := range []Kind{BadSignature, AccessDenied, BlockedClient} {
		q.Add(Report{Kind: k, Time: now, Client: "AZ/GOV/2/X"})
	}
	if q.Dropped() != 1 {
		t.Errorf("a full queue of 2 dropped %d of 3, want 1", q.Dropped())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	deadline := time.Now().Add(time.Minute)
	for {
		recs, err := reg.List(Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queued reports never arrived: %d stored", len(recs))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done

	recs, _ := reg.List(Filter{Kind: AccessDenied, Server: "AZ/GOV/1/SS1"})
	if len(recs) != 1 || recs[0].Client != "AZ/GOV/2/X" {
		t.Errorf("List(access-denied from SS1) = %+v", recs)
	}
	if recs, _ := reg.List(Filter{Since: now.Add(time.Hour)}); len(recs) != 0 {
		t.Errorf("List(since an hour ahead) = %+v", recs)
	}
}
