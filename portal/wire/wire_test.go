package wire

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/internal/testpki"
)

func TestSignedOpen(t *testing.T) {
	ca, _ := testpki.NewCA("cc")
	other, _ := testpki.NewCA("other")
	owner := ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1"}
	auth, _ := ca.IssueAuth(owner, "SS1")
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	reg := ServerRegistration{Owner: owner, Code: "SS1", Address: "h:1",
		AuthCert: auth.Cert.Raw, Time: time.Now()}
	s, err := Sign(reg, auth.Key, auth.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	var got ServerRegistration
	if _, err := s.Open(&got, roots, time.Now()); err != nil || got.Code != "SS1" {
		t.Fatalf("Open = %v, %+v", err, got)
	}

	tampered := *s
	tampered.Payload = []byte(strings.Replace(string(s.Payload), "h:1", "h:2", 1))
	if _, err := tampered.Open(&got, roots, time.Now()); err == nil ||
		!strings.Contains(err.Error(), "does not verify") {
		t.Errorf("Open(tampered) = %v", err)
	}
	foreign, _ := other.IssueAuth(owner, "SS1")
	f, _ := Sign(reg, foreign.Key, foreign.Cert.Raw)
	if _, err := f.Open(&got, roots, time.Now()); err == nil ||
		!strings.Contains(err.Error(), "certification centre") {
		t.Errorf("Open(foreign certificate) = %v", err)
	}
	swapped := *s
	swapped.Cert = foreign.Cert.Raw
	if _, err := swapped.Open(&got, roots, time.Now()); err == nil {
		t.Error("Open accepted a signature under another certificate")
	}
}
