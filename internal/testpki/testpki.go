// Package testpki makes throwaway certification centres, certificates and
// global configurations for tests. It is never used outside tests and the
// benchmark tool; the operator's real certification centre is in portal/.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"sync/atomic"
	"time"

	"github.com/qapi-az/qapi/appliance/ident"
)

var serial atomic.Int64

// CA is a certification centre for tests.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// Cert is an issued certificate with its private key.
type Cert struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// Signer returns the key as a crypto.Signer.
func (c *Cert) Signer() crypto.Signer { return c.Key }

// NewCA makes a self-signed CA valid from an hour ago for ten years.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Qapı test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// IssueSigning issues a signing certificate for member: key usage
// digitalSignature and nonRepudiation, subject serialNumber
// INSTANCE/CLASS/CODE (the form ident.Client.String gives for a member).
func (ca *CA) IssueSigning(member ident.Client) (*Cert, error) {
	return ca.issue(member.Member().String(),
		x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment, nil, nil)
}

// IssueAuth issues a TLS authentication certificate for a security server
// of member named code, valid for the given DNS names and 127.0.0.1.
func (ca *CA) IssueAuth(member ident.Client, code string, dnsNames ...string) (*Cert, error) {
	return ca.issue(member.Member().String()+"/"+code,
		x509.KeyUsageDigitalSignature,
		[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		append([]string{"localhost"}, dnsNames...))
}

// IssueTLS issues a plain TLS server and client certificate (for an
// information system, say) with the given common name.
func (ca *CA) IssueTLS(cn string, dnsNames ...string) (*Cert, error) {
	return ca.issue(cn, x509.KeyUsageDigitalSignature,
		[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		append([]string{"localhost"}, dnsNames...))
}

func (ca *CA) issue(serialName string, ku x509.KeyUsage, eku []x509.ExtKeyUsage,
	dns []string) (*Cert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject: pkix.Name{
			CommonName:   serialName,
			SerialNumber: serialName,
			Organization: []string{"Qapı test"},
		},
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().AddDate(1, 0, 0),
		KeyUsage:    ku,
		ExtKeyUsage: eku,
		DNSNames:    dns,
	}
	if dns != nil {
		tmpl.IPAddresses = loopbackIPs()
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Cert{Cert: cert, Key: key}, nil
}
