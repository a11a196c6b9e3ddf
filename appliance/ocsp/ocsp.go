// Package ocsp gives the security server the two OCSP functions of the
// exchange (RFC 6960): a Stapler that keeps a fresh response for our own
// signing certificate to staple to every message we sign, and a Checker
// that judges the response a peer stapled to its message.
//
// Wire them into package sign as
//
//	sign.Signer{..., OCSP: stapler.Response}
//	sign.VerifyOptions{..., CheckOCSP: checker.Check}
package ocsp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/qapi-az/qapi/appliance/globalconf"
)

// Errors a Checker returns (wrapped), for callers that branch.
var (
	ErrMissing = errors.New("no OCSP response is stapled to the signature")
	ErrRevoked = errors.New("the signing certificate is revoked")
	ErrUnknown = errors.New("the certification centre does not know the signing certificate")
	ErrTooOld  = errors.New("the stapled OCSP response is too old")
	ErrInvalid = errors.New("the stapled OCSP response is not valid")
)

// DefaultMaxAge is how old a stapled response may be when the global
// configuration does not say (Conf.OCSPMaxAge).
const DefaultMaxAge = 20 * time.Minute

// Verify parses der as the OCSP response for cert issued by issuer and
// checks it at now: signed by the issuer or by a responder certificate the
// issuer delegated OCSP signing to, produced no more than maxAge before
// now, not past its nextUpdate, and status good. It returns the parsed
// response; its error wraps one of the Err values.
func Verify(der []byte, cert, issuer *x509.Certificate, now time.Time,
	maxAge time.Duration) (*ocsp.Response, error) {
	r, err := parse(der, cert, issuer)
	if err != nil {
		return nil, err
	}
	return judge(r, cert, issuer, now, maxAge)
}

// parse parses der as the response for cert and checks its signature.
func parse(der []byte, cert, issuer *x509.Certificate) (*ocsp.Response, error) {
	if len(der) == 0 {
		return nil, ErrMissing
	}
	r, err := ocsp.ParseResponseForCert(der, cert, issuer)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return r, nil
}

// judge checks a parsed, signature-checked response at now: everything
// Verify checks but the signature.
func judge(r *ocsp.Response, cert, issuer *x509.Certificate, now time.Time,
	maxAge time.Duration) (*ocsp.Response, error) {
	if r.Certificate != nil && !bytes.Equal(r.Certificate.Raw, issuer.Raw) {
		// Clause 6.4: only the portal's certification centre, or a
		// responder it certified for this, vouches for a certificate.
		d := r.Certificate
		if !slices.Contains(d.ExtKeyUsage, x509.ExtKeyUsageOCSPSigning) {
			return nil, fmt.Errorf("%w: its responder certificate %q is not delegated "+
				"OCSP signing by the issuer", ErrInvalid, d.Subject)
		}
		if now.Before(d.NotBefore) || now.After(d.NotAfter) {
			return nil, fmt.Errorf("%w: its responder certificate is outside its "+
				"validity period", ErrInvalid)
		}
	}
	if r.NextUpdate.IsZero() || !now.Before(r.NextUpdate) {
		return nil, fmt.Errorf("%w: it was valid until %s", ErrTooOld,
			r.NextUpdate.Format(time.RFC3339))
	}
	if r.ThisUpdate.After(now.Add(time.Minute)) {
		return nil, fmt.Errorf("%w: its thisUpdate %s is in the future", ErrInvalid,
			r.ThisUpdate.Format(time.RFC3339))
	}
	if age := now.Sub(r.ThisUpdate); age > maxAge {
		return nil, fmt.Errorf("%w: produced %s ago, more than the %s allowed",
			ErrTooOld, age.Round(time.Second), maxAge)
	}
	switch r.Status {
	case ocsp.Good:
		return r, nil
	case ocsp.Revoked:
		return nil, fmt.Errorf("%w (serial %x, since %s)", ErrRevoked, cert.SerialNumber,
			r.RevokedAt.Format(time.RFC3339))
	default:
		return nil, fmt.Errorf("%w (serial %x)", ErrUnknown, cert.SerialNumber)
	}
}

// Checker judges stapled responses with the maximum age the global
// configuration sets. A peer staples the same response to every message
// until it refreshes it, so a Checker checks the signature of each response
// once and remembers it; age and status it judges on every call. The zero
// value is ready; a Checker must not be copied after first use.
type Checker struct {
	// Source gives Conf.OCSPMaxAge; DefaultMaxAge when it is 0 or the
	// configuration is unavailable.
	Source globalconf.Source
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	mu     sync.Mutex
	parsed map[checked]*ocsp.Response
}

// checked names a response checked for a certificate and its issuer.
type checked struct{ der, cert, issuer [sha256.Size]byte }

// maxChecked bounds the responses a Checker remembers: one or two per peer
// in use. Past it the Checker forgets them all and starts again.
const maxChecked = 4096

// Check has the signature of sign.VerifyOptions.CheckOCSP: it returns nil
// when ocspDER is a good, fresh response for cert, else an error.
func (c *Checker) Check(cert, issuer *x509.Certificate, ocspDER []byte) error {
	now := time.Now()
	if c.Now != nil {
		now = c.Now()
	}
	maxAge := DefaultMaxAge
	if c.Source != nil {
		if conf, err := c.Source.Current(); err == nil && conf.OCSPMaxAge > 0 {
			maxAge = time.Duration(conf.OCSPMaxAge)
		}
	}
	r, err := c.parse(ocspDER, cert, issuer)
	if err != nil {
		return err
	}
	_, err = judge(r, cert, issuer, now, maxAge)
	return err
}

// parse is parse, remembering the responses whose signature checked.
func (c *Checker) parse(der []byte, cert, issuer *x509.Certificate) (*ocsp.Response, error) {
	if len(der) == 0 {
		return nil, ErrMissing
	}
	k := checked{sha256.Sum256(der), sha256.Sum256(cert.Raw), sha256.Sum256(issuer.Raw)}
	c.mu.Lock()
	r := c.parsed[k]
	c.mu.Unlock()
	if r != nil {
		return r, nil
	}
	r, err := parse(der, cert, issuer)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.parsed == nil || len(c.parsed) >= maxChecked {
		c.parsed = make(map[checked]*ocsp.Response)
	}
	c.parsed[k] = r
	c.mu.Unlock()
	return r, nil
}

// Stapler keeps a fresh OCSP response for one certificate. It is safe for
// concurrent use.
type Stapler struct {
	cert, issuer *x509.Certificate
	url          string
	client       *http.Client
	now          func() time.Time

	mu     sync.Mutex
	der    []byte
	parsed *ocsp.Response
	// flight is the fetch under way, nil when none is: every caller that
	// needs a fetch joins it rather than starting another.
	flight *flight
}

// flight is one fetch of a response; err is set before done is closed.
type flight struct {
	done chan struct{}
	err  error
}

// fetchTimeout bounds one fetch of a response.
const fetchTimeout = 10 * time.Second

// StaplerOptions configure a Stapler.
type StaplerOptions struct {
	// URL of the responder; the certificate's authority information access
	// OCSP URL when empty.
	URL string
	// Client fetches; a client with a 10-second timeout when nil.
	Client *http.Client
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// NewStapler returns a stapler for cert, issued by issuer.
func NewStapler(cert, issuer *x509.Certificate, opts StaplerOptions) (*Stapler, error) {
	if opts.URL == "" {
		if len(cert.OCSPServer) == 0 {
			return nil, errors.New("the certificate names no OCSP responder and none " +
				"was configured")
		}
		opts.URL = cert.OCSPServer[0]
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: fetchTimeout}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Stapler{cert: cert, issuer: issuer, url: opts.URL, client: opts.Client,
		now: opts.Now}, nil
}

// refreshAt is when a response should be replaced: halfway through its
// validity, so that a failed refresh leaves time to retry.
func refreshAt(r *ocsp.Response) time.Time {
	return r.ThisUpdate.Add(r.NextUpdate.Sub(r.ThisUpdate) / 2)
}

// Response has the signature of sign.Signer.OCSP. It returns the cached
// response at once while it is valid: past its refresh point it also
// starts a fetch in the background, one for all callers, so that signing
// never waits on the responder while there is something to staple. Only
// when there is no valid cached response does it wait for a fetch (at
// most about 10 seconds, shared with every other caller waiting) and
// return what that fetch brought or its error. Run keeps the cache fresh
// so that callers seldom see a refresh point.
func (s *Stapler) Response() ([]byte, error) {
	s.mu.Lock()
	now := s.now()
	if s.parsed != nil && now.Before(s.parsed.NextUpdate) {
		if !now.Before(refreshAt(s.parsed)) {
			s.startLocked()
		}
		der := s.der
		s.mu.Unlock()
		return der, nil
	}
	f := s.startLocked()
	s.mu.Unlock()

	<-f.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.parsed != nil && s.now().Before(s.parsed.NextUpdate) {
		return s.der, nil
	}
	if f.err != nil {
		return nil, f.err
	}
	return nil, fmt.Errorf("the OCSP response from %s for our signing certificate "+
		"is no longer valid; check the clock and the responder", s.url)
}

// Refresh fetches a new response and returns the fetch's error. The fetch
// starts after the call, so that it tells of a revocation made before it:
// a fetch under way is waited for first. It returns ctx's error if ctx ends
// first; the fetch then goes on and its result is kept.
func (s *Stapler) Refresh(ctx context.Context) error {
	s.mu.Lock()
	if old := s.flight; old != nil {
		s.mu.Unlock()
		select {
		case <-old.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		s.mu.Lock()
	}
	// Any fetch under way now started after old ended, so after the call.
	f := s.startLocked()
	s.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startLocked starts a fetch unless one is under way, and returns the one
// under way. The fetch holds no lock while it waits on the network.
func (s *Stapler) startLocked() *flight {
	if s.flight != nil {
		return s.flight
	}
	f := &flight{done: make(chan struct{})}
	s.flight = f
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
		defer cancel()
		der, r, err := s.fetch(ctx)
		s.mu.Lock()
		switch {
		case errors.Is(err, ErrRevoked):
			// Our own certificate must be good before we staple it: a
			// revoked signing certificate means every peer would refuse
			// our messages.
			s.der, s.parsed = nil, nil
		case err == nil:
			s.der, s.parsed = der, r
		}
		s.flight, f.err = nil, err
		s.mu.Unlock()
		close(f.done)
	}()
	return f
}

// fetch asks the responder about our certificate and verifies the answer.
func (s *Stapler) fetch(ctx context.Context) ([]byte, *ocsp.Response, error) {
	req, err := ocsp.CreateRequest(s.cert, s.issuer, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("make OCSP request: %w", err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(req))
	if err != nil {
		return nil, nil, fmt.Errorf("make OCSP request: %w", err)
	}
	hr.Header.Set("Content-Type", "application/ocsp-request")
	resp, err := s.client.Do(hr)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch OCSP response from %s: %w", s.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("fetch OCSP response from %s: HTTP %s", s.url,
			resp.Status)
	}
	der, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, nil, fmt.Errorf("fetch OCSP response from %s: %w", s.url, err)
	}
	r, err := Verify(der, s.cert, s.issuer, s.now(), 24*time.Hour)
	if err != nil {
		return nil, nil, fmt.Errorf("OCSP response from %s for our signing certificate: %w",
			s.url, err)
	}
	return der, r, nil
}

// Run keeps the response fresh until ctx ends: it refreshes at each
// response's refresh point, and retries every 30 seconds after a failure.
// It returns ctx's error.
func (s *Stapler) Run(ctx context.Context) error {
	for {
		wait := 30 * time.Second
		if err := s.Refresh(ctx); err == nil {
			s.mu.Lock()
			if s.parsed != nil {
				wait = max(refreshAt(s.parsed).Sub(s.now()), time.Second)
			}
			s.mu.Unlock()
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
