// Package publish builds the global configuration of each instance from the
// registry, signs it with the operator's configuration key, and serves the
// newest signed version at a stable URL, /globalconf/INSTANCE.
//
// A version is published at once after every registry change that alters
// it (a block under clause 3.7 reaches every security server within one
// refresh of theirs) and again well before the current one expires, so
// that servers that reach the portal never hold a stale configuration.
package publish

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.etcd.io/bbolt"

	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/portal/registry"
)

var bucketPublish = []byte("publish")

// Options configure a Publisher.
type Options struct {
	Registry *registry.Registry
	// Key signs configurations; Cert is its DER certificate, the one
	// security servers hold in their anchor.
	Key  crypto.Signer
	Cert []byte
	// CAs are the trusted certification centres (2.3).
	CAs []globalconf.CA
	// TSAs are the time-stamping authorities.
	TSAs []globalconf.TSA
	// Validity is how long a version is valid; 10 minutes when 0.
	Validity time.Duration
	// OCSPMaxAge is how old a stapled OCSP response may be.
	OCSPMaxAge time.Duration
	// BaseURL is the public URL prefix, e.g. http://portal.example:8080;
	// configuration URLs are BaseURL + /globalconf/ + instance.
	BaseURL string
	// IncidentURL is where servers report security events (6.8).
	IncidentURL string
	// UpdateKeys are DER public keys that may sign update bundles.
	UpdateKeys [][]byte
	// Revoked, when set, reports whether a DER certificate is revoked; a
	// server whose authentication certificate is revoked is left out.
	Revoked func(der []byte) bool
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Publisher publishes configurations. It is safe for concurrent use.
type Publisher struct {
	db   *bbolt.DB
	opts Options

	mu     sync.Mutex
	signed map[string][]byte
	// pending are the instances to republish; kick wakes Run.
	pending map[string]bool
	kick    chan struct{}
}

// New returns a publisher storing its serials and the newest signed
// versions in db.
func New(db *bbolt.DB, opts Options) (*Publisher, error) {
	if opts.Validity == 0 {
		opts.Validity = 10 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := &Publisher{db: db, opts: opts, signed: map[string][]byte{},
		pending: map[string]bool{}, kick: make(chan struct{}, 1)}
	err := db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketPublish)
		if err != nil {
			return err
		}
		for _, inst := range opts.Registry.Instances() {
			if s := b.Get([]byte("signed/" + inst)); s != nil {
				p.signed[inst] = append([]byte(nil), s...)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open publisher: %w", err)
	}
	return p, nil
}

// ConfigURL returns the stable URL of an instance's configuration.
func (p *Publisher) ConfigURL(instance string) string {
	return p.opts.BaseURL + "/globalconf/" + instance
}

// Anchor returns the configuration anchor of an instance: what a security
// server installs at registration (4.1.2.3-4.1.2.5).
func (p *Publisher) Anchor(instance string) *globalconf.Anchor {
	return &globalconf.Anchor{Instance: instance,
		ConfigURLs: []string{p.ConfigURL(instance)}, Certs: [][]byte{p.opts.Cert}}
}

// Build assembles the configuration of instance from the registry, without
// serial, times or signature.
func (p *Publisher) Build(instance string) (*globalconf.Conf, error) {
	reg := p.opts.Registry
	c := &globalconf.Conf{Instance: instance, CAs: p.opts.CAs, TSAs: p.opts.TSAs,
		OCSPMaxAge: globalconf.Duration(p.opts.OCSPMaxAge), UpdateKeys: p.opts.UpdateKeys,
		ConfigURLs: []string{p.ConfigURL(instance)}, IncidentURL: p.opts.IncidentURL}
	members, err := reg.Members()
	if err != nil {
		return nil, err
	}
	active := map[ident.Client]bool{}
	for _, m := range members {
		if m.ID.Instance != instance || !m.Active() {
			continue
		}
		active[m.ID] = true
		gm := globalconf.Member{ID: m.ID, Name: m.Name}
		for _, s := range m.Subsystems {
			gm.Subsystems = append(gm.Subsystems, globalconf.Subsystem{Code: s.Code,
				Name: s.Name})
		}
		c.Members = append(c.Members, gm)
	}
	servers, err := reg.Servers()
	if err != nil {
		return nil, err
	}
	for _, s := range servers {
		if s.State != "approved" || !active[s.Owner] {
			continue
		}
		if p.opts.Revoked != nil && p.opts.Revoked(s.AuthCert) {
			continue
		}
		c.SecurityServers = append(c.SecurityServers, globalconf.SecurityServer{
			Owner: s.Owner, Code: s.Code, Address: s.Address, Clients: s.Clients,
			AuthCertHashes: []string{globalconf.CertHash(s.AuthCert)}})
	}
	blocks, err := reg.Blocks()
	if err != nil {
		return nil, err
	}
	for _, b := range blocks {
		if b.Client.Instance == instance {
			c.Blocked = append(c.Blocked, b.Blocked)
		}
	}
	notices, err := reg.Notices()
	if err != nil {
		return nil, err
	}
	now := p.opts.Now()
	for _, n := range notices {
		if n.Service.Instance != instance {
			continue
		}
		// Clause 3.14: once its announced date passes, the service is
		// disconnected, and every security server refuses calls to it.
		if n.Kind == globalconf.NoticeDisconnect && !now.Before(n.Effective) {
			c.Disconnected = append(c.Disconnected, globalconf.Disconnected{
				Service: n.Service, Since: n.Effective, Text: n.Text})
			continue
		}
		c.Notices = append(c.Notices, n.Notice)
	}
	return c, nil
}

// Publish builds, numbers and signs a new version of instance and serves
// it from then on.
func (p *Publisher) Publish(instance string) (*globalconf.Conf, error) {
	c, err := p.Build(instance)
	if err != nil {
		return nil, fmt.Errorf("build global configuration of %s: %w", instance, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.opts.Now().UTC().Truncate(time.Second)
	// Issued a little in the past tolerates small clock differences.
	c.Issued, c.Expires = now.Add(-time.Minute), now.Add(p.opts.Validity)
	err = p.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketPublish)
		k := []byte("serial/" + instance)
		if v := b.Get(k); v != nil {
			c.Serial = binary.BigEndian.Uint64(v)
		}
		c.Serial++
		signed, err := globalconf.Sign(c, p.opts.Key, p.opts.Cert)
		if err != nil {
			return err
		}
		if err := b.Put(k, binary.BigEndian.AppendUint64(nil, c.Serial)); err != nil {
			return err
		}
		if err := b.Put([]byte("signed/"+instance), signed); err != nil {
			return err
		}
		p.signed[instance] = signed
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("publish global configuration of %s: %w", instance, err)
	}
	return c, nil
}

// PublishAll publishes every instance.
func (p *Publisher) PublishAll() error {
	for _, inst := range p.opts.Registry.Instances() {
		if _, err := p.Publish(inst); err != nil {
			return err
		}
	}
	return nil
}

// Changed asks Run to publish instance soon; it never blocks. Use it as
// the registry's Changed hook.
func (p *Publisher) Changed(instance string) {
	p.mu.Lock()
	p.pending[instance] = true
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run publishes every instance at once, then after each Changed call and
// every third of the validity period, until ctx ends. It returns the first
// error publishing, or ctx's error.
func (p *Publisher) Run(ctx context.Context) error {
	if err := p.PublishAll(); err != nil {
		return err
	}
	t := time.NewTicker(p.opts.Validity / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.kick:
			p.mu.Lock()
			var insts []string
			for i := range p.pending {
				insts = append(insts, i)
			}
			clear(p.pending)
			p.mu.Unlock()
			for _, inst := range insts {
				if _, err := p.Publish(inst); err != nil {
					return err
				}
			}
		case <-t.C:
			if err := p.PublishAll(); err != nil {
				return err
			}
		}
	}
}

// Signed returns the newest signed version of instance, or nil.
func (p *Publisher) Signed(instance string) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.signed[instance]
}

// Handler serves GET /globalconf/INSTANCE.
func (p *Publisher) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inst := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
		s := p.Signed(inst)
		if s == nil {
			http.Error(w, "no global configuration is published for instance "+inst,
				http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(s)
	})
}

// SignerCertificate parses the configuration signer's certificate.
func (p *Publisher) SignerCertificate() (*x509.Certificate, error) {
	return x509.ParseCertificate(p.opts.Cert)
}
