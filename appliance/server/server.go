// Package server wires the security server together from its
// configuration file: the key store, the global configuration, the message
// log, access rights and the replay store in the configuration database,
// and the client-side and server-side proxies on their listeners.
//
// A program calls LoadConfig, New and Start, and Shutdown on SIGTERM. The
// package does not log; a program wraps Options.Events to log one line per
// exchange.
package server

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/qapi-az/qapi/appliance/acl"
	"github.com/qapi-az/qapi/appliance/archive"
	"github.com/qapi-az/qapi/appliance/events"
	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/keys"
	"github.com/qapi-az/qapi/appliance/messagelog"
	"github.com/qapi-az/qapi/appliance/ocsp"
	"github.com/qapi-az/qapi/appliance/proxy"
	"github.com/qapi-az/qapi/appliance/replay"
	"github.com/qapi-az/qapi/appliance/sign"
	"github.com/qapi-az/qapi/appliance/soap"
	bolt "go.etcd.io/bbolt"
)

// Options are what New takes besides the configuration file: the hooks
// that other parts of the appliance fill in.
type Options struct {
	// Keys is the key store. Required.
	Keys keys.Store
	// Source gives the global configuration; when nil, the files
	// Config.Anchor and Config.GlobalConf are loaded once.
	Source globalconf.Source
	// Events receives one record per exchange and side; events.Discard
	// when nil. It must not block.
	Events events.Sink
	// OCSP, when set, returns the OCSP response to staple to signatures.
	// When nil, and Config.OCSP.Mode is "auto", the server staples a fresh
	// response from the responder of its signing certificate
	// (appliance/ocsp.Stapler) while the global configuration lists OCSP
	// responders for the certification centre that issued it (2.3, 6.4).
	OCSP func() ([]byte, error)
	// CheckOCSP, when set, judges the peers' stapled OCSP responses. When
	// nil, and Config.OCSP.Mode is "auto", an ocsp.Checker judges them
	// wherever the global configuration lists OCSP responders for the
	// peer's certification centre, and a revoked certificate is reported
	// as an incident.
	CheckOCSP func(cert, issuer *x509.Certificate, ocsp []byte) error
	// Stamper, when set, time-stamps the message log. When nil, unless
	// Config.Timestamps.Off, the log is stamped by the first time-stamping
	// authority of the global configuration in use (6.3).
	Stamper messagelog.Stamper
	// Archived, when set, is told of each archiving round (Config.Archive):
	// the files written and pruned, or the round's error.
	Archived func(written, pruned []string, err error)
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// ErrorLog receives the listeners' connection errors (TLS handshakes
	// refused, for one); they are dropped when nil.
	ErrorLog *log.Logger

	// proxyLog, set only by the package's benchmarks, replaces the message
	// log the proxies write to, to measure what the log costs (2.2.2
	// forbids running without it).
	proxyLog proxy.MessageLog
}

// Server is a configured security server.
type Server struct {
	cfg    *Config
	opts   Options
	src    globalconf.Source
	errLog *log.Logger

	signCert, authCert *x509.Certificate
	checker            *ocsp.Checker
	inc                *incidents // nil when reports are off
	stamped            bool       // the log has a Stamper
	archive            *archive.Archiver
	bgCtx              context.Context // ends background work at Shutdown
	bgCancel           context.CancelFunc
	bg                 sync.WaitGroup
	db                 *bolt.DB
	log                *messagelog.Log
	logCheck           logCheck
	acl                *acl.Store
	replay             *replay.Store
	client             *proxy.ClientProxy
	server             *proxy.ServerProxy

	clientTLS *tls.Config
	// fileConf or fetcher gives the global configuration unless
	// Options.Source does: the fetcher when the anchor names configuration
	// URLs, else the file alone.
	fileConf *fileSource
	fetcher  *globalconf.Fetcher
	stop     chan struct{}

	mu        sync.Mutex
	listeners map[string]net.Listener // by role
	servers   []*http.Server
	wg        sync.WaitGroup
	errc      chan error
}

// Roles of the listeners, for Addr.
const (
	RoleClientHTTP  = "clientHTTP"
	RoleClientHTTPS = "clientHTTPS"
	RoleServer      = "server"
)

// logMaxDelay is how long the message log's writer waits for more records
// before a commit while commits are shared (messagelog.Options.MaxDelay):
// a lone exchange is not delayed, and under load a commit, whose syncs cost
// CPU whatever it carries, carries more records.
const logMaxDelay = time.Millisecond

// New opens the server's stores and builds its proxies. It listens on
// nothing yet; call Start. On error, everything opened is closed.
func New(cfg *Config, opts Options) (s *Server, err error) {
	if opts.Keys == nil {
		return nil, errors.New("server: no key store")
	}
	s = &Server{cfg: cfg, opts: opts, listeners: map[string]net.Listener{},
		errc: make(chan error, 4), errLog: opts.ErrorLog, stop: make(chan struct{})}
	s.bgCtx, s.bgCancel = context.WithCancel(context.Background())
	if s.errLog == nil {
		s.errLog = log.New(io.Discard, "", 0)
	}
	// The named result s is nil on every error return, so the clean-up
	// holds the server under its own name.
	srv := s
	defer func() {
		if err != nil {
			srv.bgCancel()
			srv.bg.Wait()
			srv.closeStores()
		}
	}()

	src := opts.Source
	if src == nil {
		if src, err = s.loadSource(cfg); err != nil {
			return nil, err
		}
	}
	s.src = src
	member := cfg.MemberID()
	signKey, err := opts.Keys.Signer(keys.Signing)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	signChain, err := readCerts(cfg.path(cfg.TLS.SigningCert))
	if err != nil {
		return nil, fmt.Errorf("tls.signingCert: %w", err)
	}
	if err := sameKey(signChain[0], signKey); err != nil {
		return nil, fmt.Errorf("tls.signingCert %s: %w", cfg.TLS.SigningCert, err)
	}
	authKey, err := opts.Keys.Signer(keys.Authentication)
	if err != nil {
		return nil, fmt.Errorf("authentication key: %w", err)
	}
	authChain, err := readCerts(cfg.path(cfg.TLS.AuthCert))
	if err != nil {
		return nil, fmt.Errorf("tls.authCert: %w", err)
	}
	if err := sameKey(authChain[0], authKey); err != nil {
		return nil, fmt.Errorf("tls.authCert %s: %w", cfg.TLS.AuthCert, err)
	}
	authCert := tls.Certificate{PrivateKey: authKey, Leaf: authChain[0]}
	for _, c := range authChain {
		authCert.Certificate = append(authCert.Certificate, c.Raw)
	}
	s.signCert, s.authCert = signChain[0], authChain[0]
	logKey, err := opts.Keys.Secret(keys.LogEncryption)
	if err != nil {
		return nil, fmt.Errorf("message log key: %w", err)
	}

	stamper := opts.Stamper
	if stamper == nil && !cfg.Timestamps.Off {
		stamper = &confStamper{src: src}
	}
	s.stamped = stamper != nil
	s.log, err = messagelog.Open(messagelog.Options{Path: cfg.path(cfg.MessageLog),
		Key: logKey, Stamper: stamper, Now: opts.Now, MaxDelay: logMaxDelay,
		StampInterval: time.Duration(cfg.Timestamps.Interval),
		StampGrace:    time.Duration(cfg.Timestamps.Grace)})
	if err != nil {
		return nil, fmt.Errorf("open message log %s: %w", cfg.MessageLog, err)
	}
	s.db, err = bolt.Open(cfg.path(cfg.ConfigDB), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open configuration database %s (is another server "+
			"using it?): %w", cfg.ConfigDB, err)
	}
	if s.acl, err = acl.Open(s.db); err != nil {
		return nil, err
	}
	for _, r := range cfg.AccessRights {
		svc, _ := ident.ParseService(r.Service)
		sub, _ := acl.ParseSubject(r.Subject)
		if err := s.acl.Grant(svc, sub); err != nil {
			return nil, fmt.Errorf("accessRights: %w", err)
		}
	}
	// Clause 6.2.4: the seen message ids are kept in the message log, where
	// each is committed with its request's record.
	if s.replay, err = replay.Open(s.log, time.Duration(cfg.Limits.ReplayWindow),
		logKey); err != nil {
		return nil, fmt.Errorf("message log %s: %w", cfg.MessageLog, err)
	}
	if _, err := s.replay.Import(s.db, s.now()); err != nil {
		return nil, err
	}

	clients, _ := cfg.ClientIDs()
	services, err := cfg.proxyServices()
	if err != nil {
		return nil, err
	}
	isCerts := map[string]ident.Client{}
	for _, p := range cfg.ISCerts {
		c, _ := ident.ParseClient(p.Client)
		isCerts[p.CertSHA256] = c
	}
	staple, checkOCSP := opts.OCSP, opts.CheckOCSP
	if cfg.OCSP.Mode == OCSPAuto {
		if staple == nil {
			staple = (&stapling{src: src, cert: signChain[0], ctx: s.bgCtx,
				wg: &s.bg, report: s.report}).Response
		}
		if checkOCSP == nil {
			s.checker = &ocsp.Checker{Source: src, Now: opts.Now}
			checkOCSP = s.checkOCSP
		}
	}
	if !cfg.Incidents.Off {
		s.inc = &incidents{src: src, key: authKey, cert: authChain[0].Raw,
			size: cfg.Incidents.Queue, ctx: s.bgCtx, wg: &s.bg}
	}
	if cfg.Archive != nil {
		if s.archive, err = s.archiver(); err != nil {
			return nil, err
		}
		s.archive.Head = &archive.HeadSigner{Key: signKey, Chain: signChain}
	}
	pc := proxy.Config{
		Clients: clients,
		Source:  src,
		Signers: map[ident.Client]*sign.Signer{member: {Key: signKey, Cert: signChain[0],
			Chain: signChain[1:], OCSP: staple}},
		AuthCert: authCert,
		Log:      s.log,
		Events:   opts.Events,
		ACL:      s.acl,
		Replay:   s.replay,
		Services: services,
		Limits: soap.Limits{MaxBytes: cfg.Limits.MaxRequestBytes,
			MaxDepth: soap.DefaultLimits().MaxDepth},
		ResponseMaxBytes: cfg.Limits.MaxResponseBytes,
		Timeout:          time.Duration(cfg.Limits.Timeout),
		MaxConcurrent:    cfg.Limits.MaxConcurrent,
		ISCerts:          isCerts,
		CheckOCSP:        checkOCSP,
		Refused:          s.refused,
		Now:              opts.Now,
	}
	if opts.proxyLog != nil {
		pc.Log = opts.proxyLog
	}
	if s.client, err = proxy.NewClientProxy(pc); err != nil {
		return nil, err
	}
	if s.server, err = proxy.NewServerProxy(pc); err != nil {
		return nil, err
	}
	if cfg.Listen.ClientHTTPS != "" {
		cert, err := tls.LoadX509KeyPair(cfg.path(cfg.TLS.ClientHTTPSCert),
			cfg.path(cfg.TLS.ClientHTTPSKey))
		if err != nil {
			return nil, fmt.Errorf("tls.clientHTTPSCert/Key: %w", err)
		}
		// Information systems' certificates are requested, not required:
		// ISCerts decides per client which must present one.
		s.clientTLS = &tls.Config{MinVersion: tls.VersionTLS12,
			Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert}
	}
	return s, nil
}

// fileSource is the global configuration read from Config.GlobalConf,
// verified against Config.Anchor, and read again when the file changes.
type fileSource struct {
	*globalconf.Static
	path   string
	anchor *globalconf.Anchor

	mu      sync.Mutex
	serial  uint64
	modTime time.Time
}

// loadSource reads the anchor and sets up the global configuration: fetched
// from the anchor's URLs and kept in Config.GlobalConf when the anchor
// names URLs, else read from Config.GlobalConf alone.
func (s *Server) loadSource(cfg *Config) (globalconf.Source, error) {
	if cfg.Anchor == "" || cfg.GlobalConf == "" {
		return nil, errors.New("anchor and globalConf must be set when no global " +
			"configuration source is given")
	}
	a, err := globalconf.LoadAnchor(cfg.path(cfg.Anchor))
	if err != nil {
		return nil, err
	}
	if len(a.ConfigURLs) > 0 {
		s.fetcher, err = globalconf.NewFetcher(globalconf.FetcherOptions{Anchor: a,
			Path: cfg.path(cfg.GlobalConf)})
		return s.fetcher, err
	}
	f := &fileSource{Static: globalconf.NewStatic(nil), path: cfg.path(cfg.GlobalConf),
		anchor: a}
	if _, err := f.reload(true); err != nil {
		return nil, err
	}
	s.fileConf = f
	return f, nil
}

// reload reads the file again if it changed since the last read (or when
// force), and takes it if its serial is newer. It reports whether it took
// a new version.
func (f *fileSource) reload(force bool) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, err := os.Stat(f.path)
	if err != nil {
		return false, fmt.Errorf("global configuration: %w", err)
	}
	if !force && fi.ModTime().Equal(f.modTime) {
		return false, nil
	}
	conf, err := globalconf.Load(f.path, f.anchor)
	if err != nil {
		return false, err
	}
	f.modTime = fi.ModTime()
	if conf.Serial < f.serial {
		return false, fmt.Errorf("global configuration %s has serial %d, older than the "+
			"%d in use; kept the newer", f.path, conf.Serial, f.serial)
	}
	if conf.Serial == f.serial && !force {
		return false, nil
	}
	f.serial = conf.Serial
	f.Set(conf)
	return true, nil
}

// ReloadGlobalConf takes a new global configuration now: it fetches from
// the anchor's URLs when the anchor names them, else reads the file again.
// A version that does not verify against the anchor or is older than the
// one in use is refused. It reports whether a new version was taken. With
// a Source given in Options it does nothing.
func (s *Server) ReloadGlobalConf() (bool, error) {
	switch {
	case s.fetcher != nil:
		before := s.fetcher.Status().Serial
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := s.fetcher.Refresh(ctx)
		return s.fetcher.Status().Serial != before, err
	case s.fileConf != nil:
		return s.fileConf.reload(true)
	}
	return false, nil
}

// GlobalConfRecheck is how often a running server looks whether its global
// configuration file changed.
const GlobalConfRecheck = 30 * time.Second

func (c *Config) proxyServices() ([]proxy.Service, error) {
	var out []proxy.Service
	for i, sc := range c.Services {
		p, _ := ident.ParseClient(sc.Provider)
		s := proxy.Service{Provider: p, Code: sc.Code, URL: sc.URL, WSDL: sc.WSDL}
		if sc.TLSCA != "" || sc.TLSCert != "" {
			tc := &tls.Config{MinVersion: tls.VersionTLS12}
			if sc.TLSCA != "" {
				roots, err := readCerts(c.path(sc.TLSCA))
				if err != nil {
					return nil, fmt.Errorf("services[%d].tlsCA: %w", i, err)
				}
				tc.RootCAs = x509.NewCertPool()
				for _, r := range roots {
					tc.RootCAs.AddCert(r)
				}
			}
			if sc.TLSCert != "" {
				cert, err := tls.LoadX509KeyPair(c.path(sc.TLSCert), c.path(sc.TLSKey))
				if err != nil {
					return nil, fmt.Errorf("services[%d].tlsCert/tlsKey: %w", i, err)
				}
				tc.Certificates = []tls.Certificate{cert}
			}
			s.Client = &http.Client{Transport: &http.Transport{TLSClientConfig: tc,
				MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second}}
		}
		out = append(out, s)
	}
	return out, nil
}

// readCerts reads the PEM certificates of a file, leaf first.
func readCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return out, nil
}

func sameKey(cert *x509.Certificate, key interface{ Public() crypto.PublicKey }) error {
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(key.Public()) {
		return errors.New("the certificate is not for the key in the key store; " +
			"issue it for a request made from this server's key")
	}
	return nil
}

// ACL returns the access rights, to grant and revoke.
func (s *Server) ACL() *acl.Store { return s.acl }

// MessageLog returns the message log.
func (s *Server) MessageLog() *messagelog.Log { return s.log }

// GlobalConf returns the source of the global configuration the server
// exchanges by.
func (s *Server) GlobalConf() globalconf.Source { return s.src }

// ClientProxy returns the client-side proxy handler.
func (s *Server) ClientProxy() http.Handler { return s.client }

// ServerProxy returns the server-side proxy handler.
func (s *Server) ServerProxy() http.Handler { return s.server }

// Start listens on the configured addresses and serves in the background.
// Errors of a listener after Start are reported by Wait.
func (s *Server) Start() error {
	type l struct {
		role, addr string
		h          http.Handler
		tc         *tls.Config
	}
	all := []l{
		{RoleClientHTTP, s.cfg.Listen.ClientHTTP, s.client, nil},
		{RoleClientHTTPS, s.cfg.Listen.ClientHTTPS, s.client, s.clientTLS},
		{RoleServer, s.cfg.Listen.Server, s.server, s.server.TLSConfig()},
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range all {
		if x.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", x.addr)
		if err != nil {
			for _, o := range s.listeners {
				o.Close()
			}
			return fmt.Errorf("listen %s on %s: %w", x.role, x.addr, err)
		}
		s.listeners[x.role] = ln
		hs := &http.Server{Handler: x.h, TLSConfig: x.tc,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       time.Duration(s.cfg.Limits.Timeout),
			WriteTimeout:      2*time.Duration(s.cfg.Limits.Timeout) + 10*time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          s.errLog,
		}
		s.servers = append(s.servers, hs)
		if x.tc != nil {
			ln = tls.NewListener(ln, x.tc)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.errc <- fmt.Errorf("%s listener: %w", x.role, err)
			}
		}()
	}
	if s.fileConf != nil {
		s.wg.Add(1)
		go s.watchGlobalConf()
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.log.VerifyEvery(s.bgCtx, time.Duration(s.cfg.MessageLogVerify), s.logVerified)
	}()
	if s.archive != nil {
		report := s.opts.Archived
		if report == nil {
			report = func(_, _ []string, err error) {
				if err != nil {
					s.errLog.Printf("archiving the message log: %v", err)
				}
			}
		}
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			s.archive.Every(s.bgCtx, time.Duration(s.cfg.Archive.Period), report)
		}()
	}
	if s.fetcher != nil {
		ctx, cancel := context.WithCancel(context.Background())
		s.wg.Add(2)
		go func() { defer s.wg.Done(); s.fetcher.Run(ctx) }()
		go func() { defer s.wg.Done(); <-s.stop; cancel() }()
	}
	return nil
}

// watchGlobalConf takes a changed global configuration file. A file that
// does not verify is reported on ErrorLog and the one in use is kept.
func (s *Server) watchGlobalConf() {
	defer s.wg.Done()
	t := time.NewTicker(GlobalConfRecheck)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if _, err := s.fileConf.reload(false); err != nil {
				s.errLog.Printf("global configuration not reloaded: %v", err)
			}
		}
	}
}

// Addr returns the address a role listens on (after Start), or "".
func (s *Server) Addr(role string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ln := s.listeners[role]; ln != nil {
		return ln.Addr().String()
	}
	return ""
}

// Err returns a channel that yields a listener's failure.
func (s *Server) Err() <-chan error { return s.errc }

// Shutdown stops accepting, waits for exchanges under way (until ctx ends),
// and closes the stores.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	servers := s.servers
	s.servers = nil
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.mu.Unlock()
	var errs []error
	for _, hs := range servers {
		if err := hs.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	s.wg.Wait()
	s.bgCancel()
	s.bg.Wait()
	errs = append(errs, s.closeStores())
	return errors.Join(errs...)
}

func (s *Server) closeStores() error {
	var errs []error
	if s.client != nil {
		s.client.Close()
	}
	if s.server != nil {
		s.server.Close()
	}
	if s.replay != nil {
		errs = append(errs, s.replay.Close())
	}
	if s.db != nil {
		errs = append(errs, s.db.Close())
	}
	if s.log != nil {
		errs = append(errs, s.log.Close())
	}
	return errors.Join(errs...)
}

// now is the server's clock.
func (s *Server) now() time.Time {
	if s.opts.Now != nil {
		return s.opts.Now()
	}
	return time.Now()
}
