package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.etcd.io/bbolt"
	"golang.org/x/crypto/ocsp"

	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/internal/testenv"
)

var member = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1234567890"}

func openCA(t *testing.T, ocspURL string) *CA {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "portal.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c, err := Open(db, Options{Name: "Test CC", OCSPURL: ocspURL})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newCSR(t *testing.T, dns ...string) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: "ignored", Organization: []string{"Nazirlik"}},
		DNSNames: dns, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

func TestIssueProfiles(t *testing.T) {
	c := openCA(t, "http://127.0.0.1:1/ocsp")
	_, sigCSR := newCSR(t)
	_, authCSR := newCSR(t, "ss1.example.az")

	sr, err := c.Submit(Signing, member, "", sigCSR)
	if err != nil {
		t.Fatal(err)
	}
	ar, err := c.Submit(Auth, member, "SS1", authCSR)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := c.GetRequest(sr.ID); got.State != Pending {
		t.Fatalf("request state before approval = %s, want pending", got.State)
	}
	sig, err := c.Approve(sr.ID)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := c.Approve(ar.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Approve(sr.ID); err == nil {
		t.Error("approving an issued request twice succeeded")
	}

	m, code, err := ident.MemberFromCertSerial(sig.Subject.SerialNumber)
	if err != nil || m != member || code != "" {
		t.Errorf("signing subject serialNumber %q -> %v %q %v", sig.Subject.SerialNumber,
			m, code, err)
	}
	if sig.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment ||
		len(sig.ExtKeyUsage) != 0 {
		t.Errorf("signing key usage %v %v", sig.KeyUsage, sig.ExtKeyUsage)
	}
	m, code, err = ident.MemberFromCertSerial(auth.Subject.SerialNumber)
	if err != nil || m != member || code != "SS1" {
		t.Errorf("auth subject serialNumber %q -> %v %q %v", auth.Subject.SerialNumber,
			m, code, err)
	}
	if auth.KeyUsage != x509.KeyUsageDigitalSignature || !slices.Equal(auth.ExtKeyUsage,
		[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("auth key usage %v %v", auth.KeyUsage, auth.ExtKeyUsage)
	}
	if !slices.Equal(auth.DNSNames, []string{"ss1.example.az"}) {
		t.Errorf("auth DNS names %v", auth.DNSNames)
	}
	for _, cert := range []*x509.Certificate{sig, auth} {
		if !slices.Equal(cert.OCSPServer, []string{"http://127.0.0.1:1/ocsp"}) {
			t.Errorf("AIA OCSP %v", cert.OCSPServer)
		}
		if err := cert.CheckSignatureFrom(c.Certificate()); err != nil {
			t.Errorf("not signed by the centre: %v", err)
		}
	}
}

func TestSubmitRefuses(t *testing.T) {
	c := openCA(t, "")
	_, csr := newCSR(t)
	rsaLike := append([]byte(nil), csr...)
	rsaLike[len(rsaLike)-3] ^= 0xff
	tests := []struct {
		name   string
		kind   Kind
		member ident.Client
		code   string
		csr    []byte
		want   string
	}{
		{"auth without server code", Auth, member, "", csr, "needs a server code"},
		{"signing with server code", Signing, member, "SS1", csr, "names no server code"},
		{"subsystem owner", Signing, ident.Client{Instance: "AZ", MemberClass: "GOV",
			MemberCode: "1", SubsystemCode: "X"}, "", csr, "must be a member"},
		{"unknown kind", "tls", member, "", csr, "neither"},
		{"broken signature", Signing, member, "", rsaLike, "request"},
	}
	for _, tt := range tests {
		if _, err := c.Submit(tt.kind, tt.member, tt.code, tt.csr); err == nil ||
			!strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Submit = %v, want error containing %q", tt.name, err, tt.want)
		}
	}
}

func TestOCSPRevocation(t *testing.T) {
	c := openCA(t, "")
	_, csr := newCSR(t)
	cert, err := c.Issue(Signing, member, "", csr)
	if err != nil {
		t.Fatal(err)
	}
	ask := func() *ocsp.Response {
		t.Helper()
		req, err := ocsp.CreateRequest(cert, c.Certificate(), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := ocsp.ParseResponseForCert(c.Respond(req), cert, c.Certificate())
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if s := ask().Status; s != ocsp.Good {
		t.Fatalf("status before revocation = %d, want good", s)
	}
	if n, err := c.RevokeSubject(member.String(), ocsp.KeyCompromise); err != nil || n != 1 {
		t.Fatalf("RevokeSubject = %d, %v", n, err)
	}
	r := ask()
	if r.Status != ocsp.Revoked || r.RevocationReason != ocsp.KeyCompromise {
		t.Fatalf("status after revocation = %d reason %d", r.Status, r.RevocationReason)
	}

	other := openCA(t, "")
	foreign, err := other.Issue(Signing, member, "", csr)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := ocsp.CreateRequest(foreign, other.Certificate(), nil)
	if _, err := ocsp.ParseResponse(c.Respond(req), nil); err == nil ||
		!strings.Contains(err.Error(), "unauthorized") {
		t.Errorf("request about another issuer: %v, want unauthorized", err)
	}
}

// TestOpenSSLOCSP checks that openssl, which nobody here wrote, accepts
// the responder's answers over HTTP.
func TestOpenSSLOCSP(t *testing.T) {
	openssl := testenv.NeedCommand(t, "openssl")
	var c *CA
	srv := httptest.NewServer(nil)
	defer srv.Close()
	c = openCA(t, srv.URL+"/ocsp")
	srv.Config.Handler = c.OCSPHandler()

	dir := t.TempDir()
	writePEM := func(name string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE",
			Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	_, csr := newCSR(t)
	cert, err := c.Issue(Signing, member, "", csr)
	if err != nil {
		t.Fatal(err)
	}
	caPath := writePEM("ca.pem", c.Certificate().Raw)
	certPath := writePEM("cert.pem", cert.Raw)
	run := func() string {
		t.Helper()
		out, err := exec.Command(openssl, "ocsp", "-issuer", caPath, "-cert", certPath,
			"-url", srv.URL+"/ocsp", "-CAfile", caPath).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl ocsp: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := run(); !strings.Contains(out, "Response verify OK") ||
		!strings.Contains(out, certPath+": good") {
		t.Fatalf("openssl ocsp before revocation:\n%s", out)
	}
	if err := c.Revoke(serialHex(cert.SerialNumber), ocsp.Superseded); err != nil {
		t.Fatal(err)
	}
	if out := run(); !strings.Contains(out, "Response verify OK") ||
		!strings.Contains(out, certPath+": revoked") {
		t.Fatalf("openssl ocsp after revocation:\n%s", out)
	}
}
