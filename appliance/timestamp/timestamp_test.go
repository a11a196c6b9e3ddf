package timestamp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/qapi-az/qapi/internal/testenv"
	"github.com/qapi-az/qapi/internal/testpki"
)

// tsa is a test TSA: a CA and a certificate issued by it.
type tsa struct {
	ca   *testpki.CA
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// newTSA issues a TSA certificate; with eku false it is an ordinary
// signing certificate instead (no timeStamping usage).
func newTSA(t testing.TB, eku bool) *tsa {
	t.Helper()
	ca, err := testpki.NewCA("Test TSA CA")
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "Test TSA", Organization: []string{"Qapı test"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if eku {
		// RFC 3161 2.3: critical, timeStamping only.
		val, _ := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 8}})
		tmpl.ExtraExtensions = []pkix.Extension{{Id: oidEKU, Critical: true, Value: val}}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &tsa{ca: ca, cert: cert, key: key}
}

func (s *tsa) roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.ca.Cert)
	return p
}

// writeFiles writes the CA, the TSA certificate and key as PEM into dir.
func (s *tsa) writeFiles(t testing.TB, dir string) {
	t.Helper()
	keyDER, err := x509.MarshalPKCS8PrivateKey(s.key)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string]*pem.Block{
		"ca.pem":      {Type: "CERTIFICATE", Bytes: s.ca.Cert.Raw},
		"tsa.pem":     {Type: "CERTIFICATE", Bytes: s.cert.Raw},
		"tsa-key.pem": {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s%s", name, args, err, out, stderr.Bytes())
	}
	return out
}

func digestOf(b []byte) []byte { d := sha256.Sum256(b); return d[:] }

// TestIssueOpenSSLVerifies: what Issue produces, openssl ts -verify accepts
// with only the CA as trust anchor, and so does VerifyResponse.
func TestIssueOpenSSLVerifies(t *testing.T) {
	openssl := testenv.NeedCommand(t, "openssl")
	dir := t.TempDir()
	s := newTSA(t, true)
	s.writeFiles(t, dir)
	data := []byte("the chain head of a message log")
	dataPath := filepath.Join(dir, "data")
	os.WriteFile(dataPath, data, 0o600)

	req, nonce, err := NewRequest(digestOf(data))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := Issue(req, s.key, s.cert, time.Now(), big.NewInt(7))
	if err != nil {
		t.Fatal(err)
	}
	respPath := filepath.Join(dir, "resp.tsr")
	os.WriteFile(respPath, resp, 0o600)
	reqPath := filepath.Join(dir, "req.tsq")
	os.WriteFile(reqPath, req, 0o600)

	out := run(t, openssl, "ts", "-verify", "-data", dataPath, "-in", respPath,
		"-CAfile", filepath.Join(dir, "ca.pem"))
	if !bytes.Contains(out, []byte("Verification: OK")) {
		t.Fatalf("openssl ts -verify: %s", out)
	}
	// The request as openssl reads it, nonce included.
	run(t, openssl, "ts", "-verify", "-queryfile", reqPath, "-in", respPath,
		"-CAfile", filepath.Join(dir, "ca.pem"))

	tok, err := VerifyResponse(resp, digestOf(data), nonce, s.roots())
	if err != nil {
		t.Fatal(err)
	}
	if tok.Info.Serial.Int64() != 7 || tok.Info.PolicyString() !=
		"2.25.267885325272892464586658468123588177683" || tok.Info.Accuracy != time.Second {
		t.Fatalf("token info %+v", tok.Info)
	}
}

const tsaConfig = `
[ tsa ]
default_tsa = tsa_config1
[ tsa_config1 ]
dir = DIR
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
certs = $dir/tsa.pem
signer_key = $dir/tsa-key.pem
signer_digest = sha256
default_policy = 1.2.3.4.1
other_policies = 1.2.3.4.5
digests = sha256
accuracy = secs:1, millisecs:500
clock_precision_digits = 3
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
`

// opensslTSA answers requests with `openssl ts -reply`: a TSA nobody here
// wrote.
func opensslTSA(t testing.TB, s *tsa) http.Handler {
	openssl := testenv.NeedCommand(t, "openssl")
	dir := t.TempDir()
	s.writeFiles(t, dir)
	cfg := bytes.ReplaceAll([]byte(tsaConfig), []byte("DIR"), []byte(dir))
	os.WriteFile(filepath.Join(dir, "tsa.cnf"), cfg, 0o600)
	os.WriteFile(filepath.Join(dir, "serial"), []byte("01\n"), 0o600)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Type") != ContentTypeQuery {
			http.Error(w, "wrong content type", http.StatusUnsupportedMediaType)
			return
		}
		q, _ := io.ReadAll(r.Body)
		f, err := os.CreateTemp(dir, "q")
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		f.Write(q)
		f.Close()
		resp, err := exec.Command(openssl, "ts", "-reply", "-config",
			filepath.Join(dir, "tsa.cnf"), "-queryfile", f.Name(), "-out", "-").Output()
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", ContentTypeReply)
		w.Write(resp)
	})
}

// TestClientAgainstOpenSSL: the client gets and verifies a stamp from a TSA
// made of `openssl ts -reply` (fractional time, accuracy with millis, a tsa
// name, ordering: the optional fields another TSA may send).
func TestClientAgainstOpenSSL(t *testing.T) {
	s := newTSA(t, true)
	srv := httptest.NewServer(opensslTSA(t, s))
	defer srv.Close()
	c := &Client{URL: srv.URL, Roots: s.roots()}
	digest := digestOf([]byte("head"))
	tok, err := c.StampToken(context.Background(), digest)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tok.Info.Digest, digest) || tok.Info.PolicyString() != "1.2.3.4.1" ||
		tok.Info.Accuracy != 1500*time.Millisecond || !tok.TSA.Equal(s.cert) {
		t.Fatalf("token %+v", tok.Info)
	}
	if d := time.Since(tok.Info.GenTime); d < -time.Minute || d > time.Minute {
		t.Fatalf("genTime %v is not now", tok.Info.GenTime)
	}

	// The same TSA, trusted through another root, is refused.
	other := newTSA(t, true)
	c.Roots = other.roots()
	if _, err := c.Stamp(context.Background(), digest); !errors.Is(err, ErrVerification) {
		t.Fatalf("Stamp with the wrong root = %v, want ErrVerification", err)
	}
}

// TestVerifyRefuses: each way a response can be wrong is refused with the
// right error class.
func TestVerifyRefuses(t *testing.T) {
	good := newTSA(t, true)
	plain := newTSA(t, false)
	digest := digestOf([]byte("x"))
	req, nonce, err := NewRequest(digest)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(s *tsa) []byte {
		resp, err := Issue(req, s.key, s.cert, time.Now(), big.NewInt(1))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := issue(good)
	tampered := bytes.Clone(resp)
	// Move the genTime (GeneralizedTime, 15 bytes) by one second: the
	// signed content changes, the signature no longer matches.
	i := bytes.Index(tampered, []byte{0x18, 0x0f})
	if i < 0 {
		t.Fatal("no genTime in the response")
	}
	tampered[i+2+13] ^= 1
	sha1Req := bytes.Replace(req, []byte{0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01},
		[]byte{0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02}, 1)
	rejected, rerr := Issue(sha1Req, good.key, good.cert, time.Now(), big.NewInt(1))
	if !errors.Is(rerr, ErrRejected) || rejected == nil {
		t.Fatalf("Issue of a SHA-384 request = %v, want a rejection", rerr)
	}

	tests := []struct {
		name   string
		resp   []byte
		digest []byte
		nonce  *big.Int
		roots  *x509.CertPool
		want   error
	}{
		{"good", resp, digest, nonce, good.roots(), nil},
		{"trusted by its own certificate", resp, digest, nonce, leafPool(good.cert), nil},
		{"another digest", resp, digestOf([]byte("y")), nonce, good.roots(), ErrVerification},
		{"another nonce", resp, digest, big.NewInt(5), good.roots(), ErrVerification},
		{"untrusted TSA", resp, digest, nonce, plain.roots(), ErrVerification},
		{"no timeStamping usage", issue(plain), digest, nonce, plain.roots(), ErrVerification},
		{"tampered", tampered, digest, nonce, good.roots(), ErrVerification},
		{"rejection", rejected, digest, nonce, good.roots(), ErrRejected},
		{"garbage", []byte{0x30, 0x03, 0x02, 0x01}, digest, nonce, good.roots(), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := VerifyResponse(tt.resp, tt.digest, tt.nonce, tt.roots)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("VerifyResponse = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestParseOpenSSLQuery: a request made by `openssl ts -query` parses and
// Issue answers it.
func TestParseOpenSSLQuery(t *testing.T) {
	openssl := testenv.NeedCommand(t, "openssl")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	os.WriteFile(data, []byte("abc"), 0o600)
	q := run(t, openssl, "ts", "-query", "-data", data, "-sha256", "-cert", "-out", "-")
	r, err := ParseRequest(q)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.Digest, digestOf([]byte("abc"))) || !r.CertReq || r.Nonce == nil {
		t.Fatalf("parsed %+v", r)
	}
	s := newTSA(t, true)
	resp, err := Issue(q, s.key, s.cert, time.Now(), big.NewInt(2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyResponse(resp, r.Digest, r.Nonce, s.roots()); err != nil {
		t.Fatal(err)
	}
}

func leafPool(c *x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c)
	return p
}

// TestClientRefusesSkew: a stamp whose time is far from the local clock is
// refused.
func TestClientRefusesSkew(t *testing.T) {
	s := newTSA(t, true)
	var genTime time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, _ := io.ReadAll(r.Body)
		resp, err := Issue(q, s.key, s.cert, genTime, big.NewInt(3))
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", ContentTypeReply)
		w.Write(resp)
	}))
	defer srv.Close()
	now := time.Now().Truncate(time.Second)
	c := &Client{URL: srv.URL, Roots: s.roots(), Now: func() time.Time { return now }}
	for _, tt := range []struct {
		off  time.Duration
		want error
	}{{0, nil}, {4 * time.Minute, nil}, {-30 * time.Minute, ErrVerification},
		{10 * time.Minute, ErrVerification}} {
		genTime = now.Add(tt.off)
		_, err := c.Stamp(context.Background(), digestOf([]byte("x")))
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("stamp %v off: %v, want %v", tt.off, err, tt.want)
		}
	}
}
