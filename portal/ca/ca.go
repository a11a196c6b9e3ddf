// Package ca is the portal's certification centre (clauses 2.3, 6.4): it
// issues the authentication and signing certificates of security servers
// from their PKCS#10 requests once the operator approves them (4.1.2.6 to
// 4.1.2.10), revokes them, and answers OCSP requests (RFC 6960) about them.
//
// Certificates are ECDSA P-256 X.509. The subject serialNumber names the
// member as ident.MemberFromCertSerial reads it: INSTANCE/CLASS/CODE for a
// signing certificate, INSTANCE/CLASS/CODE/SERVERCODE for an authentication
// certificate. Every certificate carries the responder's URL in its
// authority information access extension.
//
// All state (the CA's key and certificate, requests, issued certificates
// and revocations) is in buckets of the bbolt database the caller opens.
package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/qapi-az/qapi/appliance/ident"
)

// Kind is what a certificate is for.
type Kind string

// Kinds of certificates the centre issues to security servers.
const (
	// Signing certificates sign messages (2.2.1, 4.1.2.8): key usage
	// digitalSignature and nonRepudiation.
	Signing Kind = "signing"
	// Auth certificates authenticate security servers to each other in
	// TLS (2.2.4, 4.1.2.6): digitalSignature, serverAuth and clientAuth.
	Auth Kind = "auth"
)

var (
	bucketCA       = []byte("ca")
	bucketRequests = []byte("ca-requests")
	bucketCerts    = []byte("ca-certs")
)

// Options configure a centre.
type Options struct {
	// Name is the centre's common name, used when it is created.
	Name string
	// OCSPURL is written into every certificate's authority information
	// access extension.
	OCSPURL string
	// Validity is how long issued certificates are valid; two years when 0.
	Validity time.Duration
	// OCSPValidity is how long an OCSP response is valid (its nextUpdate
	// minus thisUpdate); one hour when 0.
	OCSPValidity time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// CA is an open certification centre. It is safe for concurrent use.
type CA struct {
	db   *bbolt.DB
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	opts Options
}

// Open loads the centre from db, creating its key and self-signed
// certificate (valid 20 years) on first use.
func Open(db *bbolt.DB, opts Options) (*CA, error) {
	if opts.Validity == 0 {
		opts.Validity = 2 * 365 * 24 * time.Hour
	}
	if opts.OCSPValidity == 0 {
		opts.OCSPValidity = time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Name == "" {
		opts.Name = "Qapı Certification Centre"
	}
	c := &CA{db: db, opts: opts}
	err := db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketRequests, bucketCerts} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		b, err := tx.CreateBucketIfNotExists(bucketCA)
		if err != nil {
			return err
		}
		if k := b.Get([]byte("key")); k != nil {
			key, err := x509.ParsePKCS8PrivateKey(k)
			if err != nil {
				return fmt.Errorf("stored CA key: %w", err)
			}
			ek, ok := key.(*ecdsa.PrivateKey)
			if !ok {
				return errors.New("stored CA key is not ECDSA")
			}
			c.key = ek
			c.cert, err = x509.ParseCertificate(b.Get([]byte("cert")))
			return err
		}
		return c.create(b)
	})
	if err != nil {
		return nil, fmt.Errorf("open certification centre: %w", err)
	}
	return c, nil
}

func (c *CA) create(b *bbolt.Bucket) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := c.opts.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: c.opts.Name, Country: []string{"AZ"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(20, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign |
			x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	// TODO: keep the CA key in an HSM or TPM instead of the portal database.
	if err := b.Put([]byte("key"), pk); err != nil {
		return err
	}
	if err := b.Put([]byte("cert"), der); err != nil {
		return err
	}
	c.key = key
	c.cert, err = x509.ParseCertificate(der)
	return err
}

func randomSerial() *big.Int {
	b := make([]byte, 16)
	rand.Read(b)
	b[0] &= 0x7f
	b[0] |= 0x40 // never shorter than 16 bytes when encoded
	return new(big.Int).SetBytes(b)
}

// Certificate returns the centre's own certificate, what security servers
// enter as the Certification Centre's certificate (4.1.2.5).
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// RequestState is where a certificate request stands.
type RequestState string

// States of a request.
const (
	Pending  RequestState = "pending"
	Issued   RequestState = "issued"
	Rejected RequestState = "rejected"
)

// Request is a PKCS#10 request handed to the centre (4.1.2.10).
type Request struct {
	ID     uint64       `json:"id"`
	Kind   Kind         `json:"kind"`
	Member ident.Client `json:"member"`
	// ServerCode names the security server; auth requests only.
	ServerCode string       `json:"serverCode,omitempty"`
	CSR        []byte       `json:"csr"`
	Received   time.Time    `json:"received"`
	State      RequestState `json:"state"`
	// Serial is the hex serial of the issued certificate.
	Serial string `json:"serial,omitempty"`
	// Cert is the DER of the issued certificate.
	Cert   []byte `json:"cert,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Submit checks a PKCS#10 request (DER) and queues it for the operator.
// The request must be self-signed with an ECDSA P-256 key; member must be
// a member (no subsystem); serverCode is required for Auth and must be
// empty for Signing.
func (c *CA) Submit(kind Kind, member ident.Client, serverCode string,
	csrDER []byte) (Request, error) {
	if _, err := c.checkRequest(kind, member, serverCode, csrDER); err != nil {
		return Request{}, err
	}
	r := Request{Kind: kind, Member: member, ServerCode: serverCode, CSR: csrDER,
		Received: c.opts.Now().UTC(), State: Pending}
	err := c.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketRequests)
		id, err := b.NextSequence()
		if err != nil {
			return err
		}
		r.ID = id
		return putJSON(b, itob(id), r)
	})
	if err != nil {
		return Request{}, fmt.Errorf("store certificate request: %w", err)
	}
	return r, nil
}

func (c *CA) checkRequest(kind Kind, member ident.Client, serverCode string,
	csrDER []byte) (*x509.CertificateRequest, error) {
	switch kind {
	case Signing:
		if serverCode != "" {
			return nil, errors.New("a signing certificate names no server code")
		}
	case Auth:
		if serverCode == "" || strings.ContainsAny(serverCode, "/ ") {
			return nil, fmt.Errorf("an authentication certificate needs a server code "+
				"without '/' or spaces, got %q", serverCode)
		}
	default:
		return nil, fmt.Errorf("certificate kind %q is neither %q nor %q", kind, Signing, Auth)
	}
	if err := member.Validate(); err != nil || member.SubsystemCode != "" {
		return nil, fmt.Errorf("certificate owner %q must be a member "+
			"INSTANCE/CLASS/CODE", member)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("certificate request is not PKCS#10 DER: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("certificate request signature does not verify: %w", err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, errors.New("certificate request key is not ECDSA P-256; " +
			"generate the key with 'qapi register keys'")
	}
	return csr, nil
}

// Requests lists all requests, oldest first.
func (c *CA) Requests() ([]Request, error) {
	var out []Request
	err := c.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketRequests).ForEach(func(_, v []byte) error {
			var r Request
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

// ErrNoRequest is returned (wrapped) for an unknown request id.
var ErrNoRequest = errors.New("no such certificate request")

// GetRequest returns one request.
func (c *CA) GetRequest(id uint64) (Request, error) {
	var r Request
	err := c.db.View(func(tx *bbolt.Tx) error {
		return getJSON(tx.Bucket(bucketRequests), itob(id), &r)
	})
	if err == errMissing {
		return r, fmt.Errorf("%w: %d", ErrNoRequest, id)
	}
	return r, err
}

// Approve issues the certificate a pending request asks for and returns it.
func (c *CA) Approve(id uint64) (*x509.Certificate, error) {
	var cert *x509.Certificate
	err := c.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketRequests)
		var r Request
		if err := getJSON(b, itob(id), &r); err != nil {
			if err == errMissing {
				return fmt.Errorf("%w: %d", ErrNoRequest, id)
			}
			return err
		}
		if r.State != Pending {
			return fmt.Errorf("certificate request %d is %s, not pending", id, r.State)
		}
		var err error
		cert, err = c.issue(tx, r.Kind, r.Member, r.ServerCode, r.CSR)
		if err != nil {
			return err
		}
		r.State, r.Serial, r.Cert = Issued, serialHex(cert.SerialNumber), cert.Raw
		return putJSON(b, itob(id), r)
	})
	if err != nil {
		return nil, fmt.Errorf("approve certificate request: %w", err)
	}
	return cert, nil
}

// Reject refuses a pending request with a reason the applicant sees.
func (c *CA) Reject(id uint64, reason string) error {
	return c.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketRequests)
		var r Request
		if err := getJSON(b, itob(id), &r); err != nil {
			return fmt.Errorf("%w: %d", ErrNoRequest, id)
		}
		if r.State != Pending {
			return fmt.Errorf("certificate request %d is %s, not pending", id, r.State)
		}
		r.State, r.Reason = Rejected, reason
		return putJSON(b, itob(id), r)
	})
}

// Record is an issued certificate and its revocation status.
type Record struct {
	Serial    string    `json:"serial"` // hex
	Kind      Kind      `json:"kind"`
	Subject   string    `json:"subject"` // the subject serialNumber
	Cert      []byte    `json:"cert"`
	Issued    time.Time `json:"issued"`
	NotAfter  time.Time `json:"notAfter"`
	RevokedAt time.Time `json:"revokedAt,omitzero"`
	// Reason is the RFC 5280 CRLReason code of a revocation.
	Reason int `json:"reason,omitempty"`
}

// Revoked reports whether the certificate is revoked.
func (r Record) Revoked() bool { return !r.RevokedAt.IsZero() }

// Issue checks csrDER and issues a certificate at once, without a queued
// request: for the portal's own service certificates and for tests.
func (c *CA) Issue(kind Kind, member ident.Client, serverCode string,
	csrDER []byte) (*x509.Certificate, error) {
	var cert *x509.Certificate
	err := c.db.Update(func(tx *bbolt.Tx) error {
		var err error
		cert, err = c.issue(tx, kind, member, serverCode, csrDER)
		return err
	})
	return cert, err
}

func (c *CA) issue(tx *bbolt.Tx, kind Kind, member ident.Client, serverCode string,
	csrDER []byte) (*x509.Certificate, error) {
	csr, err := c.checkRequest(kind, member, serverCode, csrDER)
	if err != nil {
		return nil, err
	}
	name := member.String()
	tmpl := &x509.Certificate{KeyUsage: x509.KeyUsageDigitalSignature}
	if kind == Signing {
		tmpl.KeyUsage |= x509.KeyUsageContentCommitment
	} else {
		name += "/" + serverCode
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth,
			x509.ExtKeyUsageClientAuth}
		tmpl.DNSNames, tmpl.IPAddresses = csr.DNSNames, csr.IPAddresses
	}
	tmpl.Subject = pkix.Name{CommonName: name, SerialNumber: name, Country: []string{"AZ"}}
	if o := csr.Subject.Organization; len(o) > 0 {
		tmpl.Subject.Organization = o[:1]
	}
	return c.sign(tx, kind, tmpl, csr.PublicKey)
}

// IssueService issues a certificate for one of the portal's own services
// (the configuration signer, the time-stamping unit, TLS) from tmpl, whose
// subject, key usages, extensions and names the caller sets; the centre
// sets the serial number, validity and responder URL.
func (c *CA) IssueService(tmpl *x509.Certificate, pub crypto.PublicKey) (
	*x509.Certificate, error) {
	var cert *x509.Certificate
	err := c.db.Update(func(tx *bbolt.Tx) error {
		var err error
		cert, err = c.sign(tx, "service", tmpl, pub)
		return err
	})
	return cert, err
}

func (c *CA) sign(tx *bbolt.Tx, kind Kind, tmpl *x509.Certificate,
	pub crypto.PublicKey) (*x509.Certificate, error) {
	now := c.opts.Now()
	tmpl.SerialNumber = randomSerial()
	tmpl.NotBefore = now.Add(-5 * time.Minute)
	tmpl.NotAfter = now.Add(c.opts.Validity)
	if c.opts.OCSPURL != "" {
		tmpl.OCSPServer = []string{c.opts.OCSPURL}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, pub, c.key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	rec := Record{Serial: serialHex(cert.SerialNumber), Kind: kind,
		Subject: cert.Subject.SerialNumber, Cert: der, Issued: now.UTC(),
		NotAfter: cert.NotAfter.UTC()}
	if err := putJSON(tx.Bucket(bucketCerts), cert.SerialNumber.Bytes(), rec); err != nil {
		return nil, fmt.Errorf("store issued certificate: %w", err)
	}
	return cert, nil
}

// Certs lists every issued certificate.
func (c *CA) Certs() ([]Record, error) {
	var out []Record
	err := c.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketCerts).ForEach(func(_, v []byte) error {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

// Lookup returns the record of the certificate with the given serial;
// ok is false when this centre never issued it.
func (c *CA) Lookup(serial *big.Int) (rec Record, ok bool, err error) {
	err = c.db.View(func(tx *bbolt.Tx) error {
		e := getJSON(tx.Bucket(bucketCerts), serial.Bytes(), &rec)
		if e == errMissing {
			return nil
		}
		ok = e == nil
		return e
	})
	return rec, ok, err
}

// ErrUnknownCert is returned (wrapped) by Revoke for a serial this centre
// did not issue.
var ErrUnknownCert = errors.New("no certificate with this serial was issued here")

// Revoke marks the certificate with the hex serial as revoked for the RFC
// 5280 reason code; OCSP answers revoked from then on.
func (c *CA) Revoke(serial string, reason int) error {
	n, ok := new(big.Int).SetString(strings.TrimPrefix(strings.ToLower(serial), "0x"), 16)
	if !ok {
		return fmt.Errorf("certificate serial %q is not hexadecimal", serial)
	}
	return c.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketCerts)
		var r Record
		if err := getJSON(b, n.Bytes(), &r); err != nil {
			return fmt.Errorf("revoke %s: %w", serial, ErrUnknownCert)
		}
		if r.Revoked() {
			return nil
		}
		r.RevokedAt, r.Reason = c.opts.Now().UTC(), reason
		return putJSON(b, n.Bytes(), r)
	})
}

// RevokeSubject revokes every unrevoked certificate whose subject
// serialNumber is subject or starts with subject+"/" (all of a member's
// certificates), and returns how many it revoked.
func (c *CA) RevokeSubject(subject string, reason int) (int, error) {
	recs, err := c.Certs()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range recs {
		if r.Revoked() || !(r.Subject == subject || strings.HasPrefix(r.Subject, subject+"/")) {
			continue
		}
		if err := c.Revoke(r.Serial, reason); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func serialHex(n *big.Int) string { return hex.EncodeToString(n.Bytes()) }

var errMissing = errors.New("missing")

func putJSON(b *bbolt.Bucket, k []byte, v any) error {
	j, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, j)
}

func getJSON(b *bbolt.Bucket, k []byte, v any) error {
	j := b.Get(k)
	if j == nil {
		return errMissing
	}
	return json.Unmarshal(j, v)
}

func itob(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}
