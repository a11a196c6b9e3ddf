// Package portal assembles the operator's central services (clauses 2.3,
// 3.1-3.14, 6.4, 6.8): the certification centre with its OCSP responder,
// the time-stamping authority, the registry of participants, the global
// configuration publisher and the incident register, over one bbolt
// database, portal.db.
//
// It serves two handlers. PublicHandler is what security servers reach:
// certificate requests, registrations, OCSP, time stamps, the global
// configuration and incident reports. OperatorHandler is the operator's
// JSON API, meant for loopback over HTTPS with a bearer token; the 'qapi
// portal' commands are a thin client of it.
package portal

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/bbolt"

	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/portal/ca"
	"github.com/qapi-az/qapi/portal/incident"
	"github.com/qapi-az/qapi/portal/onboarding"
	"github.com/qapi-az/qapi/portal/publish"
	"github.com/qapi-az/qapi/portal/registry"
	"github.com/qapi-az/qapi/portal/tsa"
	"github.com/qapi-az/qapi/portal/wire"
)

// Options configure a portal.
type Options struct {
	// Dir holds portal.db.
	Dir string
	// Instances are the instance names; the first is production, the
	// others test environments (3.8.2). AZ and AZ-TEST when empty.
	Instances []string
	// PublicURL is how security servers reach PublicHandler, e.g.
	// http://portal.example:8080. It is written into certificates (OCSP)
	// and configurations, so it must be stable.
	PublicURL string
	// Holidays are non-working dates, 2006-01-02, for the deadlines of
	// 3.2 and 3.9.
	Holidays []string
	// ConfValidity is how long a published configuration is valid; 10
	// minutes when 0.
	ConfValidity time.Duration
	// OCSPMaxAge is how old a stapled OCSP response may be; 20 minutes
	// when 0.
	OCSPMaxAge time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Portal is an open portal.
type Portal struct {
	DB        *bbolt.DB
	CA        *ca.CA
	Registry  *registry.Registry
	Publisher *publish.Publisher
	TSA       *tsa.TSA
	Incidents *incident.Register

	opts Options
}

var bucketKeys = []byte("portal-keys")

// Open opens or creates the portal in opts.Dir.
func Open(opts Options) (*Portal, error) {
	if len(opts.Instances) == 0 {
		opts.Instances = []string{"AZ", "AZ-TEST"}
	}
	if opts.PublicURL == "" {
		return nil, errors.New("the portal needs its public URL (how security servers " +
			"reach it)")
	}
	if opts.OCSPMaxAge == 0 {
		opts.OCSPMaxAge = 20 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cal, err := onboarding.ParseHolidays(opts.Holidays)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("portal data directory: %w", err)
	}
	db, err := bbolt.Open(filepath.Join(opts.Dir, "portal.db"), 0o600,
		&bbolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open portal database (is another qapi-portal "+
			"running on %s?): %w", opts.Dir, err)
	}
	p := &Portal{DB: db, opts: opts}
	if err := p.open(cal); err != nil {
		db.Close()
		return nil, err
	}
	return p, nil
}

func (p *Portal) open(cal onboarding.Calendar) error {
	opts := p.opts
	var err error
	p.CA, err = ca.Open(p.DB, ca.Options{OCSPURL: opts.PublicURL + wire.PathOCSP,
		Now: opts.Now})
	if err != nil {
		return err
	}
	confKey, confCert, err := p.serviceKey("globalconf", func() *x509.Certificate {
		return &x509.Certificate{
			Subject:  pkix.Name{CommonName: "Qapı global configuration", Country: []string{"AZ"}},
			KeyUsage: x509.KeyUsageDigitalSignature,
		}
	})
	if err != nil {
		return err
	}
	tsaKey, tsaCert, err := p.serviceKey("tsa", func() *x509.Certificate {
		return tsa.Template("Qapı time-stamping unit")
	})
	if err != nil {
		return err
	}
	p.TSA, err = tsa.New(p.DB, tsaKey, tsaCert, opts.Now)
	if err != nil {
		return err
	}
	var pub *publish.Publisher
	p.Registry, err = registry.Open(p.DB, registry.Options{Instances: opts.Instances,
		Calendar: cal, Now: opts.Now,
		Changed: func(inst string) {
			if pub != nil {
				pub.Changed(inst)
			}
		}})
	if err != nil {
		return err
	}
	pub, err = publish.New(p.DB, publish.Options{
		Registry: p.Registry, Key: confKey, Cert: confCert.Raw,
		CAs: []globalconf.CA{{Name: p.CA.Certificate().Subject.CommonName,
			Cert: p.CA.Certificate().Raw, OCSP: []string{opts.PublicURL + wire.PathOCSP}}},
		TSAs: []globalconf.TSA{{Name: tsaCert.Subject.CommonName,
			URL: opts.PublicURL + wire.PathTSA, Cert: tsaCert.Raw}},
		Validity: opts.ConfValidity, OCSPMaxAge: opts.OCSPMaxAge, BaseURL: opts.PublicURL,
		IncidentURL: opts.PublicURL + wire.PathIncidents, Now: opts.Now,
		Revoked: p.isRevoked,
	})
	if err != nil {
		return err
	}
	p.Publisher = pub
	roots := x509.NewCertPool()
	roots.AddCert(p.CA.Certificate())
	p.Incidents, err = incident.Open(p.DB, roots, p.isRegisteredServer, opts.Now)
	return err
}

// serviceKey loads or creates the key and certificate of one of the
// portal's own services.
func (p *Portal) serviceKey(name string, tmpl func() *x509.Certificate) (
	crypto.Signer, *x509.Certificate, error) {
	var keyDER, certDER []byte
	err := p.DB.View(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketKeys); b != nil {
			keyDER = append([]byte(nil), b.Get([]byte(name+"/key"))...)
			certDER = append([]byte(nil), b.Get([]byte(name+"/cert"))...)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if len(keyDER) > 0 {
		k, err := x509.ParsePKCS8PrivateKey(keyDER)
		if err != nil {
			return nil, nil, fmt.Errorf("stored %s key: %w", name, err)
		}
		cert, err := x509.ParseCertificate(certDER)
		if err != nil {
			return nil, nil, fmt.Errorf("stored %s certificate: %w", name, err)
		}
		return k.(crypto.Signer), cert, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	cert, err := p.CA.IssueService(tmpl(), &key.PublicKey)
	if err != nil {
		return nil, nil, fmt.Errorf("certify the %s key: %w", name, err)
	}
	keyDER, _ = x509.MarshalPKCS8PrivateKey(key)
	err = p.DB.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketKeys)
		if err != nil {
			return err
		}
		if err := b.Put([]byte(name+"/key"), keyDER); err != nil {
			return err
		}
		return b.Put([]byte(name+"/cert"), cert.Raw)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("store the %s key: %w", name, err)
	}
	return key, cert, nil
}

// isRevoked reports whether der is a certificate this centre revoked.
func (p *Portal) isRevoked(der []byte) bool {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return true
	}
	rec, ok, err := p.CA.Lookup(cert.SerialNumber)
	return err != nil || ok && rec.Revoked()
}

// isRegisteredServer reports whether der is the authentication certificate
// of an approved security server.
func (p *Portal) isRegisteredServer(der []byte) bool {
	servers, err := p.Registry.Servers()
	if err != nil {
		return false
	}
	if p.isRevoked(der) {
		return false
	}
	h := globalconf.CertHash(der)
	for _, s := range servers {
		if s.State == "approved" && globalconf.CertHash(s.AuthCert) == h {
			return true
		}
	}
	return false
}

// Anchor returns the configuration anchor of instance, the file a security
// server installs (4.1.2.3-4.1.2.5).
func (p *Portal) Anchor(instance string) (*globalconf.Anchor, error) {
	for _, i := range p.Registry.Instances() {
		if i == instance {
			return p.Publisher.Anchor(instance), nil
		}
	}
	return nil, fmt.Errorf("instance %q is not served here; use one of %v", instance,
		p.Registry.Instances())
}

// Run publishes configurations until ctx ends.
func (p *Portal) Run(ctx context.Context) error { return p.Publisher.Run(ctx) }

// Close closes the database.
func (p *Portal) Close() error { return p.DB.Close() }

// OperatorTLS returns a TLS configuration for the operator API with a fresh
// key and a certificate from the portal's centre for the given host names
// and addresses, and the connection file contents for url and token.
func (p *Portal) OperatorTLS(url, token string, hosts []string) (*tls.Config, Conn, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, Conn{}, err
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "Qapı operator API", Country: []string{"AZ"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	wire.SetCertHosts(tmpl, hosts)
	cert, err := p.CA.IssueService(tmpl, &key.PublicKey)
	if err != nil {
		return nil, Conn{}, fmt.Errorf("certify the operator API: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{{
		Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}}}
	return cfg, Conn{URL: url, Token: token, CACert: CertPEM(p.CA.Certificate().Raw)}, nil
}

// NewServer returns an HTTP server for h with every timeout set, so that a
// client that sends or reads slowly cannot hold a connection, and a
// goroutine, forever. The portal's listeners and the sandbox's use it; set
// TLSConfig on the result for HTTPS.
func NewServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		// Requests are small JSON documents, CSRs, OCSP and time-stamp
		// requests, all bounded in size.
		ReadTimeout:  30 * time.Second,
		WriteTimeout: time.Minute,
		IdleTimeout:  2 * time.Minute,
	}
}
