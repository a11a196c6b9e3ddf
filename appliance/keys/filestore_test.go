package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/qapi-az/qapi/internal/testenv"
)

func open(t *testing.T, dir string) *FileStore {
	t.Helper()
	s, err := NewFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func publicDER(t *testing.T, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestFileStorePersists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	s := open(t, dir)
	sig, err := s.Signer(Signing)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := s.Signer(Authentication)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := s.Secret(LogEncryption)
	if err != nil {
		t.Fatal(err)
	}
	if len(secret) != 32 {
		t.Fatalf("secret is %d bytes, want 32", len(secret))
	}
	if bytes.Equal(publicDER(t, sig), publicDER(t, auth)) {
		t.Error("signing and authentication keys are the same key")
	}
	if pub := sig.Public().(*ecdsa.PublicKey); pub.Curve != elliptic.P256() {
		t.Errorf("signing key curve %v, want P-256", pub.Curve.Params().Name)
	}
	// The key signs, and the signature verifies.
	h := sha256.Sum256([]byte("message"))
	asn, err := sig.Sign(rand.Reader, h[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(sig.Public().(*ecdsa.PublicKey), h[:], asn) {
		t.Error("signature does not verify")
	}
	secret[0] ^= 0xff // the caller's copy; must not change the store's
	s.Close()
	if _, err := s.Signer(Signing); err == nil {
		t.Error("Signer works after Close")
	}

	r := open(t, dir)
	for _, p := range []Purpose{Signing, Authentication} {
		k, err := r.Signer(p)
		if err != nil {
			t.Fatal(err)
		}
		want := map[Purpose]crypto.Signer{Signing: sig, Authentication: auth}[p]
		if !bytes.Equal(publicDER(t, k), publicDER(t, want)) {
			t.Errorf("%s key changed across reopen", p)
		}
	}
	again, err := r.Secret(LogEncryption)
	if err != nil {
		t.Fatal(err)
	}
	secret[0] ^= 0xff
	if !bytes.Equal(again, secret) {
		t.Error("log-encryption secret changed across reopen")
	}
}

func TestFileStoreModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	s := open(t, dir)
	if _, err := s.Signer(Signing); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Secret(LogEncryption); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("directory mode %04o, want 0700", perm)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", e.Name(), perm)
		}
	}
	if got := strings.Join(names, " "); got != "log-encryption.secret signing.key" {
		t.Errorf("directory holds %q, want the two key files and no temporary file", got)
	}

	// A key file others can read is refused, naming the file.
	if err := os.Chmod(s.Path(Signing), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = open(t, dir).Signer(Signing)
	if err == nil || !strings.Contains(err.Error(), s.Path(Signing)) ||
		!strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key: error %v, want one naming the file and chmod 600", err)
	}
}

func TestFileStoreDamaged(t *testing.T) {
	other, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := x509.MarshalPKCS8PrivateKey(other)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		purpose Purpose
		content []byte
	}{
		{"empty", Signing, nil},
		{"not PEM", Signing, []byte("garbage")},
		{"truncated PEM", Signing, []byte("-----BEGIN PRIVATE KEY-----\nMIGH")},
		{"bad PKCS #8", Authentication, []byte("-----BEGIN PRIVATE KEY-----\n" +
			"AAAA\n-----END PRIVATE KEY-----\n")},
		{"wrong curve", Signing, pemBlock("PRIVATE KEY", p384)},
		{"wrong block type", Signing, pemBlock("EC PRIVATE KEY", p384)},
		{"two blocks", Signing, append(pemBlock("PRIVATE KEY", p384),
			pemBlock("PRIVATE KEY", p384)...)},
		{"short secret", LogEncryption, pemBlock("QAPI SECRET KEY", make([]byte, 16))},
		{"oversize", Signing, bytes.Repeat([]byte("A"), 20<<10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir)
			if err := os.WriteFile(s.Path(tc.purpose), tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			if tc.purpose == LogEncryption {
				_, err = s.Secret(tc.purpose)
			} else {
				_, err = s.Signer(tc.purpose)
			}
			if err == nil {
				t.Fatal("a damaged key file was accepted")
			}
			if !strings.Contains(err.Error(), s.Path(tc.purpose)) {
				t.Errorf("error %q does not name the file", err)
			}
			// Never overwritten: the damaged file is left for the operator.
			got, rerr := os.ReadFile(s.Path(tc.purpose))
			if rerr != nil || !bytes.Equal(got, tc.content) {
				t.Error("the damaged key file was changed")
			}
		})
	}
}

func pemBlock(typ string, b []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b})
}

// TestFileStoreConcurrent has several stores on one directory, standing for
// several processes, ask for the same keys at once: all must get the same
// key, and exactly one file per key must exist.
func TestFileStoreConcurrent(t *testing.T) {
	dir := t.TempDir()
	const stores, perStore = 4, 8
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		pubs    = map[string]bool{}
		secrets = map[string]bool{}
	)
	for range stores {
		s := open(t, dir)
		for range perStore {
			wg.Go(func() {
				k, err := s.Signer(Signing)
				if err != nil {
					t.Error(err)
					return
				}
				sec, err := s.Secret(LogEncryption)
				if err != nil {
					t.Error(err)
					return
				}
				der, err := x509.MarshalPKIXPublicKey(k.Public())
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				pubs[string(der)] = true
				secrets[string(sec)] = true
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	if len(pubs) != 1 || len(secrets) != 1 {
		t.Errorf("got %d signing keys and %d secrets, want one of each", len(pubs),
			len(secrets))
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("directory holds %d files, want 2", len(entries))
	}
}

func TestFileStorePurposes(t *testing.T) {
	s := open(t, t.TempDir())
	if _, err := s.Signer(LogEncryption); err == nil {
		t.Error("Signer(LogEncryption) succeeded")
	}
	if _, err := s.Secret(Signing); err == nil {
		t.Error("Secret(Signing) succeeded")
	}
	if _, err := s.Signer("../../etc/passwd"); err == nil {
		t.Error("Signer of an unknown purpose succeeded")
	}
	if _, err := s.ExistingSigner(Authentication); !errors.Is(err, ErrNotFound) {
		t.Errorf("ExistingSigner of a missing key: %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(s.Path(Authentication)); !errors.Is(err, os.ErrNotExist) {
		t.Error("ExistingSigner created a key")
	}
	k, err := s.Signer(Authentication)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := s.ExistingSigner(Authentication); err != nil ||
		!bytes.Equal(publicDER(t, e), publicDER(t, k)) {
		t.Errorf("ExistingSigner after Signer: %v", err)
	}
}

func TestNewFileStoreNotADirectory(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFileStore(f); err == nil {
		t.Error("NewFileStore accepted a file")
	}
}

func TestCertificateRequest(t *testing.T) {
	s := open(t, t.TempDir())
	k, err := s.Signer(Signing)
	if err != nil {
		t.Fatal(err)
	}
	subject := pkix.Name{
		CommonName:   "AZ/GOV/1400057421",
		SerialNumber: "AZ/GOV/1400057421",
		Organization: []string{"Azərbaycan Respublikası Vergilər Nazirliyi"},
		Country:      []string{"AZ"},
	}
	der, err := CertificateRequest(k, subject)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Error(err)
	}
	if csr.SignatureAlgorithm != x509.ECDSAWithSHA256 {
		t.Errorf("signature algorithm %v, want ECDSA with SHA-256", csr.SignatureAlgorithm)
	}
	if csr.Subject.String() != subject.String() {
		t.Errorf("subject %q, want %q", csr.Subject, subject)
	}
	if !bytes.Equal(publicDER(t, k), mustPKIX(t, csr.PublicKey)) {
		t.Error("the request is not for the key")
	}

	// OpenSSL, which the certification centre's administrator may use to
	// inspect a request (4.1.2.10), accepts it too.
	openssl := testenv.NeedCommand(t, "openssl")
	f := filepath.Join(t.TempDir(), "req.der")
	if err := os.WriteFile(f, der, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(openssl, "req", "-verify", "-noout", "-inform", "DER",
		"-in", f).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("verify OK")) {
		t.Errorf("openssl req -verify: %v\n%s", err, out)
	}
}

func mustPKIX(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
