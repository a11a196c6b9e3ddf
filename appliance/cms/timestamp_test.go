package cms

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qapi-az/qapi/internal/testenv"
	"github.com/qapi-az/qapi/internal/testpki"
)

// tstInfo is the RFC 3161 TSTInfo, the fields a minimal token needs.
type tstInfo struct {
	Version        int
	Policy         asn1.ObjectIdentifier
	MessageImprint messageImprint
	SerialNumber   *big.Int
	GenTime        time.Time `asn1:"generalized"`
}

type messageImprint struct {
	HashAlgorithm pkix.AlgorithmIdentifier
	HashedMessage []byte
}

// newTSA issues a time-stamping certificate: RFC 3161, 2.3 wants the
// extended key usage timeStamping, alone and critical.
func newTSA(t *testing.T, ca *testpki.CA) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	eku, err := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 8}})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "Qapı test TSA"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtraExtensions: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Critical: true, Value: eku},
		},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// TestTimeStampToken signs a TSTInfo as an RFC 3161 time-stamp token and
// has `openssl ts -verify` check it, as the message log's time stamps
// must pass.
func TestTimeStampToken(t *testing.T) {
	f := newFixture(t)
	tsaCert, tsaKey := newTSA(t, f.ca)
	data := []byte("hash chain head of a message log batch")
	digest := sha256.Sum256(data)
	info, err := asn1.Marshal(tstInfo{
		Version: 1,
		Policy:  asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1},
		MessageImprint: messageImprint{
			HashAlgorithm: pkix.AlgorithmIdentifier{Algorithm: oidSHA256},
			HashedMessage: digest[:],
		},
		SerialNumber: big.NewInt(42),
		GenTime:      time.Now().UTC().Truncate(time.Second),
	})
	if err != nil {
		t.Fatal(err)
	}
	token, err := Sign(info, tsaKey, tsaCert, SignOptions{
		ContentType:          OIDTSTInfo,
		SigningTime:          time.Now(),
		SigningCertificateV2: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Verify(token, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !got.ContentType.Equal(OIDTSTInfo) || !bytes.Equal(got.Content, info) ||
		!got.SigningCertificateV2 {
		t.Errorf("Verify: content type %v, ESS %v", got.ContentType, got.SigningCertificateV2)
	}

	// An ESS attribute naming another certificate is refused.
	tsaHash := sha256.Sum256(tsaCert.Raw)
	i := bytes.Index(token, tsaHash[:])
	if i < 0 {
		t.Fatal("test setup: ESS certificate hash not found in the token")
	}
	_, err = Verify(flip(token, i+7), nil)
	if !errors.Is(err, ErrVerification) || !strings.Contains(err.Error(), "signingCertificateV2") {
		t.Errorf("ESS certificate hash changed: %v, want a signingCertificateV2 refusal", err)
	}

	openssl := testenv.NeedCommand(t, "openssl")
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	writePEM(t, caFile, f.ca.Cert)
	tokenFile := filepath.Join(dir, "token.der")
	dataFile := filepath.Join(dir, "data")
	if err := os.WriteFile(tokenFile, token, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dataFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"ts", "-verify", "-token_in", "-in", tokenFile, "-data", dataFile,
		"-CAfile", caFile}
	out, err := exec.Command(openssl, args...).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("Verification: OK")) {
		t.Fatalf("openssl ts -verify: %v\n%s", err, out)
	}

	// Without the ESS attribute, OpenSSL must refuse the token: the check
	// above depends on it.
	bare, err := Sign(info, tsaKey, tsaCert, SignOptions{ContentType: OIDTSTInfo})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokenFile, bare, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(openssl, args...).CombinedOutput(); err == nil {
		t.Errorf("openssl ts -verify accepted a token without signingCertificateV2:\n%s", out)
	}
}
