package cms

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/internal/testenv"
	"github.com/qapi-az/qapi/internal/testpki"
)

var member = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1400057421"}

type fixture struct {
	ca     *testpki.CA
	signer *testpki.Cert
	other  *testpki.Cert
	ocsp   []byte
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ca, err := testpki.NewCA("Qapı test CA")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ca.IssueSigning(member)
	if err != nil {
		t.Fatal(err)
	}
	// testpki leaves out the subject key identifier that the
	// SubjectKeyID option needs; add it by reissuing the same key.
	tmpl := *signer.Cert
	tmpl.SubjectKeyId = []byte{1, 2, 3, 4, 5, 6, 7, 8}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, ca.Cert, &signer.Key.PublicKey,
		ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	if signer.Cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	other, err := ca.IssueSigning(member)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ocsp.CreateResponse(ca.Cert, ca.Cert, ocsp.Response{
		Status:       ocsp.Good,
		SerialNumber: signer.Cert.SerialNumber,
		ThisUpdate:   time.Now().Add(-time.Minute),
		NextUpdate:   time.Now().Add(time.Hour),
	}, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{ca: ca, signer: signer, other: other, ocsp: resp}
}

func TestRoundTrip(t *testing.T) {
	f := newFixture(t)
	content := []byte("<soap:Envelope>a signed message\n</soap:Envelope>")
	signingTime := time.Date(2026, 5, 1, 10, 30, 15, 0, time.UTC)
	for _, tc := range []struct {
		name string
		opts SignOptions
	}{
		{"detached", SignOptions{Detached: true}},
		{"encapsulated", SignOptions{}},
		{"signing time", SignOptions{Detached: true, SigningTime: signingTime}},
		{"signing time after 2049", SignOptions{SigningTime: time.Date(2051, 1, 2, 3, 4, 5, 0,
			time.UTC)}},
		{"OCSP stapled", SignOptions{Detached: true, OCSP: [][]byte{f.ocsp}}},
		{"chain", SignOptions{Certificates: []*x509.Certificate{f.ca.Cert}}},
		{"subject key identifier", SignOptions{SubjectKeyID: true}},
		{"TSTInfo with ESS", SignOptions{ContentType: OIDTSTInfo, SigningCertificateV2: true}},
		{"everything", SignOptions{Detached: true, SigningTime: signingTime,
			Certificates: []*x509.Certificate{f.ca.Cert}, OCSP: [][]byte{f.ocsp, f.ocsp},
			SigningCertificateV2: true, SubjectKeyID: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			der, err := Sign(content, f.signer.Key, f.signer.Cert, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			var detached []byte
			if tc.opts.Detached {
				detached = content
				if bytes.Contains(der, content) {
					t.Error("detached SignedData contains the content")
				}
			}
			got, err := Verify(der, detached)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Content, content) {
				t.Errorf("Content = %q, want %q", got.Content, content)
			}
			wantCT := tc.opts.ContentType
			if wantCT == nil {
				wantCT = OIDData
			}
			if !got.ContentType.Equal(wantCT) {
				t.Errorf("ContentType = %v, want %v", got.ContentType, wantCT)
			}
			if !got.Signer.Equal(f.signer.Cert) {
				t.Errorf("Signer = %v, want %v", got.Signer.Subject, f.signer.Cert.Subject)
			}
			if !got.SigningTime.Equal(tc.opts.SigningTime) {
				t.Errorf("SigningTime = %v, want %v", got.SigningTime, tc.opts.SigningTime)
			}
			if len(got.OCSP) != len(tc.opts.OCSP) {
				t.Fatalf("got %d OCSP responses, want %d", len(got.OCSP), len(tc.opts.OCSP))
			}
			for i := range got.OCSP {
				if !bytes.Equal(got.OCSP[i], tc.opts.OCSP[i]) {
					t.Errorf("OCSP[%d] differs from the one stapled", i)
				}
			}
			if got.SigningCertificateV2 != tc.opts.SigningCertificateV2 {
				t.Errorf("SigningCertificateV2 = %v, want %v", got.SigningCertificateV2,
					tc.opts.SigningCertificateV2)
			}
			if want := 1 + len(tc.opts.Certificates); len(got.Certificates) != want {
				t.Errorf("got %d certificates, want %d", len(got.Certificates), want)
			}
		})
	}
}

func TestSignRefuses(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name string
		sign func() ([]byte, error)
	}{
		{"key of another certificate", func() ([]byte, error) {
			return Sign([]byte("x"), f.other.Key, f.signer.Cert, SignOptions{})
		}},
		{"no certificate", func() ([]byte, error) {
			return Sign([]byte("x"), f.signer.Key, nil, SignOptions{})
		}},
		{"OCSP response not DER", func() ([]byte, error) {
			return Sign([]byte("x"), f.signer.Key, f.signer.Cert,
				SignOptions{OCSP: [][]byte{[]byte("not an OCSP response")}})
		}},
		{"certificate without subject key identifier", func() ([]byte, error) {
			c := *f.signer.Cert
			c.SubjectKeyId = nil
			return Sign([]byte("x"), f.signer.Key, &c, SignOptions{SubjectKeyID: true})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if der, err := tc.sign(); err == nil {
				t.Fatalf("Sign succeeded with %d bytes, want an error", len(der))
			}
		})
	}
}

// flip returns a copy of b with the byte at i changed.
func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x01
	return c
}

func TestVerifyRefuses(t *testing.T) {
	f := newFixture(t)
	content := []byte("<Envelope>amount=100</Envelope>")
	signingTime := time.Date(2026, 5, 1, 10, 30, 15, 0, time.UTC)
	detached, err := Sign(content, f.signer.Key, f.signer.Cert,
		SignOptions{Detached: true, SigningTime: signingTime, OCSP: [][]byte{f.ocsp}})
	if err != nil {
		t.Fatal(err)
	}
	encap, err := Sign(content, f.signer.Key, f.signer.Cert, SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	idData, err := asn1.Marshal(OIDData)
	if err != nil {
		t.Fatal(err)
	}
	at := func(der, sub []byte) int {
		i := bytes.Index(der, sub)
		if i < 0 {
			t.Fatalf("test setup: %x not found", sub)
		}
		return i
	}
	otherOID := bytes.Clone(idData)
	otherOID[len(otherOID)-1] = 3

	for _, tc := range []struct {
		name    string
		der     []byte
		content []byte
		want    error
	}{
		{"content byte changed", detached, flip(content, 12), ErrVerification},
		{"content truncated", detached, content[:len(content)-1], ErrVerification},
		{"content appended", detached, append(bytes.Clone(content), '\n'), ErrVerification},
		{"detached without content", detached, nil, ErrVerification},
		{"encapsulated content changed", flip(encap, at(encap, content)+3), nil,
			ErrVerification},
		{"encapsulated and detached content", encap, content, ErrVerification},
		{"signing time changed", flip(detached, at(detached, []byte("260501103015Z"))+11),
			content, ErrVerification},
		{"eContentType changed", bytes.Replace(detached, idData, otherOID, 1), content,
			ErrVerification},
		{"signature changed", flip(detached, len(detached)-1), content, ErrVerification},
		{"certificate key changed", flip(detached,
			at(detached, f.signer.Cert.RawSubjectPublicKeyInfo)+40), content, nil},
		{"certificate serial changed", flip(detached,
			at(detached, f.signer.Cert.RawTBSCertificate)+11), content, ErrVerification},
		{"trailing data", append(bytes.Clone(detached), 0), content, ErrMalformed},
		{"truncated", detached[:len(detached)-1], content, ErrMalformed},
		{"empty", nil, content, ErrMalformed},
		{"not CMS", []byte("-----BEGIN PKCS7-----"), content, ErrMalformed},
		{"oversize", make([]byte, MaxSignedDataSize+1), content, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Verify(tc.der, tc.content)
			if err == nil {
				t.Fatalf("Verify succeeded (signer %v), want an error", got.Signer.Subject)
			}
			if tc.want == nil {
				if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrVerification) {
					t.Errorf("error %v wraps neither ErrMalformed nor ErrVerification", err)
				}
			} else if !errors.Is(err, tc.want) {
				t.Errorf("error %v does not wrap %v", err, tc.want)
			}
		})
	}
}

// writePEM writes certs to path as PEM.
func writePEM(t *testing.T, path string, certs ...*x509.Certificate) {
	t.Helper()
	var buf bytes.Buffer
	for _, c := range certs {
		if err := pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestOpenSSLVerifies checks that a peer nobody here wrote accepts what
// Sign writes: OpenSSL's CMS verification, detached and encapsulated.
func TestOpenSSLVerifies(t *testing.T) {
	openssl := testenv.NeedCommand(t, "openssl")
	f := newFixture(t)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	writePEM(t, caFile, f.ca.Cert)
	// Bytes a text-mode tool would change: bare LF, CRLF, trailing spaces.
	content := []byte("<Envelope>\n  line one  \r\nline two\n</Envelope>\n")
	contentFile := filepath.Join(dir, "content.xml")
	if err := os.WriteFile(contentFile, content, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		opts SignOptions
	}{
		{"detached", SignOptions{Detached: true, SigningTime: time.Now(),
			OCSP: [][]byte{f.ocsp}}},
		{"encapsulated", SignOptions{SigningTime: time.Now()}},
		{"encapsulated with ESS and key identifier", SignOptions{SigningCertificateV2: true,
			SubjectKeyID: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			der, err := Sign(content, f.signer.Key, f.signer.Cert, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			sigFile := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".der")
			if err := os.WriteFile(sigFile, der, 0o644); err != nil {
				t.Fatal(err)
			}
			args := []string{"cms", "-verify", "-binary", "-inform", "DER", "-in", sigFile,
				"-CAfile", caFile}
			if tc.opts.Detached {
				args = append(args, "-content", contentFile)
			}
			cmd := exec.Command(openssl, args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
			}
			if !bytes.Equal(out, content) {
				t.Errorf("openssl printed %q, want %q", out, content)
			}

			// The same signature over other bytes must be refused by
			// OpenSSL too, or the test above proves nothing.
			if tc.opts.Detached {
				bad := filepath.Join(dir, "bad.xml")
				if err := os.WriteFile(bad, flip(content, 3), 0o644); err != nil {
					t.Fatal(err)
				}
				args[len(args)-1] = bad
				if err := exec.Command(openssl, args...).Run(); err == nil {
					t.Error("openssl accepted a signature over changed content")
				}
			}
		})
	}
}

func BenchmarkSign(b *testing.B) {
	f := newFixture(b)
	content := bytes.Repeat([]byte("0123456789"), 1024)
	opts := SignOptions{Detached: true, SigningTime: time.Now(), OCSP: [][]byte{f.ocsp}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Sign(content, f.signer.Key, f.signer.Cert, opts); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	f := newFixture(b)
	content := bytes.Repeat([]byte("0123456789"), 1024)
	der, err := Sign(content, f.signer.Key, f.signer.Cert,
		SignOptions{Detached: true, SigningTime: time.Now(), OCSP: [][]byte{f.ocsp}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Verify(der, content); err != nil {
			b.Fatal(err)
		}
	}
}

// TestVerifiesOpenSSL checks the other direction: what OpenSSL signs,
// with its own choice of attributes, Verify accepts.
func TestVerifiesOpenSSL(t *testing.T) {
	openssl := testenv.NeedCommand(t, "openssl")
	f := newFixture(t)
	dir := t.TempDir()
	certFile := filepath.Join(dir, "signer.pem")
	writePEM(t, certFile, f.signer.Cert)
	keyDER, err := x509.MarshalPKCS8PrivateKey(f.signer.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "signer.key")
	if err := os.WriteFile(keyFile,
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	content := []byte("<Envelope>\n  signed by OpenSSL\r\n</Envelope>\n")
	contentFile := filepath.Join(dir, "content.xml")
	if err := os.WriteFile(contentFile, content, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, detached := range []bool{true, false} {
		sigFile := filepath.Join(dir, "sig.der")
		args := []string{"cms", "-sign", "-binary", "-md", "sha256", "-signer", certFile,
			"-inkey", keyFile, "-in", contentFile, "-outform", "DER", "-out", sigFile}
		if !detached {
			args = append(args, "-nodetach")
		}
		if out, err := exec.Command(openssl, args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		der, err := os.ReadFile(sigFile)
		if err != nil {
			t.Fatal(err)
		}
		var detachedContent []byte
		if detached {
			detachedContent = content
		}
		got, err := Verify(der, detachedContent)
		if err != nil {
			t.Fatalf("detached %v: %v", detached, err)
		}
		if !bytes.Equal(got.Content, content) || !got.Signer.Equal(f.signer.Cert) ||
			got.SigningTime.IsZero() {
			t.Errorf("detached %v: got content %q, signer %v, signing time %v", detached,
				got.Content, got.Signer.Subject, got.SigningTime)
		}
		if detached {
			if _, err := Verify(der, flip(content, 5)); !errors.Is(err, ErrVerification) {
				t.Errorf("changed content: %v, want ErrVerification", err)
			}
		}
	}
}
