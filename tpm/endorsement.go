package tpm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
)

// The NV indexes where TPM manufacturers store the endorsement key
// certificate, by the TCG EK Credential Profile: the ECC P-256 one, then
// the RSA 2048 one.
const (
	ECCEKCertIndex uint32 = 0x01_c0_00_0a
	RSAEKCertIndex uint32 = 0x01_c0_00_02
)

// Endorsement is what CheckEndorsement found: the endorsement key
// certificate, its chain to a manufacturer's root, and the storage root key
// it vouches for.
type Endorsement struct {
	// Certificate is the endorsement key certificate read from the TPM.
	Certificate *x509.Certificate
	// Chain runs from Certificate to the root that verified it.
	Chain []*x509.Certificate
	// SRKName is the TPM name of the storage root key the endorsement key
	// proved resident in the same TPM.
	SRKName []byte
}

// CheckEndorsement checks that the storage root key, the key the package
// seals under and salts its sessions to, is a key of a genuine TPM: it
// reads the endorsement key (EK) certificate from the TPM's NV storage,
// verifies it against roots (the TPM manufacturers' root certificates,
// with intermediates to help), has the TPM create the EK and compares its
// public key with the certificate's, and then encrypts a fresh secret to
// that EK for the storage root key's name (TPM2_MakeCredential, computed
// here, not by the TPM), which only the TPM holding both keys can recover
// (TPM2_ActivateCredential). An interposer on the bus answering with a
// storage root key of its own fails the last step. Without a certificate
// it returns an error matching ErrNoEKCertificate; any other failure
// matches ErrEndorsement.
func (t *TPM) CheckEndorsement(roots, intermediates *x509.CertPool) (*Endorsement, error) {
	if roots == nil {
		return nil, fmt.Errorf("%w: no manufacturer root certificates were given",
			ErrEndorsement)
	}
	t.mu.Lock()
	defer t.mu.Unlock()

	cert, tmpl, err := t.readEKCertificate()
	if err != nil {
		return nil, err
	}
	chain, err := verifyEKCertificate(cert, roots, intermediates)
	if err != nil {
		return nil, err
	}
	ek, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(tmpl),
	}.Execute(t.t)
	if err != nil {
		return nil, t.explain(fmt.Errorf("create the endorsement key: %w", err))
	}
	defer t.flush(ek.ObjectHandle)
	ekPub, err := ek.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("parse the endorsement key: %w", err)
	}
	if err := samePublicKey(ekPub, cert.PublicKey); err != nil {
		return nil, err
	}

	k, err := t.loadSRK()
	if err != nil {
		return nil, err
	}
	defer t.flush(k.handle)
	if err := t.activate(ek, ekPub, k); err != nil {
		return nil, err
	}
	return &Endorsement{Certificate: cert, Chain: chain, SRKName: k.name.Buffer}, nil
}

// readEKCertificate reads the EK certificate, the ECC one if there is one,
// and returns it with the template of its key.
func (t *TPM) readEKCertificate() (*x509.Certificate, tpm2.TPMTPublic, error) {
	for _, ek := range []struct {
		index uint32
		tmpl  tpm2.TPMTPublic
	}{{ECCEKCertIndex, tpm2.ECCEKTemplate}, {RSAEKCertIndex, tpm2.RSAEKTemplate}} {
		der, err := t.readNV(tpm2.TPMHandle(ek.index))
		if errors.Is(err, tpm2.TPMRCHandle) {
			continue
		}
		if err != nil {
			return nil, tpm2.TPMTPublic{}, fmt.Errorf("%w: read the endorsement key "+
				"certificate at %#x: %v", ErrEndorsement, ek.index, err)
		}
		// Some TPMs pad the index after the certificate's DER.
		var raw asn1.RawValue
		if _, err := asn1.Unmarshal(der, &raw); err == nil {
			der = raw.FullBytes
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, tpm2.TPMTPublic{}, fmt.Errorf("%w: parse the endorsement key "+
				"certificate at %#x: %v", ErrEndorsement, ek.index, err)
		}
		return cert, ek.tmpl, nil
	}
	return nil, tpm2.TPMTPublic{}, fmt.Errorf("%w: none at NV index %#x or %#x; the "+
		"manufacturer did not provision one, so this TPM cannot be checked",
		ErrNoEKCertificate, ECCEKCertIndex, RSAEKCertIndex)
}

// readNV reads the whole NV index at idx, in pieces the TPM accepts,
// authorised by the index's empty password or else by the owner's.
func (t *TPM) readNV(idx tpm2.TPMHandle) ([]byte, error) {
	rsp, err := tpm2.NVReadPublic{NVIndex: idx}.Execute(t.t)
	if err != nil {
		return nil, err
	}
	pub, err := rsp.NVPublic.Contents()
	if err != nil {
		return nil, err
	}
	props, err := t.properties(tpm2.TPMPTNVBufferMax)
	if err != nil {
		return nil, err
	}
	step := min(uint16(props[tpm2.TPMPTNVBufferMax]), 1024)
	if step == 0 {
		step = 512
	}
	auth := tpm2.AuthHandle{Handle: idx, Name: rsp.NVName, Auth: tpm2.PasswordAuth(nil)}
	if !pub.Attributes.AuthRead {
		auth = tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	}
	var out []byte
	for off := uint16(0); off < pub.DataSize; off += step {
		n := min(step, pub.DataSize-off)
		read, err := tpm2.NVRead{
			AuthHandle: auth,
			NVIndex:    tpm2.NamedHandle{Handle: idx, Name: rsp.NVName},
			Size:       n,
			Offset:     off,
		}.Execute(t.t)
		if err != nil {
			return nil, t.explain(err)
		}
		out = append(out, read.Data.Buffer...)
	}
	return out, nil
}

// oidSubjectAltName is the subject alternative name extension, which an EK
// certificate marks critical while holding only a directory name (the
// TPM's manufacturer, model and version), a name form Go's verifier does
// not interpret and so counts as unhandled.
var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// verifyEKCertificate verifies cert's chain to roots. EK certificates
// carry the TCG's own extended key usage, so any usage is accepted.
func verifyEKCertificate(cert *x509.Certificate, roots,
	intermediates *x509.CertPool) ([]*x509.Certificate, error) {
	c := *cert
	c.UnhandledCriticalExtensions = slices.DeleteFunc(
		slices.Clone(c.UnhandledCriticalExtensions),
		func(o asn1.ObjectIdentifier) bool { return o.Equal(oidSubjectAltName) })
	chains, err := c.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: the endorsement key certificate (issuer %q) does not "+
			"verify against the manufacturer roots given: %v", ErrEndorsement,
			cert.Issuer.String(), err)
	}
	return chains[0], nil
}

// samePublicKey checks that the TPM's endorsement key pub is the key of
// the certificate.
func samePublicKey(pub *tpm2.TPMTPublic, certKey any) error {
	same := false
	switch k := certKey.(type) {
	case *ecdsa.PublicKey:
		if pt, err := pub.Unique.ECC(); err == nil && k.Curve == elliptic.P256() {
			same = bytes.Equal(pt.X.Buffer, k.X.FillBytes(make([]byte, 32))) &&
				bytes.Equal(pt.Y.Buffer, k.Y.FillBytes(make([]byte, 32)))
		}
	case *rsa.PublicKey:
		if n, err := pub.Unique.RSA(); err == nil {
			same = bytes.Equal(n.Buffer, k.N.Bytes()) && k.E == 65537
		}
	}
	if !same {
		return fmt.Errorf("%w: the TPM's endorsement key is not the key of its "+
			"certificate; something between this program and the TPM alters its answers, "+
			"or the certificate belongs to another TPM", ErrEndorsement)
	}
	return nil
}

// activate proves k resident in the TPM that holds the endorsement key ek:
// a secret encrypted here to ek for k's name comes back only from that TPM.
func (t *TPM) activate(ek *tpm2.CreatePrimaryResponse, ekPub *tpm2.TPMTPublic,
	k *srk) error {
	kem, err := tpm2.ImportEncapsulationKey(ekPub)
	if err != nil {
		return fmt.Errorf("%w: use the endorsement key: %v", ErrEndorsement, err)
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	idObject, encSecret, err := tpm2.CreateCredential(rand.Reader, kem, k.name.Buffer, secret)
	if err != nil {
		return fmt.Errorf("%w: make the credential: %v", ErrEndorsement, err)
	}

	// The EK is used by its policy, TPM2_PolicySecret of the endorsement
	// hierarchy.
	sess, closeSess, err := tpm2.PolicySession(t.t, tpm2.TPMAlgSHA256, 16)
	if err != nil {
		return t.explain(fmt.Errorf("start the endorsement key's session: %w", err))
	}
	defer closeSess()
	_, err = tpm2.PolicySecret{
		AuthHandle:    tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
		PolicySession: sess.Handle(),
	}.Execute(t.t)
	if err != nil {
		return t.explain(fmt.Errorf("authorise the endorsement key: %w", err))
	}
	rsp, err := tpm2.ActivateCredential{
		ActivateHandle: tpm2.AuthHandle{Handle: k.handle, Name: k.name,
			Auth: tpm2.PasswordAuth(nil)},
		KeyHandle:      tpm2.AuthHandle{Handle: ek.ObjectHandle, Name: ek.Name, Auth: sess},
		CredentialBlob: tpm2.TPM2BIDObject{Buffer: idObject},
		Secret:         tpm2.TPM2BEncryptedSecret{Buffer: encSecret},
	}.Execute(t.t)
	if err != nil {
		return t.explain(fmt.Errorf("%w: the TPM holding the endorsement key does not "+
			"hold the storage root key it named; something between this program and the "+
			"TPM alters its answers: %v", ErrEndorsement, err))
	}
	if !bytes.Equal(rsp.CertInfo.Buffer, secret) {
		return fmt.Errorf("%w: the credential came back altered; something between this "+
			"program and the TPM alters its answers", ErrEndorsement)
	}
	return nil
}

// ParseManufacturerCertificates reads the TPM manufacturers' certificates
// from PEM data, for CheckEndorsement: self-signed ones are roots, the
// others intermediates. It fails when data holds no certificate.
func ParseManufacturerCertificates(data []byte) (roots, intermediates *x509.CertPool,
	err error) {
	roots, intermediates = x509.NewCertPool(), x509.NewCertPool()
	n := 0
	for rest := data; ; n++ {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("manufacturer certificate %d: %w", n+1, err)
		}
		if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
			roots.AddCert(c)
		} else {
			intermediates.AddCert(c)
		}
	}
	if n == 0 {
		return nil, nil, errors.New("no PEM certificate among the manufacturer certificates")
	}
	return roots, intermediates, nil
}
