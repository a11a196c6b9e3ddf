package server

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/qapi-az/qapi/appliance/archive"
	"github.com/qapi-az/qapi/appliance/events"
	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/keys"
	"github.com/qapi-az/qapi/appliance/messagelog"
	"github.com/qapi-az/qapi/appliance/ocsp"
	"github.com/qapi-az/qapi/appliance/soap"
	"github.com/qapi-az/qapi/appliance/timestamp"
	"github.com/qapi-az/qapi/netconfig"
	"github.com/qapi-az/qapi/portal/incident"
)

// caEntry returns the certification centre of conf whose certificate is
// issuer, or nil.
func caEntry(conf *globalconf.Conf, issuer *x509.Certificate) *globalconf.CA {
	for i := range conf.CAs {
		if bytes.Equal(conf.CAs[i].Cert, issuer.Raw) {
			return &conf.CAs[i]
		}
	}
	return nil
}

// issuerIn returns the certification centre of conf that issued cert, and
// its certificate.
func issuerIn(conf *globalconf.Conf, cert *x509.Certificate) (*globalconf.CA,
	*x509.Certificate) {
	for i := range conf.CAs {
		ca, err := x509.ParseCertificate(conf.CAs[i].Cert)
		if err == nil && cert.CheckSignatureFrom(ca) == nil {
			return &conf.CAs[i], ca
		}
	}
	return nil, nil
}

// stapling staples OCSP responses for the signing certificate (2.3, 6.4)
// while the global configuration lists OCSP responders for its
// certification centre. It follows the configuration: the stapler is made
// when responders first appear, and made again when they change.
type stapling struct {
	src  globalconf.Source
	cert *x509.Certificate
	ctx  context.Context // ends the staplers' refresh loops
	wg   *sync.WaitGroup
	// report tells the operator that our own certificate is revoked (6.8).
	report func(incident.Report)

	mu      sync.Mutex
	conf    *globalconf.Conf // the configuration use was chosen for
	use     *ocsp.Stapler    // st, or nil when conf lists no responder for us
	key     string           // issuer and URL of st
	st      *ocsp.Stapler
	stopRun context.CancelFunc
}

// Response has the signature of sign.Signer.OCSP. It returns nil, staples
// nothing, while the configuration lists no responder for our centre.
func (s *stapling) Response() ([]byte, error) {
	st, err := s.stapler()
	if st == nil || err != nil {
		return nil, err
	}
	der, err := st.Response()
	if errors.Is(err, ocsp.ErrRevoked) {
		s.report(incident.Report{Kind: incident.RevokedCert, Detail: fmt.Sprintf(
			"this server's signing certificate (serial %s) is revoked; it signs nothing",
			s.cert.SerialNumber)})
	}
	return der, err
}

func (s *stapling) stapler() (*ocsp.Stapler, error) {
	conf, err := s.src.Current()
	if err != nil {
		return nil, nil // the proxies refuse to exchange without one
	}

	// Finding the issuer checks a signature: do it once per configuration,
	// not once per message signed.
	s.mu.Lock()
	defer s.mu.Unlock()
	if conf == s.conf {
		return s.use, nil
	}
	ca, issuer := issuerIn(conf, s.cert)
	if ca == nil || len(ca.OCSP) == 0 {
		s.conf, s.use = conf, nil
		return nil, nil
	}
	url := ca.OCSP[0]
	if len(s.cert.OCSPServer) > 0 {
		url = s.cert.OCSPServer[0] // the certificate's own word first
	}
	key := string(issuer.Raw) + "\x00" + url
	if s.st != nil && s.key == key {
		s.conf, s.use = conf, s.st
		return s.st, nil
	}
	st, err := ocsp.NewStapler(s.cert, issuer, ocsp.StaplerOptions{URL: url})
	if err != nil {
		return nil, fmt.Errorf("OCSP stapler for the signing certificate: %w", err)
	}
	if s.stopRun != nil {
		s.stopRun()
	}
	ctx, cancel := context.WithCancel(s.ctx)
	s.conf, s.use, s.st, s.key, s.stopRun = conf, st, st, key, cancel
	s.wg.Add(1)
	go func() { defer s.wg.Done(); st.Run(ctx) }()
	return st, nil
}

// checkOCSP judges a peer's stapled OCSP response (6.4) when the global
// configuration lists OCSP responders for the certification centre that
// issued the peer's certificate, and reports a revoked certificate (6.8).
func (s *Server) checkOCSP(cert, issuer *x509.Certificate, der []byte) error {
	conf, err := s.src.Current()
	if err != nil {
		return err
	}
	if ca := caEntry(conf, issuer); ca == nil || len(ca.OCSP) == 0 {
		return nil
	}
	err = s.checker.Check(cert, issuer, der)
	if errors.Is(err, ocsp.ErrRevoked) {
		s.report(incident.Report{Kind: incident.RevokedCert,
			Detail: fmt.Sprintf("signing certificate %q (serial %s) of %s is revoked",
				cert.Subject.CommonName, cert.SerialNumber, cert.Subject.SerialNumber)})
	}
	return err
}

// confStamper time-stamps with the first time-stamping authority of the
// global configuration in use (6.3), trusting the certificate the
// configuration gives for it.
type confStamper struct {
	src globalconf.Source

	mu     sync.Mutex
	client *timestamp.Client
	key    string
}

// Stamp implements messagelog.Stamper.
func (c *confStamper) Stamp(ctx context.Context, digest []byte) ([]byte, error) {
	conf, err := c.src.Current()
	if err != nil {
		return nil, fmt.Errorf("no valid global configuration to find the "+
			"time-stamping authority in: %w", err)
	}
	if len(conf.TSAs) == 0 {
		return nil, errors.New("the global configuration names no time-stamping authority")
	}
	tsa := conf.TSAs[0]
	key := tsa.URL + "\x00" + string(tsa.Cert)
	c.mu.Lock()
	if c.client == nil || c.key != key {
		cert, err := x509.ParseCertificate(tsa.Cert)
		if err != nil {
			c.mu.Unlock()
			return nil, fmt.Errorf("certificate of time-stamping authority %s: %w",
				tsa.Name, err)
		}
		roots := x509.NewCertPool()
		roots.AddCert(cert)
		c.client, c.key = &timestamp.Client{URL: tsa.URL, Roots: roots}, key
	}
	cl := c.client
	c.mu.Unlock()
	return cl.Stamp(ctx, digest)
}

// incidentKinds maps the faults that are security events (6.8) to the
// kinds the portal records.
var incidentKinds = map[string]incident.Kind{
	soap.CodeBadSignature:   incident.BadSignature,
	soap.CodeSignerMismatch: incident.BadSignature,
	soap.CodeReplay:         incident.Replay,
	soap.CodeAccessDenied:   incident.AccessDenied,
	soap.CodeBlocked:        incident.BlockedClient,
}

// incidents sends reports to the global configuration's IncidentURL
// through an incident.Queue, never blocking an exchange. A new queue is
// made when the URL changes.
type incidents struct {
	src  globalconf.Source
	key  crypto.Signer // the authentication key, which signs reports
	cert []byte        // its DER certificate
	size int
	ctx  context.Context
	wg   *sync.WaitGroup

	mu      sync.Mutex
	url     string
	q       *incident.Queue
	stopRun context.CancelFunc
}

// refused reports the security events among a proxy's refusals.
func (s *Server) refused(rec events.Record, f *soap.Fault) {
	kind, ok := incidentKinds[f.Code]
	if !ok {
		return
	}
	detail := f.String
	if len(detail) > incident.MaxDetail {
		detail = detail[:incident.MaxDetail]
	}
	s.report(incident.Report{Kind: kind, Time: rec.Done, Client: rec.Client,
		Service: rec.Service, MessageID: rec.MessageID, Detail: detail})
}

// report queues r for the portal; it never blocks.
func (s *Server) report(r incident.Report) {
	if s.inc == nil {
		return
	}
	if r.Time.IsZero() {
		r.Time = s.now()
	}
	s.inc.add(r)
}

func (in *incidents) add(r incident.Report) {
	conf, err := in.src.Current()
	if err != nil || conf.IncidentURL == "" {
		return
	}
	in.mu.Lock()
	if in.q == nil || in.url != conf.IncidentURL {
		if in.stopRun != nil {
			in.stopRun()
		}
		q := incident.NewQueue(&incident.Client{URL: conf.IncidentURL, Key: in.key,
			Cert: in.cert}, in.size)
		ctx, cancel := context.WithCancel(in.ctx)
		in.q, in.url, in.stopRun = q, conf.IncidentURL, cancel
		in.wg.Add(1)
		go func() { defer in.wg.Done(); q.Run(ctx) }()
	}
	q := in.q
	in.mu.Unlock()
	q.Add(r)
}

// archiver builds the archiver of the configuration's archive section.
func (s *Server) archiver() (*archive.Archiver, error) {
	a := s.cfg.Archive
	policy, err := a.policy()
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, r := range a.Readers {
		paths = append(paths, s.cfg.path(r))
	}
	readers, err := archive.LoadCertificates(paths...)
	if err != nil {
		return nil, fmt.Errorf("archive.readers: %w", err)
	}
	return &archive.Archiver{Log: s.log, Dir: s.cfg.path(a.Dir), Readers: readers,
		Policy: policy, MaxEntries: a.MaxEntries, RequireStamps: s.stamped,
		Now: s.opts.Now}, nil
}

// Status returns what the local monitoring station shows of the server
// (2.6): its certificates' expiry, the global configuration in use, how
// long the oldest record has waited for a time stamp, a damaged entry of
// the message log, and the network
// links when a netconfig file is configured. It holds no message data
// (2.7).
func (s *Server) Status() events.Status {
	st := events.Status{Time: s.now()}
	for _, c := range []struct {
		purpose string
		cert    *x509.Certificate
	}{{string(keys.Signing), s.signCert}, {string(keys.Authentication), s.authCert}} {
		st.Certificates = append(st.Certificates, events.CertStatus{Purpose: c.purpose,
			Subject: c.cert.Subject.String(), NotAfter: c.cert.NotAfter})
	}
	if conf, err := s.src.Current(); err == nil {
		st.GlobalConfSerial = conf.Serial
		st.GlobalConfIssued, st.GlobalConfExpires = conf.Issued, conf.Expires
	}
	st.TimestampLag = s.timestampLag(st.Time)
	st.MessageLogFault = s.MessageLogFault()
	st.Links = s.links()
	return st
}

// timestampLag is how long the oldest entry no stamp covers has waited;
// zero when every entry is stamped or the log is not stamped.
func (s *Server) timestampLag(now time.Time) time.Duration {
	if !s.stamped {
		return 0
	}
	ls := s.log.State()
	first := max(ls.Stamped, ls.Archived) + 1
	if first > ls.Head {
		return 0
	}
	var at time.Time
	s.log.Entries(first, first, func(e *messagelog.Entry) error {
		at = e.Time
		return nil
	})
	if at.IsZero() || now.Before(at) {
		return 0
	}
	return now.Sub(at)
}

// links returns the network links of the netconfig file, or nil.
func (s *Server) links() []events.LinkStatus {
	if s.cfg.NetConfig == "" {
		return nil
	}
	nc, err := netconfig.Load(s.cfg.path(s.cfg.NetConfig))
	if err != nil {
		return nil
	}
	ls, err := netconfig.Status(nc)
	if err != nil {
		return nil
	}
	var out []events.LinkStatus
	for _, l := range ls {
		out = append(out, events.LinkStatus{Role: string(l.Role), Name: l.Name, Up: l.Up,
			SpeedMbps: l.SpeedMbps, FullDuplex: l.Duplex == netconfig.DuplexFull})
	}
	return out
}
