package tsa

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/qapi-az/qapi/appliance/timestamp"
	"github.com/qapi-az/qapi/internal/testenv"
	"github.com/qapi-az/qapi/portal/ca"
)

func newTSA(t *testing.T) (*TSA, *ca.CA) {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "portal.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cc, err := ca.Open(db, ca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert, err := cc.IssueService(Template("Test TSU"), &key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(db, key, cert, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, cc
}

// TestStampOverHTTP: the message log's client gets verified tokens with
// distinct serial numbers, and openssl ts -verify accepts them with only
// the certification centre as trust anchor.
func TestStampOverHTTP(t *testing.T) {
	openssl := testenv.NeedCommand(t, "openssl")
	s, cc := newTSA(t)
	srv := httptest.NewServer(s)
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(cc.Certificate())
	client := &timestamp.Client{URL: srv.URL, Roots: roots}

	data := []byte("chain head")
	sum := sha256.Sum256(data)
	first, err := client.StampToken(context.Background(), sum[:])
	if err != nil {
		t.Fatal(err)
	}
	second, err := client.StampToken(context.Background(), sum[:])
	if err != nil {
		t.Fatal(err)
	}
	if first.Info.Serial.Cmp(second.Info.Serial) == 0 {
		t.Errorf("two tokens share serial %v", first.Info.Serial)
	}

	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caPath := write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE",
		Bytes: cc.Certificate().Raw}))
	dataPath := write("data", data)
	tokPath := write("token.der", first.DER)
	out, err := exec.Command(openssl, "ts", "-verify", "-data", dataPath, "-in", tokPath,
		"-token_in", "-CAfile", caPath).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("Verification: OK")) {
		t.Fatalf("openssl ts -verify: %v\n%s", err, out)
	}
	out, err = exec.Command(openssl, "ts", "-verify", "-data", write("other", []byte("x")),
		"-in", tokPath, "-token_in", "-CAfile", caPath).CombinedOutput()
	if err == nil {
		t.Fatalf("openssl ts -verify accepted the token for other data:\n%s", out)
	}
}

func TestRefusesGarbage(t *testing.T) {
	s, _ := newTSA(t)
	resp, err := s.Stamp([]byte("not a request"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := timestamp.ParseResponse(resp); err == nil {
		t.Fatal("a garbage request got a granted response")
	}
}
