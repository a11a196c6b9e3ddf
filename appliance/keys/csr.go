package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
)

// CertificateRequest returns a DER PKCS #10 certificate request for the
// public key of s, with the given subject, signed by s (clauses 4.1.2.7 and
// 4.1.2.9: the security server requests certificates for its
// authentication and signing keys from the certification centre). ECDSA
// keys sign it with SHA-256. The request's own signature is checked before
// it is returned, so that a faulty key store fails here and not at the
// certification centre.
func CertificateRequest(s crypto.Signer, subject pkix.Name) ([]byte, error) {
	if s == nil {
		return nil, errors.New("keys: certificate request: no key")
	}
	tmpl := &x509.CertificateRequest{Subject: subject}
	if _, ok := s.Public().(*ecdsa.PublicKey); ok {
		tmpl.SignatureAlgorithm = x509.ECDSAWithSHA256
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, s)
	if err != nil {
		return nil, fmt.Errorf("keys: making certificate request for %q: %w", subject, err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("keys: certificate request for %q does not parse: %w", subject, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("keys: certificate request for %q has a bad signature; "+
			"check the key store: %w", subject, err)
	}
	return der, nil
}
