package sign

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/soap"
	"github.com/qapi-az/qapi/internal/testenv"
	"github.com/qapi-az/qapi/internal/testpki"
)

var (
	client   = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1400057421"}
	provider = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "9900037691",
		SubsystemCode: "registry"}
)

// request is a SOAP request with what a careless re-encoder would change:
// LF and CRLF line endings, trailing spaces, a byte order mark, non-ASCII.
var request = []byte("\xef\xbb\xbf<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" +
	"<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">  \r\n" +
	"<soap:Header/>\n<soap:Body><ad>Əliyev Şəhla</ad>\r</soap:Body>\n</soap:Envelope>")

type fixture struct {
	ca     *testpki.CA
	roots  *x509.CertPool
	signer *Signer
	ocsp   []byte
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ca, err := testpki.NewCA("Qapı test CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueSigning(client)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ocsp.CreateResponse(ca.Cert, ca.Cert, ocsp.Response{
		Status:       ocsp.Good,
		SerialNumber: cert.Cert.SerialNumber,
		ThisUpdate:   time.Now().Add(-time.Minute),
		NextUpdate:   time.Now().Add(time.Hour),
	}, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return &fixture{
		ca:    ca,
		roots: roots,
		signer: &Signer{Key: cert.Key, Cert: cert.Cert,
			OCSP: func() ([]byte, error) { return resp, nil }},
		ocsp: resp,
	}
}

func (f *fixture) opts() VerifyOptions {
	return VerifyOptions{Roots: f.roots, Now: time.Now(), Member: client, MaxBytes: 64 << 10}
}

// issue makes a certificate of ca for a fresh key, with serialNumber,
// key usage and validity as given.
func issue(t *testing.T, ca *testpki.CA, serial string, ku x509.KeyUsage,
	notBefore, notAfter time.Time) *Signer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	n, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: n,
		Subject:      pkix.Name{CommonName: serial, SerialNumber: serial},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     ku,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &Signer{Key: key, Cert: cert}
}

func TestSignVerify(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	body, ct, err := f.signer.Sign(request, now)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ct, "multipart/signed; protocol=\"application/pkcs7-signature\"; "+
		"micalg=sha-256; boundary=") {
		t.Errorf("Content-Type = %q", ct)
	}
	var checked bool
	opts := f.opts()
	opts.CheckOCSP = func(cert, issuer *x509.Certificate, resp []byte) error {
		checked = true
		if !cert.Equal(f.signer.Cert) || !issuer.Equal(f.ca.Cert) {
			return fmt.Errorf("CheckOCSP got %v issued by %v", cert.Subject, issuer.Subject)
		}
		_, err := ocsp.ParseResponseForCert(resp, cert, issuer)
		return err
	}
	v, err := Verify(body, ct, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(v.SOAP, request) {
		t.Errorf("SOAP = %q, want %q", v.SOAP, request)
	}
	if !v.Signer.Equal(f.signer.Cert) {
		t.Errorf("Signer = %v", v.Signer.Subject)
	}
	if !v.SigningTime.Equal(now.Truncate(time.Second)) {
		t.Errorf("SigningTime = %v, want %v", v.SigningTime, now.Truncate(time.Second))
	}
	if !bytes.Equal(v.OCSP, f.ocsp) {
		t.Error("OCSP is not the stapled response")
	}
	if !checked {
		t.Error("CheckOCSP was not called")
	}

	// A response is verified against the provider's member, which owns the
	// subsystem named in the message.
	pc, err := f.ca.IssueSigning(provider)
	if err != nil {
		t.Fatal(err)
	}
	body, ct, err = (&Signer{Key: pc.Key, Cert: pc.Cert}).Sign(request, now)
	if err != nil {
		t.Fatal(err)
	}
	opts = f.opts()
	opts.Member = provider
	if _, err := Verify(body, ct, opts); err != nil {
		t.Errorf("response signed by the provider's member: %v", err)
	}
}

func TestSignEmptyAndLarge(t *testing.T) {
	f := newFixture(t)
	for _, n := range []int{0, 1, 56, 57, 58, 10 << 10} {
		msg := bytes.Repeat([]byte{'\n', 'x', '\r', 0xc9}, n)[:n]
		body, ct, err := f.signer.Sign(msg, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		v, err := Verify(body, ct, f.opts())
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if !bytes.Equal(v.SOAP, msg) {
			t.Errorf("%d bytes: SOAP differs", n)
		}
	}
}

// replaceSOAP returns body with the first part's base64 line re-encoding
// soap; the signature is left as it was.
func replaceSOAP(t *testing.T, body []byte, old, new []byte) []byte {
	t.Helper()
	oldB64 := base64.StdEncoding.EncodeToString(old[:57])
	newB64 := base64.StdEncoding.EncodeToString(new[:57])
	if !bytes.Contains(body, []byte(oldB64)) {
		t.Fatal("test setup: first base64 line not found")
	}
	return bytes.Replace(body, []byte(oldB64), []byte(newB64), 1)
}

func TestVerifyRefuses(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	body, ct, err := f.signer.Sign(request, now)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(s *Signer) ([]byte, string) {
		t.Helper()
		b, c, err := s.Sign(request, now)
		if err != nil {
			t.Fatal(err)
		}
		return b, c
	}

	otherCA, err := testpki.NewCA("Qapı untrusted CA")
	if err != nil {
		t.Fatal(err)
	}
	untrusted, err := otherCA.IssueSigning(client)
	if err != nil {
		t.Fatal(err)
	}
	otherMember, err := f.ca.IssueSigning(provider)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := f.ca.IssueAuth(client, "ss1")
	if err != nil {
		t.Fatal(err)
	}
	expired := issue(t, f.ca, client.String(), x509.KeyUsageDigitalSignature,
		now.AddDate(-2, 0, 0), now.AddDate(-1, 0, 0))
	wrongUsage := issue(t, f.ca, client.String(), x509.KeyUsageKeyEncipherment,
		now.Add(-time.Hour), now.AddDate(1, 0, 0))
	noMember := issue(t, f.ca, "not a member", x509.KeyUsageDigitalSignature,
		now.Add(-time.Hour), now.AddDate(1, 0, 0))

	tamperedSOAP := bytes.Clone(request)
	tamperedSOAP[50] ^= 0x20
	// A base64 character inside the ECDSA signature value, which ends the
	// DER; the middle of the part would hit the certificates or the OCSP
	// response, which the CMS signature does not cover.
	end := bytes.LastIndex(body, []byte("\r\n--"+boundaryOf(ct)+"--"))
	tamperedSig := bytes.Clone(body)
	i := end - 12
	if tamperedSig[i] == 'A' {
		tamperedSig[i] = 'B'
	} else {
		tamperedSig[i] = 'A'
	}

	type tc struct {
		name string
		body []byte
		ct   string
		opts func(*VerifyOptions)
		code string
		// detail, when set, must appear in the fault's detail: it shows
		// which check refused.
		detail string
	}
	b, c := sign(&Signer{Key: otherMember.Key, Cert: otherMember.Cert})
	cases := []tc{
		{"wrong member", b, c, nil, soap.CodeSignerMismatch, ""},
		{"expected member differs", body, ct,
			func(o *VerifyOptions) { o.Member = provider }, soap.CodeSignerMismatch, ""},
	}
	b, c = sign(expired)
	cases = append(cases, tc{"expired certificate", b, c, nil, soap.CodeBadCertificate,
		"expired"})
	cases = append(cases, tc{"certificate expired by now", body, ct,
		func(o *VerifyOptions) { o.Now = now.AddDate(2, 0, 0) }, soap.CodeBadCertificate,
		"expired"})
	b, c, err = f.signer.Sign(request, now.Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cases = append(cases, tc{"signed before the certificate was valid", b, c, nil,
		soap.CodeBadCertificate, "signing time"})
	b, c = sign(&Signer{Key: untrusted.Key, Cert: untrusted.Cert})
	cases = append(cases, tc{"untrusted CA", b, c, nil, soap.CodeBadCertificate,
		"unknown authority"})
	b, c = sign(wrongUsage)
	cases = append(cases, tc{"wrong key usage", b, c, nil, soap.CodeBadCertificate,
		"nonRepudiation"})
	b, c = sign(&Signer{Key: auth.Key, Cert: auth.Cert})
	cases = append(cases, tc{"authentication certificate", b, c, nil,
		soap.CodeBadCertificate, ""})
	b, c = sign(noMember)
	cases = append(cases, tc{"certificate names no member", b, c, nil,
		soap.CodeBadCertificate, ""})
	cases = append(cases, []tc{
		{"OCSP check refuses", body, ct, func(o *VerifyOptions) {
			o.CheckOCSP = func(_, _ *x509.Certificate, _ []byte) error {
				return errors.New("revoked")
			}
		}, soap.CodeBadCertificate, ""},
		{"tampered SOAP byte", replaceSOAP(t, body, request, tamperedSOAP), ct, nil,
			soap.CodeBadSignature, "messageDigest"},
		{"tampered part header", bytes.Replace(body, []byte("charset=UTF-8"),
			[]byte("charset=utf-8"), 1), ct, nil, soap.CodeBadSignature, ""},
		{"tampered signature", tamperedSig, ct, nil, soap.CodeBadSignature,
			"signature does not verify"},
		{"truncated multipart", body[:len(body)-10], ct, nil, soap.CodeMalformed, ""},
		{"truncated in the first part", body[:200], ct, nil, soap.CodeMalformed, ""},
		{"third part", bytes.Replace(body, []byte(boundaryOf(ct)+"--"),
			[]byte(boundaryOf(ct)), 1), ct, nil, soap.CodeMalformed, ""},
		{"trailing data", append(bytes.Clone(body), "x"...), ct, nil, soap.CodeMalformed, ""},
		{"preamble", append([]byte("preamble\r\n"), body...), ct, nil, soap.CodeMalformed, ""},
		{"LF framing", bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n")), ct, nil,
			soap.CodeMalformed, ""},
		{"wrong boundary", body, strings.Replace(ct, "qapi-", "qapj-", 1), nil,
			soap.CodeMalformed, ""},
		{"not multipart/signed", body, "text/xml; charset=UTF-8", nil, soap.CodeMalformed, ""},
		{"wrong micalg", body, strings.Replace(ct, "sha-256", "sha1", 1), nil,
			soap.CodeMalformed, ""},
		{"wrong protocol", body, strings.Replace(ct, "pkcs7-signature", "pgp-signature", 1),
			nil, soap.CodeMalformed, ""},
		{"oversize", body, ct, func(o *VerifyOptions) { o.MaxBytes = len(body) - 1 },
			soap.CodeSizeExceeded, ""},
		{"no roots", body, ct, func(o *VerifyOptions) { o.Roots = nil }, soap.CodeInternal, ""},
	}...)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := f.opts()
			if tc.opts != nil {
				tc.opts(&opts)
			}
			v, err := Verify(tc.body, tc.ct, opts)
			if err == nil {
				t.Fatalf("Verify accepted it, signed by %v", v.Signer.Subject)
			}
			var flt *soap.Fault
			if !errors.As(err, &flt) {
				t.Fatalf("error %v is %T, want *soap.Fault", err, err)
			}
			if flt.Code != tc.code {
				t.Errorf("code %s (%v), want %s", flt.Code, err, tc.code)
			}
			if !strings.Contains(flt.Detail, tc.detail) {
				t.Errorf("detail %q does not mention %q", flt.Detail, tc.detail)
			}
			if bytes.Contains([]byte(flt.String+flt.Detail), []byte("soap:Body")) {
				t.Error("the fault echoes the message body")
			}
		})
	}

	// The untouched body still verifies: the refusals above come from the
	// changes, not from the fixture.
	if _, err := Verify(body, ct, f.opts()); err != nil {
		t.Fatalf("untouched body: %v", err)
	}
}

// canonicalRequest is a SOAP request already in S/MIME canonical form:
// CRLF line endings only, non-ASCII, a trailing CRLF, and a line longer
// than OpenSSL's 1024-byte line buffer with a CRLF astride its end.
var canonicalRequest = []byte("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n" +
	"<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">\r\n" +
	"<soap:Body><ad>Əliyev Şəhla</ad><long>" + strings.Repeat("x", 1020) + "</long>\r\n" +
	"<pad>" + strings.Repeat("y", 1017) + "\r\n</pad></soap:Body></soap:Envelope>\r\n")

// TestOpenSSLVerifies writes signed messages as S/MIME files and has
// OpenSSL, a peer nobody here wrote, verify them: "openssl cms -verify must
// accept what we sign". A request in canonical form travels as it is, any
// other base64-encoded; both must verify, and print the SOAP bytes signed.
func TestOpenSSLVerifies(t *testing.T) {
	openssl := testenv.NeedCommand(t, "openssl")
	f := newFixture(t)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.ca.Cert.Raw})
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	verify := func(t *testing.T, eml []byte) ([]byte, error) {
		t.Helper()
		emlFile := filepath.Join(t.TempDir(), "msg.eml")
		if err := os.WriteFile(emlFile, eml, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(openssl, "cms", "-verify", "-in", emlFile, "-inform", "SMIME",
			"-CAfile", caFile)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("%v\n%s", err, stderr.Bytes())
		}
		return out, nil
	}
	for _, tc := range []struct {
		name, encoding string
		soap           []byte
	}{
		{"LF and bare CR", "base64", request},
		{"canonical", "binary", canonicalRequest},
		{"one line", "binary", tenKB()[:10<<10-1]}, // without tenKB's final LF
		{"final LF", "base64", tenKB()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, ct, err := f.signer.Sign(tc.soap, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			cte := "Content-Transfer-Encoding: " + tc.encoding + "\r\n\r\n"
			if !bytes.Contains(body, []byte(cte)) {
				t.Fatalf("the SOAP part is not sent %s", tc.encoding)
			}
			eml := append([]byte("MIME-Version: 1.0\r\nContent-Type: "+ct+"\r\n\r\n"), body...)
			out, err := verify(t, eml)
			if err != nil {
				t.Fatalf("openssl cms -verify: %v", err)
			}
			// OpenSSL prints the signed entity: headers, then the SOAP
			// message as it was encoded.
			msg, err := mail.ReadMessage(bytes.NewReader(out))
			if err != nil {
				t.Fatalf("openssl's output is not a MIME entity: %v\n%q", err, out)
			}
			if got := msg.Header.Get("Content-Type"); got != SOAPPartType {
				t.Errorf("openssl's output has Content-Type %q", got)
			}
			var printed bytes.Buffer
			if _, err := printed.ReadFrom(msg.Body); err != nil {
				t.Fatal(err)
			}
			got := printed.Bytes()
			if tc.encoding == "base64" {
				if got, err = decodeBase64(got); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(got, tc.soap) {
				t.Errorf("openssl printed SOAP %q, want %q", got, tc.soap)
			}
			if v, err := Verify(body, ct, f.opts()); err != nil {
				t.Errorf("Verify: %v", err)
			} else if !bytes.Equal(v.SOAP, tc.soap) {
				t.Error("Verify returned other SOAP bytes than were signed")
			}

			// A changed SOAP byte must make OpenSSL refuse too.
			var bad []byte
			if tc.encoding == "base64" {
				tampered := bytes.Clone(tc.soap)
				tampered[40] ^= 0x20
				bad = replaceSOAP(t, eml, tc.soap, tampered)
			} else {
				bad = bytes.Clone(eml)
				i := bytes.Index(bad, []byte(cte)) + len(cte) + 40
				bad[i] ^= 0x20
			}
			if out, err := verify(t, bad); err == nil {
				t.Errorf("openssl accepted a tampered message:\n%s", out)
			}
		})
	}
}

// boundaryOf returns the boundary parameter of a Content-Type Sign wrote.
func boundaryOf(ct string) string {
	_, b, _ := strings.Cut(ct, "boundary=\"")
	return strings.TrimSuffix(b, "\"")
}

// benchMessages are 10 KB SOAP messages sent binary (canonical, on one
// line) and base64-encoded (with a final LF).
func benchMessages() map[string][]byte {
	return map[string][]byte{"binary": tenKB()[:10<<10-1], "base64": tenKB()}
}

func BenchmarkSign(b *testing.B) {
	f := newFixture(b)
	now := time.Now()
	for name, msg := range benchMessages() {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := f.signer.Sign(msg, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	f := newFixture(b)
	opts := f.opts()
	opts.CheckOCSP = func(cert, issuer *x509.Certificate, resp []byte) error {
		_, err := ocsp.ParseResponseForCert(resp, cert, issuer)
		return err
	}
	for name, msg := range benchMessages() {
		b.Run(name, func(b *testing.B) {
			body, ct, err := f.signer.Sign(msg, time.Now())
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Verify(body, ct, opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// tenKB returns a SOAP message of 10 KB, the largest request of clause 5.2.
func tenKB() []byte {
	head := []byte("<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">" +
		"<soap:Body><data>")
	tail := []byte("</data></soap:Body></soap:Envelope>\n")
	fill := bytes.Repeat([]byte("x"), 10<<10-len(head)-len(tail))
	return bytes.Join([][]byte{head, fill, tail}, nil)
}

func TestCheckSignature(t *testing.T) {
	// A CA nobody trusts: CheckSignature checks no chain, only the
	// signature.
	ca, err := testpki.NewCA("Qapı archive test CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueSigning(client)
	if err != nil {
		t.Fatal(err)
	}
	body, ct, err := (&Signer{Key: cert.Key, Cert: cert.Cert}).Sign(request, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	v, err := CheckSignature(body, ct, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(v.SOAP, request) || !v.Signer.Equal(cert.Cert) || v.Chain != nil {
		t.Errorf("CheckSignature: SOAP %q, signer %v, chain %v", v.SOAP, v.Signer.Subject,
			v.Chain)
	}
	tampered := bytes.Clone(request)
	tampered[3] ^= 1
	var flt *soap.Fault
	_, err = CheckSignature(replaceSOAP(t, body, request, tampered), ct, 0)
	if !errors.As(err, &flt) || flt.Code != soap.CodeBadSignature {
		t.Errorf("tampered: %v, want %s", err, soap.CodeBadSignature)
	}
	_, err = CheckSignature(body, ct, len(body)-1)
	if !errors.As(err, &flt) || flt.Code != soap.CodeSizeExceeded {
		t.Errorf("oversize: %v, want %s", err, soap.CodeSizeExceeded)
	}
}

func TestDefaultMaxBytes(t *testing.T) {
	f := newFixture(t)
	big := bytes.Repeat([]byte("<a/>"), DefaultMaxBytes/4)
	body, ct, err := f.signer.Sign(big, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	opts := f.opts()
	opts.MaxBytes = 0
	_, err = Verify(body, ct, opts)
	var flt *soap.Fault
	if !errors.As(err, &flt) || flt.Code != soap.CodeSizeExceeded {
		t.Errorf("%d-byte body with MaxBytes 0: %v, want %s", len(body), err,
			soap.CodeSizeExceeded)
	}
	opts.MaxBytes = len(body)
	if _, err := Verify(body, ct, opts); err != nil {
		t.Errorf("the same body with MaxBytes %d: %v", len(body), err)
	}
}

// hasCode reports whether err is a *soap.Fault with code.
func hasCode(err error, code string) bool {
	f := soap.AsFault(err)
	return f != nil && f.Code == code
}

func TestParse(t *testing.T) {
	f := newFixture(t)
	body, ct, err := f.signer.Sign(request, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	msg, err := Parse(body, ct, 0)
	if err != nil || !bytes.Equal(msg.SOAP, request) {
		t.Fatalf("Parse = %v, %v; want the SOAP message signed", msg, err)
	}
	if _, err := msg.Verify(f.opts()); err != nil {
		t.Errorf("Verify of the parsed message: %v", err)
	}
	// The SOAP part of a tampered message comes out as it is: Parse checks
	// no signature, which is what Verify is for.
	tampered := bytes.Clone(request)
	tampered[3] ^= 1
	msg, err = Parse(replaceSOAP(t, body, request, tampered), ct, 0)
	if err != nil || !bytes.Equal(msg.SOAP, tampered) {
		t.Fatalf("tampered: Parse = %v, %v; want the tampered bytes", msg, err)
	}
	if _, err := msg.Verify(f.opts()); err == nil {
		t.Error("Verify accepted the tampered message")
	}
	if _, err := Parse(body, ct, len(body)-1); !hasCode(err, soap.CodeSizeExceeded) {
		t.Errorf("Parse of a body over maxBytes: %v, want %s", err, soap.CodeSizeExceeded)
	}
	for name, c := range map[string]struct {
		body []byte
		ct   string
	}{
		"not multipart/signed": {body, "text/xml"},
		"other boundary":       {body, strings.Replace(ct, "qapi-", "qapi-x", 1)},
		"LF framing":           {bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n")), ct},
		"one part":             {body[:bytes.Index(body, []byte("\r\n--qapi-"))], ct},
	} {
		if _, err := Parse(c.body, c.ct, 0); !hasCode(err, soap.CodeMalformed) {
			t.Errorf("%s: Parse = %v, want %s", name, err, soap.CodeMalformed)
		}
	}
}

func TestCanonical(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"", true},
		{"<a/>", true},
		{"<a>\r\n</a>\r\n", true},
		{"\r\n", true},
		{"<a>\n</a>", false},
		{"\n", false},
		{"<a>\r</a>", false},
		{"<a/>\r", false},
		{"<a>\r\r\n</a>", false},
		{"<a>\r\n\n</a>", false},
		{"<a>\x00</a>", false},
	} {
		if got := canonical([]byte(tc.in)); got != tc.want {
			t.Errorf("canonical(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
