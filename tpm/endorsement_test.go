package tpm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/qapi-az/qapi/appliance/keys"
)

// testCA is a TPM manufacturer's certification authority for tests.
type testCA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{key: key, cert: cert}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// issueEK issues an EK certificate for pub as manufacturers do: an empty
// subject and a critical subject alternative name holding only a directory
// name with the TPM's manufacturer, model and version.
func (ca *testCA) issueEK(t testing.TB, pub any) []byte {
	t.Helper()
	tpmAttr := func(oid asn1.ObjectIdentifier, v string) []pkix.AttributeTypeAndValue {
		return []pkix.AttributeTypeAndValue{{Type: oid, Value: v}}
	}
	name, err := asn1.Marshal(pkix.RDNSequence{
		tpmAttr(asn1.ObjectIdentifier{2, 23, 133, 2, 1}, "id:53494D55"),
		tpmAttr(asn1.ObjectIdentifier{2, 23, 133, 2, 2}, "SIM"),
		tpmAttr(asn1.ObjectIdentifier{2, 23, 133, 2, 3}, "id:00010000"),
	})
	if err != nil {
		t.Fatal(err)
	}
	san, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 4,
		IsCompound: true, Bytes: name}})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageKeyAgreement,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{
			{2, 23, 133, 8, 1}, // tcg-kp-EKCertificate
		},
		ExtraExtensions: []pkix.Extension{{Id: oidSubjectAltName, Critical: true,
			Value: san}},
	}
	der, err := x509.CreateCertificate(nil, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// ekPublic has the simulated TPM create its ECC EK and returns its public
// key.
func ekPublic(t testing.TB, tp *sim) *ecdsa.PublicKey {
	t.Helper()
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(tpm2.ECCEKTemplate),
	}.Execute(tp.t)
	if err != nil {
		t.Fatal(err)
	}
	tp.flush(rsp.ObjectHandle)
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		t.Fatal(err)
	}
	pt, err := pub.Unique.ECC()
	if err != nil {
		t.Fatal(err)
	}
	raw := append([]byte{4}, pt.X.Buffer...)
	ek, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(raw, pt.Y.Buffer...))
	if err != nil {
		t.Fatal(err)
	}
	return ek
}

// provisionEKCert writes der to the ECC EK certificate index, as the
// manufacturer does with the platform authorisation.
func provisionEKCert(t testing.TB, tp *sim, der []byte) {
	t.Helper()
	platform := tpm2.AuthHandle{Handle: tpm2.TPMRHPlatform, Auth: tpm2.PasswordAuth(nil)}
	pub := tpm2.TPMSNVPublic{
		NVIndex: tpm2.TPMHandle(ECCEKCertIndex),
		NameAlg: tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{PPWrite: true, PPRead: true, OwnerRead: true,
			AuthRead: true, NoDA: true, PlatformCreate: true},
		DataSize: uint16(len(der)),
	}
	_, err := tpm2.NVDefineSpace{AuthHandle: platform,
		PublicInfo: tpm2.New2B(pub)}.Execute(tp.t)
	if err != nil {
		t.Fatalf("define the EK certificate index: %v", err)
	}
	for off := 0; off < len(der); off += 512 {
		rsp, err := tpm2.NVReadPublic{NVIndex: pub.NVIndex}.Execute(tp.t)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tpm2.NVWrite{
			AuthHandle: platform,
			NVIndex:    tpm2.NamedHandle{Handle: pub.NVIndex, Name: rsp.NVName},
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: der[off:min(off+512, len(der))]},
			Offset:     uint16(off),
		}.Execute(tp.t)
		if err != nil {
			t.Fatalf("write the EK certificate: %v", err)
		}
	}
}

func TestEndorsementChecksStorageRootKey(t *testing.T) {
	tp := newSim(t)
	maker, other := newTestCA(t, "TPM maker root"), newTestCA(t, "someone else")

	if _, err := tp.CheckEndorsement(maker.pool(), nil); !errors.Is(err, ErrNoEKCertificate) {
		t.Fatalf("CheckEndorsement without a certificate: %v, want ErrNoEKCertificate", err)
	}

	provisionEKCert(t, tp, maker.issueEK(t, ekPublic(t, tp)))
	e, err := tp.CheckEndorsement(maker.pool(), nil)
	if err != nil {
		t.Fatalf("CheckEndorsement: %v", err)
	}
	srk, err := tp.SRKName()
	if err != nil {
		t.Fatal(err)
	}
	if string(e.SRKName) != string(srk) || len(e.Chain) != 2 {
		t.Errorf("CheckEndorsement vouches for %x with a chain of %d; want %x and 2",
			e.SRKName, len(e.Chain), srk)
	}
	if _, err := tp.CheckEndorsement(other.pool(), nil); !errors.Is(err, ErrEndorsement) {
		t.Errorf("CheckEndorsement against another root: %v, want ErrEndorsement", err)
	}

	// A storage root key other than the one the TPM holds, as an
	// interposer would answer with, fails the credential activation.
	tp.mu.Lock()
	defer tp.mu.Unlock()
	ek, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic: tpm2.New2B(tpm2.ECCEKTemplate)}.Execute(tp.t)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.flush(ek.ObjectHandle)
	ekPub, err := ek.OutPublic.Contents()
	if err != nil {
		t.Fatal(err)
	}
	k, err := tp.loadSRK()
	if err != nil {
		t.Fatal(err)
	}
	defer tp.flush(k.handle)
	if err := tp.activate(ek, ekPub, k); err != nil {
		t.Fatalf("activate for the real storage root key: %v", err)
	}
	forged := *k
	forged.name = tpm2.TPM2BName{Buffer: append([]byte{0, 0x0b}, make([]byte, 32)...)}
	if err := tp.activate(ek, ekPub, &forged); !errors.Is(err, ErrEndorsement) {
		t.Fatalf("activate for another storage root key's name: %v, want ErrEndorsement", err)
	}
}

// An EK certificate for another key (a certificate copied from another
// TPM) is refused.
func TestEndorsementRefusesCertificateOfAnotherKey(t *testing.T) {
	tp := newSim(t)
	maker := newTestCA(t, "TPM maker root")
	provisionEKCert(t, tp, maker.issueEK(t, &newKey(t).PublicKey))
	if _, err := tp.CheckEndorsement(maker.pool(), nil); !errors.Is(err, ErrEndorsement) {
		t.Fatalf("CheckEndorsement with another key's certificate: %v, want ErrEndorsement",
			err)
	}
}

// The store checks the TPM's endorsement before it seals its first key,
// and seals nothing when the check fails.
func TestStoreChecksEndorsement(t *testing.T) {
	tp := newSim(t)
	maker := newTestCA(t, "TPM maker root")
	dir := t.TempDir()

	opts := StoreOptions{EKRoots: maker.pool()}
	_, err := openStore(t, tp, dir, opts).Signer(keys.Signing)
	if !errors.Is(err, ErrNoEKCertificate) {
		t.Fatalf("Signer on a TPM without an EK certificate: %v, want ErrNoEKCertificate",
			err)
	}
	if _, err := os.Stat(filepath.Join(dir, "signing.sealed")); err == nil {
		t.Fatal("a key was sealed although the endorsement check failed")
	}
	opts.EKOptional = true
	if _, err := openStore(t, tp, t.TempDir(), opts).Signer(keys.Signing); err != nil {
		t.Fatalf("Signer with EKOptional on a TPM without an EK certificate: %v", err)
	}

	provisionEKCert(t, tp, maker.issueEK(t, &newKey(t).PublicKey))
	_, err = openStore(t, tp, dir, opts).Signer(keys.Signing)
	if !errors.Is(err, ErrEndorsement) {
		t.Fatalf("Signer with another key's EK certificate: %v, want ErrEndorsement", err)
	}
}

func TestStoreSealsAfterEndorsement(t *testing.T) {
	tp := newSim(t)
	maker := newTestCA(t, "TPM maker root")
	provisionEKCert(t, tp, maker.issueEK(t, ekPublic(t, tp)))
	s := openStore(t, tp, t.TempDir(), StoreOptions{EKRoots: maker.pool()})
	if _, err := s.Signer(keys.Signing); err != nil {
		t.Fatalf("Signer on a TPM whose endorsement checks: %v", err)
	}
}
