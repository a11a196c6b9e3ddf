// Package manage is the security server's side of registration at the
// central server (clause 4.1.2): entering the central servers' addresses
// and certificates as a configuration anchor (4.1.2.3-4.1.2.5), generating
// the authentication and signing keys through a keys.Store and making
// their certificate requests (4.1.2.6-4.1.2.9), handing the requests to the
// certification centre (4.1.2.10), importing the issued certificates after
// checking they match the keys and were issued by the centre of the
// verified global configuration, and registering the server. Handler serves
// it as a local JSON API for the internal interface; 'qapi register'
// drives that API.
//
// State lives in one directory: state.json, anchor.json, and the issued
// certificates auth.pem and signing.pem. Keys stay in the keys.Store.
package manage

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/keys"
	"github.com/qapi-az/qapi/portal/wire"
)

// Identity is who the security server is and where peers reach it.
type Identity struct {
	// Owner is the member that runs the server.
	Owner ident.Client `json:"owner"`
	// Code names the server among its owner's servers.
	Code string `json:"code"`
	// Address is host:port of the server-side proxy as other security
	// servers reach it.
	Address string `json:"address"`
	// Clients are the owner and subsystems the server serves; the owner
	// alone when empty.
	Clients []ident.Client `json:"clients,omitempty"`
}

// State is what registration has reached.
type State struct {
	Identity
	// PortalURL is the portal's public URL, from the anchor.
	PortalURL string `json:"portalUrl,omitempty"`
	// AuthRequest and SigningRequest are the certification centre's ids
	// of the handed-over requests.
	AuthRequest    uint64 `json:"authRequest,omitempty"`
	SigningRequest uint64 `json:"signingRequest,omitempty"`
	// Registration is the central server's id of the registration and
	// RegistrationState its last known state.
	Registration      uint64 `json:"registration,omitempty"`
	RegistrationState string `json:"registrationState,omitempty"`
}

// Status is State plus what is installed, for the console and the CLI.
type Status struct {
	State
	AnchorInstalled bool `json:"anchorInstalled"`
	// AuthCert and SigningCert describe the imported certificates.
	AuthCert    *CertInfo `json:"authCert,omitempty"`
	SigningCert *CertInfo `json:"signingCert,omitempty"`
	// Next says what to do next, for a person.
	Next string `json:"next"`
	// Faults are the running server's faults (Options.Faults), each a
	// sentence for a person; none while all is well.
	Faults []string `json:"faults,omitempty"`
}

// CertInfo describes an imported certificate.
type CertInfo struct {
	Subject  string    `json:"subject"`
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"notAfter"`
}

// Options configure a Manager.
type Options struct {
	// Dir holds the registration state.
	Dir string
	// Keys holds the authentication and signing keys.
	Keys keys.Store
	// HTTP reaches the portal; a client with a 30-second timeout when nil.
	HTTP *http.Client
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Conf, when set, is the server's verified global configuration, whose
	// certification centres an imported certificate must chain to. When it
	// is nil or has no valid configuration, as during registration, the
	// manager fetches the configuration the installed anchor names and
	// verifies it against the anchor.
	Conf globalconf.Source
	// Faults, when set, returns the running security server's faults (a
	// damaged message log entry, say), which Status reports.
	Faults func() []string
}

// Manager carries out registration. It is safe for concurrent use.
type Manager struct {
	opts Options
	mu   sync.Mutex
	st   State
}

// Open loads the state kept in opts.Dir, creating the directory.
func Open(opts Options) (*Manager, error) {
	if opts.Keys == nil {
		return nil, errors.New("manage: no key store")
	}
	if opts.HTTP == nil {
		opts.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("registration state directory: %w", err)
	}
	m := &Manager{opts: opts}
	b, err := os.ReadFile(m.path("state.json"))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read registration state: %w", err)
	default:
		if err := json.Unmarshal(b, &m.st); err != nil {
			return nil, fmt.Errorf("registration state %s: %w", m.path("state.json"), err)
		}
	}
	return m, nil
}

func (m *Manager) path(name string) string { return filepath.Join(m.opts.Dir, name) }

func (m *Manager) saveLocked() error {
	b, _ := json.MarshalIndent(m.st, "", "  ")
	return writeFile(m.path("state.json"), b)
}

func writeFile(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// AnchorPath is the file of the installed anchor, what the global
// configuration fetcher loads with globalconf.LoadAnchor.
func (m *Manager) AnchorPath() string { return m.path("anchor.json") }

// Configure sets who the server is. Changing the owner or code after
// certificates were requested starts registration over.
func (m *Manager) Configure(id Identity) error {
	if err := id.Owner.Validate(); err != nil || id.Owner.SubsystemCode != "" {
		return fmt.Errorf("owner %q must be a member INSTANCE/CLASS/CODE", id.Owner)
	}
	if id.Code == "" || strings.ContainsAny(id.Code, "/ ") {
		return fmt.Errorf("server code %q must be non-empty without '/' or spaces", id.Code)
	}
	if !strings.Contains(id.Address, ":") {
		return fmt.Errorf("address %q must be host:port of the server-side proxy", id.Address)
	}
	for _, c := range id.Clients {
		if c.Member() != id.Owner {
			return fmt.Errorf("client %s is not the owner %s or one of its subsystems", c,
				id.Owner)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// Check before anything is reset: a refused identity must leave the
	// registration, and the certificates, as they were.
	if a, err := globalconf.LoadAnchor(m.AnchorPath()); err == nil &&
		a.Instance != id.Owner.Instance {
		return fmt.Errorf("the installed anchor is for instance %s, the owner is in %s; "+
			"install the anchor of the owner's instance or correct the owner",
			a.Instance, id.Owner.Instance)
	}
	if m.st.Owner != id.Owner || m.st.Code != id.Code {
		portal := m.st.PortalURL
		m.st = State{PortalURL: portal}
		for _, f := range []string{"auth.pem", "signing.pem"} {
			os.Remove(m.path(f))
		}
	}
	m.st.Identity = id
	return m.saveLocked()
}

// InstallAnchor checks and installs the configuration anchor the operator
// handed over (4.1.2.3-4.1.2.5): the instance, the central servers'
// configuration URLs (from which the portal's address follows) and the
// certificates that sign the configuration.
func (m *Manager) InstallAnchor(raw []byte) (*globalconf.Anchor, error) {
	var a globalconf.Anchor
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, fmt.Errorf("configuration anchor is not valid JSON: %w", err)
	}
	if a.Instance == "" || len(a.Certs) == 0 || len(a.ConfigURLs) == 0 {
		return nil, errors.New("configuration anchor needs an instance, configuration " +
			"URLs and certificates")
	}
	for i, c := range a.Certs {
		if _, err := x509.ParseCertificate(c); err != nil {
			return nil, fmt.Errorf("configuration anchor certificate %d: %w", i, err)
		}
	}
	u := a.ConfigURLs[0]
	i := strings.Index(u, wire.PathGlobalConf)
	if i < 0 {
		return nil, fmt.Errorf("configuration URL %q does not end in %sINSTANCE", u,
			wire.PathGlobalConf)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.st.Owner.IsZero() && m.st.Owner.Instance != a.Instance {
		return nil, fmt.Errorf("the anchor is for instance %s, the owner %s is in %s",
			a.Instance, m.st.Owner, m.st.Owner.Instance)
	}
	if err := writeFile(m.AnchorPath(), raw); err != nil {
		return nil, fmt.Errorf("install anchor: %w", err)
	}
	m.st.PortalURL = u[:i]
	return &a, m.saveLocked()
}

// CertificateRequest generates the key for p (Authentication or Signing)
// if the store has none, and returns a PKCS#10 request for it (4.1.2.6 to
// 4.1.2.9). The subject names the owner as the certification centre will.
func (m *Manager) CertificateRequest(p keys.Purpose) ([]byte, error) {
	m.mu.Lock()
	id := m.st.Identity
	m.mu.Unlock()
	if id.Owner.IsZero() {
		return nil, errors.New("configure the server's owner and code first " +
			"(qapi register init)")
	}
	name := id.Owner.String()
	if p == keys.Authentication {
		name += "/" + id.Code
	} else if p != keys.Signing {
		return nil, fmt.Errorf("no certificate is requested for %s keys", p)
	}
	s, err := m.opts.Keys.Signer(p)
	if err != nil {
		return nil, fmt.Errorf("generate the %s key: %w", p, err)
	}
	return keys.CertificateRequest(s, pkix.Name{CommonName: name, SerialNumber: name,
		Country: []string{"AZ"}})
}

// SubmitRequests hands both certificate requests to the certification
// centre (4.1.2.10) and remembers their ids.
func (m *Manager) SubmitRequests(ctx context.Context) (auth, signing uint64, err error) {
	ids := map[keys.Purpose]uint64{}
	for _, p := range []keys.Purpose{keys.Authentication, keys.Signing} {
		csr, err := m.CertificateRequest(p)
		if err != nil {
			return 0, 0, err
		}
		m.mu.Lock()
		cr := wire.CertRequest{Kind: "signing", Member: m.st.Owner, CSR: csr}
		if p == keys.Authentication {
			cr.Kind, cr.ServerCode = "auth", m.st.Code
		}
		m.mu.Unlock()
		var st wire.CertRequestStatus
		if err := m.post(ctx, wire.PathCertRequests, cr, &st); err != nil {
			return 0, 0, fmt.Errorf("hand the %s certificate request to the "+
				"certification centre: %w", p, err)
		}
		ids[p] = st.ID
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st.AuthRequest, m.st.SigningRequest = ids[keys.Authentication], ids[keys.Signing]
	return ids[keys.Authentication], ids[keys.Signing], m.saveLocked()
}

// FetchCertificates asks the certification centre about both requests and
// imports the certificates issued so far. It returns true when both are
// imported; false with a nil error while the operator has not approved.
func (m *Manager) FetchCertificates(ctx context.Context) (bool, error) {
	m.mu.Lock()
	reqs := map[keys.Purpose]uint64{keys.Authentication: m.st.AuthRequest,
		keys.Signing: m.st.SigningRequest}
	m.mu.Unlock()
	done := true
	for p, id := range reqs {
		if _, err := m.certificate(p); err == nil {
			continue
		}
		if id == 0 {
			return false, errors.New("no certificate request was handed over; run " +
				"'qapi register submit' first")
		}
		var st wire.CertRequestStatus
		if err := m.get(ctx, fmt.Sprintf("%s/%d", wire.PathCertRequests, id), &st); err != nil {
			return false, err
		}
		switch st.State {
		case "issued":
			if _, err := m.ImportCertificate(ctx, st.Cert); err != nil {
				return false, err
			}
		case "rejected":
			return false, fmt.Errorf("the certification centre rejected the %s request "+
				"%d: %s", p, id, st.Reason)
		default:
			done = false
		}
	}
	return done, nil
}

// ImportCertificate checks a certificate (DER or PEM) against the server's
// keys and installs it as the authentication or signing certificate,
// whichever key it certifies. It refuses a certificate that matches
// neither key or names another member or server, or has the wrong usage,
// or was not issued by a certification centre of the verified global
// configuration (2.3, 4.1.2.5): the anchor is what makes that
// configuration trustworthy, while the certificate itself may have come
// over plain HTTP. Checking the issuer may fetch the configuration, within
// ctx.
func (m *Manager) ImportCertificate(ctx context.Context, b []byte) (keys.Purpose, error) {
	cert, err := parseCertificate(b)
	if err != nil {
		return "", fmt.Errorf("not a certificate: %w", err)
	}
	m.mu.Lock()
	id := m.st.Identity
	m.mu.Unlock()
	var purpose keys.Purpose
	for _, p := range []keys.Purpose{keys.Authentication, keys.Signing} {
		s, err := m.opts.Keys.Signer(p)
		if err != nil {
			return "", fmt.Errorf("read the %s key: %w", p, err)
		}
		if pub, ok := s.Public().(*ecdsa.PublicKey); ok && pub.Equal(cert.PublicKey) {
			purpose = p
		}
	}
	if purpose == "" {
		return "", errors.New("the certificate certifies neither this server's " +
			"authentication key nor its signing key; was it issued for another server?")
	}
	owner, code, err := ident.MemberFromCertSerial(cert.Subject.SerialNumber)
	if err != nil {
		return "", err
	}
	if owner != id.Owner || (purpose == keys.Authentication && code != id.Code) ||
		(purpose == keys.Signing && code != "") {
		return "", fmt.Errorf("the certificate names %q, but this server is %s/%s",
			cert.Subject.SerialNumber, id.Owner, id.Code)
	}
	switch purpose {
	case keys.Signing:
		if cert.KeyUsage&x509.KeyUsageContentCommitment == 0 {
			return "", errors.New("the signing certificate lacks nonRepudiation usage")
		}
	case keys.Authentication:
		if !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) ||
			!slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
			return "", errors.New("the authentication certificate lacks serverAuth and " +
				"clientAuth usage")
		}
	}
	if err := m.checkIssuer(ctx, cert); err != nil {
		return "", err
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	if err := writeFile(m.path(certFile(purpose)), out); err != nil {
		return "", fmt.Errorf("install the %s certificate: %w", purpose, err)
	}
	return purpose, nil
}

// checkIssuer refuses cert unless it chains to a certification centre of
// the verified global configuration.
func (m *Manager) checkIssuer(ctx context.Context, cert *x509.Certificate) error {
	conf, err := m.trustedConf(ctx)
	if err != nil {
		return fmt.Errorf("cannot check that the portal's certification centre issued "+
			"the certificate, so it is not imported: %w", err)
	}
	roots, err := conf.CAPool()
	if err != nil {
		return err
	}
	_, err = cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: m.opts.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return fmt.Errorf("the certificate (issuer %q) was not issued by a certification "+
			"centre of the global configuration of %s: %w; it may have been replaced on "+
			"its way from the portal: fetch it again, or take it from the operator by "+
			"hand", cert.Issuer, conf.Instance, err)
	}
	return nil
}

// trustedConf returns a global configuration verified against the
// installed anchor and valid now: Options.Conf's, or else one fetched
// from the anchor's configuration URLs.
func (m *Manager) trustedConf(ctx context.Context) (*globalconf.Conf, error) {
	if m.opts.Conf != nil {
		if c, err := m.opts.Conf.Current(); err == nil {
			return c, nil
		}
	}
	a, err := globalconf.LoadAnchor(m.AnchorPath())
	if err != nil {
		return nil, fmt.Errorf("install the operator's configuration anchor first "+
			"(qapi register anchor FILE), which vouches for the certification centre "+
			"(4.1.2.5): %w", err)
	}
	var errs []error
	for _, u := range a.ConfigURLs {
		c, err := m.fetchConf(ctx, u, a)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("no verified global configuration: %w; check that the "+
		"server reaches the portal", errors.Join(errs...))
}

// fetchConf fetches the configuration at url, verifies it against a and
// checks it is valid now.
func (m *Manager) fetchConf(ctx context.Context, url string, a *globalconf.Anchor) (
	*globalconf.Conf, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch global configuration %s: %w", url, err)
	}
	resp, err := m.opts.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch global configuration %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch global configuration %s: HTTP %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("fetch global configuration %s: %w", url, err)
	}
	c, err := globalconf.Verify(b, a)
	if err != nil {
		return nil, fmt.Errorf("global configuration %s: %w", url, err)
	}
	if err := c.Check(m.opts.Now()); err != nil {
		return nil, fmt.Errorf("global configuration %s: %w", url, err)
	}
	return c, nil
}

// CertPath is the PEM file of the imported certificate for p
// (Authentication or Signing), what the security server's configuration
// names as tls.authCert and tls.signingCert.
func (m *Manager) CertPath(p keys.Purpose) string { return m.path(certFile(p)) }

func certFile(p keys.Purpose) string {
	if p == keys.Authentication {
		return "auth.pem"
	}
	return "signing.pem"
}

func (m *Manager) certificate(p keys.Purpose) (*x509.Certificate, error) {
	b, err := os.ReadFile(m.path(certFile(p)))
	if err != nil {
		return nil, fmt.Errorf("no %s certificate is installed: %w", p, err)
	}
	c, err := parseCertificate(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w; import the certificate again", m.path(certFile(p)), err)
	}
	return c, nil
}

// parseCertificate reads one certificate, PEM or DER.
func parseCertificate(b []byte) (*x509.Certificate, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block is %s, not CERTIFICATE", blk.Type)
		}
		b = blk.Bytes
	}
	return x509.ParseCertificate(b)
}

// SigningCertificate returns the installed signing certificate and key,
// what sign.Signer needs.
func (m *Manager) SigningCertificate() (*x509.Certificate, crypto.Signer, error) {
	cert, err := m.certificate(keys.Signing)
	if err != nil {
		return nil, nil, err
	}
	s, err := m.opts.Keys.Signer(keys.Signing)
	return cert, s, err
}

// AuthCertificate returns the installed authentication certificate and
// key as a TLS certificate, what the proxies use between servers.
func (m *Manager) AuthCertificate() (tls.Certificate, error) {
	cert, err := m.certificate(keys.Authentication)
	if err != nil {
		return tls.Certificate{}, err
	}
	s, err := m.opts.Keys.Signer(keys.Authentication)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: s, Leaf: cert}, nil
}

// Register sends the registration request to the central server, signed
// with the authentication key (4.1.2). The operator then approves it.
func (m *Manager) Register(ctx context.Context) (wire.RegistrationStatus, error) {
	tc, err := m.AuthCertificate()
	if err != nil {
		return wire.RegistrationStatus{}, fmt.Errorf("import the authentication "+
			"certificate before registering: %w", err)
	}
	if _, _, err := m.SigningCertificate(); err != nil {
		return wire.RegistrationStatus{}, fmt.Errorf("import the signing certificate "+
			"before registering: %w", err)
	}
	m.mu.Lock()
	reg := wire.ServerRegistration{Owner: m.st.Owner, Code: m.st.Code,
		Address: m.st.Address, Clients: m.st.Clients, AuthCert: tc.Leaf.Raw,
		Time: m.opts.Now().UTC()}
	m.mu.Unlock()
	if len(reg.Clients) == 0 {
		reg.Clients = []ident.Client{reg.Owner}
	}
	signed, err := wire.Sign(reg, tc.PrivateKey.(crypto.Signer), tc.Leaf.Raw)
	if err != nil {
		return wire.RegistrationStatus{}, err
	}
	var st wire.RegistrationStatus
	if err := m.post(ctx, wire.PathRegistrations, signed, &st); err != nil {
		return st, fmt.Errorf("register at the central server: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st.Registration, m.st.RegistrationState = st.ID, st.State
	return st, m.saveLocked()
}

// RegistrationStatus asks the central server how the registration stands.
func (m *Manager) RegistrationStatus(ctx context.Context) (wire.RegistrationStatus, error) {
	m.mu.Lock()
	id := m.st.Registration
	m.mu.Unlock()
	if id == 0 {
		return wire.RegistrationStatus{}, errors.New("the server has not registered yet " +
			"(qapi register server)")
	}
	var st wire.RegistrationStatus
	if err := m.get(ctx, fmt.Sprintf("%s/%d", wire.PathRegistrations, id), &st); err != nil {
		return st, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st.RegistrationState = st.State
	return st, m.saveLocked()
}

// Status reports what registration has reached and what to do next.
func (m *Manager) Status() Status {
	m.mu.Lock()
	st := Status{State: m.st}
	m.mu.Unlock()
	_, err := os.Stat(m.AnchorPath())
	st.AnchorInstalled = err == nil
	info := func(p keys.Purpose) *CertInfo {
		c, err := m.certificate(p)
		if err != nil {
			return nil
		}
		return &CertInfo{Subject: c.Subject.SerialNumber, Serial: fmt.Sprintf("%x",
			c.SerialNumber), NotAfter: c.NotAfter}
	}
	st.AuthCert, st.SigningCert = info(keys.Authentication), info(keys.Signing)
	if m.opts.Faults != nil {
		st.Faults = m.opts.Faults()
	}
	switch {
	case st.Owner.IsZero():
		st.Next = "set owner, server code and address: qapi register init"
	case !st.AnchorInstalled:
		st.Next = "install the operator's configuration anchor: qapi register anchor FILE"
	case st.AuthRequest == 0:
		st.Next = "generate keys and hand the certificate requests over: qapi register submit"
	case st.AuthCert == nil || st.SigningCert == nil:
		st.Next = "wait for the operator to approve the requests, then: " +
			"qapi register fetch"
	case st.Registration == 0:
		st.Next = "register at the central server: qapi register server"
	case st.RegistrationState != "approved":
		st.Next = "wait for the operator to approve the registration, then: " +
			"qapi register status"
	default:
		st.Next = "registered; the server appears in the next global configuration"
	}
	return st
}

func (m *Manager) portalURL() (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.st.PortalURL == "" {
		return "", errors.New("install the configuration anchor first; it names the portal")
	}
	return m.st.PortalURL, nil
}

func (m *Manager) post(ctx context.Context, path string, in, out any) error {
	b, _ := json.Marshal(in)
	return m.do(ctx, http.MethodPost, path, bytes.NewReader(b), out)
}

func (m *Manager) get(ctx context.Context, path string, out any) error {
	return m.do(ctx, http.MethodGet, path, nil, out)
}

func (m *Manager) do(ctx context.Context, method, path string, body io.Reader,
	out any) error {
	base, err := m.portalURL()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := m.opts.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("reach the portal at %s: %w", base, err)
	}
	defer resp.Body.Close()
	return wire.ReadAnswer(resp, "the portal", 1<<20, out)
}
