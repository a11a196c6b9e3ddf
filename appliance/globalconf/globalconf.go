// Package globalconf is the global configuration that the portal operator
// publishes and every security server trusts: who the members are, where
// their security servers are, which certification centres and time-stamping
// authorities count, who is blocked (3.7), and what services change (3.12,
// 3.14).
//
// # Format
//
// A published configuration is a JSON envelope holding the configuration
// document as base64 bytes, an ECDSA P-256 signature over the SHA-256 of
// those bytes, and the signer's X.509 certificate. A security server
// accepts it only if the certificate is one of those in its Anchor, the
// anchor installed at registration (4.1.2.3-4.1.2.5), and only while the
// document is within its validity period: a server with stale
// configuration stops exchanging rather than trust old data.
package globalconf

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/qapi-az/qapi/appliance/ident"
)

// Conf is one version of the global configuration.
type Conf struct {
	// Instance is the exchange instance (xRoadInstance) this covers.
	Instance string `json:"instance"`
	// Serial grows with each published version.
	Serial uint64 `json:"serial"`
	// Issued and Expires bound the validity period.
	Issued  time.Time `json:"issued"`
	Expires time.Time `json:"expires"`

	Members         []Member         `json:"members"`
	SecurityServers []SecurityServer `json:"securityServers"`
	// Groups are global groups of clients, usable as access-right subjects.
	Groups []Group `json:"groups,omitempty"`
	// CAs are the certification centres whose certificates count (2.3).
	CAs []CA `json:"cas"`
	// TSAs are the time-stamping authorities the message log may use.
	TSAs []TSA `json:"tsas,omitempty"`
	// OCSPMaxAge is how old a stapled OCSP response may be.
	OCSPMaxAge Duration `json:"ocspMaxAge,omitempty"`
	// Blocked lists participants whose traffic every server refuses (3.7).
	Blocked []Blocked `json:"blocked,omitempty"`
	// Notices announce new service versions, end of life and
	// disconnections (3.12, 3.14).
	Notices []Notice `json:"notices,omitempty"`
	// Disconnected lists services whose announced disconnection date has
	// passed (3.14): every security server refuses calls to them.
	Disconnected []Disconnected `json:"disconnected,omitempty"`
	// UpdateKeys are PKIX DER public keys that may sign update bundles.
	UpdateKeys [][]byte `json:"updateKeys,omitempty"`
	// ConfigURLs are where security servers fetch new versions.
	ConfigURLs []string `json:"configUrls,omitempty"`
	// IncidentURL is where security servers report security events (6.8).
	IncidentURL string `json:"incidentUrl,omitempty"`
}

// Member is a participant and its subsystems (information systems).
type Member struct {
	ID         ident.Client `json:"id"` // SubsystemCode empty
	Name       string       `json:"name"`
	Subsystems []Subsystem  `json:"subsystems,omitempty"`
}

// Subsystem is one information system of a member.
type Subsystem struct {
	Code string `json:"code"`
	Name string `json:"name,omitempty"`
}

// SecurityServer is one registered security server.
type SecurityServer struct {
	// Owner is the member that runs the server.
	Owner ident.Client `json:"owner"`
	// Code names the server among its owner's servers.
	Code string `json:"code"`
	// Address is host:port of its server-side proxy.
	Address string `json:"address"`
	// AuthCertHashes are hex SHA-256 digests of the DER of the server's
	// authentication certificates; TLS peers are pinned to them.
	AuthCertHashes []string `json:"authCertHashes"`
	// Clients are the members and subsystems served by this server.
	Clients []ident.Client `json:"clients"`
}

// Group is a global group of clients.
type Group struct {
	Code    string         `json:"code"`
	Members []ident.Client `json:"members"`
}

// CA is a trusted certification centre.
type CA struct {
	Name string `json:"name"`
	// Cert is the DER certificate of the CA.
	Cert []byte `json:"cert"`
	// OCSP are the responder URLs for certificates this CA issued.
	OCSP []string `json:"ocsp,omitempty"`
}

// TSA is a trusted time-stamping authority (RFC 3161).
type TSA struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	Cert []byte `json:"cert"`
}

// Blocked is a participant blocked at once by the operator (3.7).
type Blocked struct {
	Client ident.Client `json:"client"`
	Since  time.Time    `json:"since"`
	Reason string       `json:"reason,omitempty"`
}

// NoticeKind says what a Notice announces.
type NoticeKind string

// Kinds of notices.
const (
	NoticeNewVersion NoticeKind = "new-version" // 3.12
	NoticeEndOfLife  NoticeKind = "end-of-life" // 3.12
	NoticeDisconnect NoticeKind = "disconnect"  // 3.14
)

// Notice announces a change to a service.
type Notice struct {
	Kind      NoticeKind    `json:"kind"`
	Service   ident.Service `json:"service"`
	Effective time.Time     `json:"effective"`
	Text      string        `json:"text,omitempty"`
}

// Concerns reports whether the notice applies to a call of svc: the same
// provider and service code, and the same version unless the notice names
// none.
func (n *Notice) Concerns(svc ident.Service) bool {
	return n.Service.Client == svc.Client && n.Service.ServiceCode == svc.ServiceCode &&
		(n.Service.Version == "" || n.Service.Version == svc.Version)
}

// Disconnected is a service disconnected by the operator once the date it
// announced under clause 3.14 passed.
type Disconnected struct {
	Service ident.Service `json:"service"`
	// Since is the announced date of the disconnection.
	Since time.Time `json:"since"`
	// Text is the participant's reason (3.13).
	Text string `json:"text,omitempty"`
}

// Disconnection reports whether svc is disconnected at now and since when:
// listed in Disconnected, or announced for a date not after now (3.14).
// The announcement counts on its own so that a server refuses from the
// announced instant on, not only from the next configuration version.
func (c *Conf) Disconnection(svc ident.Service, now time.Time) (Disconnected, bool) {
	for _, d := range c.Disconnected {
		n := Notice{Service: d.Service}
		if n.Concerns(svc) {
			return d, true
		}
	}
	for _, n := range c.Notices {
		if n.Kind == NoticeDisconnect && n.Concerns(svc) && !now.Before(n.Effective) {
			return Disconnected{Service: n.Service, Since: n.Effective, Text: n.Text}, true
		}
	}
	return Disconnected{}, false
}

// Warnings returns the notices that a caller of svc must hear of: the end
// of its life (3.12) and its disconnection (3.14), in configuration order.
func (c *Conf) Warnings(svc ident.Service) []Notice {
	var out []Notice
	for _, n := range c.Notices {
		if (n.Kind == NoticeEndOfLife || n.Kind == NoticeDisconnect) && n.Concerns(svc) {
			out = append(out, n)
		}
	}
	return out
}

// Duration is a time.Duration that reads and writes JSON as "90s".
type Duration time.Duration

// MarshalJSON writes d as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"90s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// ErrStale is returned (wrapped) by Check when the configuration is outside
// its validity period.
var ErrStale = errors.New("global configuration is outside its validity period")

// Check reports ErrStale unless Issued <= now < Expires.
func (c *Conf) Check(now time.Time) error {
	if now.Before(c.Issued) {
		return fmt.Errorf("%w: serial %d is issued at %s, in the future",
			ErrStale, c.Serial, c.Issued.Format(time.RFC3339))
	}
	if !now.Before(c.Expires) {
		return fmt.Errorf("%w: serial %d expired at %s; check that the server reaches %v",
			ErrStale, c.Serial, c.Expires.Format(time.RFC3339), c.ConfigURLs)
	}
	return nil
}

// IsBlocked reports whether c, or the member that owns it, is blocked.
func (c *Conf) IsBlocked(client ident.Client) bool {
	m := client.Member()
	for _, b := range c.Blocked {
		if b.Client == client || b.Client == m {
			return true
		}
	}
	return false
}

// HasClient reports whether client is a registered member or subsystem.
func (c *Conf) HasClient(client ident.Client) bool {
	if client.Instance != c.Instance {
		return false
	}
	for _, m := range c.Members {
		if m.ID != client.Member() {
			continue
		}
		if client.SubsystemCode == "" {
			return true
		}
		for _, s := range m.Subsystems {
			if s.Code == client.SubsystemCode {
				return true
			}
		}
	}
	return false
}

// ServersOf returns the security servers that serve client.
func (c *Conf) ServersOf(client ident.Client) []SecurityServer {
	var out []SecurityServer
	for _, s := range c.SecurityServers {
		if slices.Contains(s.Clients, client) {
			out = append(out, s)
		}
	}
	return out
}

// ServerByAuthCert returns the security server whose pinned authentication
// certificate has the DER encoding der.
func (c *Conf) ServerByAuthCert(der []byte) (SecurityServer, bool) {
	sum := sha256.Sum256(der)
	h := hex.EncodeToString(sum[:])
	for _, s := range c.SecurityServers {
		if slices.Contains(s.AuthCertHashes, h) {
			return s, true
		}
	}
	return SecurityServer{}, false
}

// InGroup reports whether client is in the global group code.
func (c *Conf) InGroup(code string, client ident.Client) bool {
	for _, g := range c.Groups {
		if g.Code == code && slices.Contains(g.Members, client) {
			return true
		}
	}
	return false
}

// CAPool returns the trusted CA certificates as a pool.
func (c *Conf) CAPool() (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	for _, ca := range c.CAs {
		cert, err := x509.ParseCertificate(ca.Cert)
		if err != nil {
			return nil, fmt.Errorf("CA %q in global configuration: %w", ca.Name, err)
		}
		pool.AddCert(cert)
	}
	return pool, nil
}

// CertHash returns the hex SHA-256 of a DER certificate, the form that
// SecurityServer.AuthCertHashes holds.
func CertHash(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// Anchor is what a security server trusts before any configuration: the
// instance, where to fetch the configuration, and the certificates that
// may sign it (4.1.2.3-4.1.2.5).
type Anchor struct {
	Instance   string   `json:"instance"`
	ConfigURLs []string `json:"configUrls"`
	// Certs are DER certificates of the operator's configuration keys.
	Certs [][]byte `json:"certs"`
}

// LoadAnchor reads an anchor from a JSON file.
func LoadAnchor(path string) (*Anchor, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration anchor: %w", err)
	}
	var a Anchor
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("configuration anchor %s is not valid JSON: %w", path, err)
	}
	if a.Instance == "" || len(a.Certs) == 0 {
		return nil, fmt.Errorf("configuration anchor %s needs an instance and certs", path)
	}
	return &a, nil
}

type envelope struct {
	Content     []byte `json:"content"`
	Signature   []byte `json:"signature"`
	Certificate []byte `json:"certificate"`
}

// Sign encodes c and signs it with key, whose certificate is certDER.
func Sign(c *Conf, key crypto.Signer, certDER []byte) ([]byte, error) {
	content, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode global configuration: %w", err)
	}
	sum := sha256.Sum256(content)
	sig, err := key.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("sign global configuration: %w", err)
	}
	return json.MarshalIndent(envelope{content, sig, certDER}, "", " ")
}

// ErrTampered is returned (wrapped) when the signature does not verify.
var ErrTampered = errors.New("global configuration signature does not verify: " +
	"the document was changed after signing or was not signed by the operator")

// Verify checks a signed configuration against the anchor and returns it.
// It does not check freshness; call Conf.Check for that.
func Verify(signed []byte, a *Anchor) (*Conf, error) {
	var env envelope
	if err := json.Unmarshal(signed, &env); err != nil {
		return nil, fmt.Errorf("global configuration is not a signed envelope: %w", err)
	}
	trusted := false
	for _, c := range a.Certs {
		if bytes.Equal(c, env.Certificate) {
			trusted = true
		}
	}
	if !trusted {
		return nil, errors.New("global configuration is signed by a certificate that is " +
			"not in the configuration anchor; install the operator's current anchor")
	}
	cert, err := x509.ParseCertificate(env.Certificate)
	if err != nil {
		return nil, fmt.Errorf("global configuration signer certificate: %w", err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("global configuration signer key is not ECDSA")
	}
	sum := sha256.Sum256(env.Content)
	if !ecdsa.VerifyASN1(pub, sum[:], env.Signature) {
		return nil, ErrTampered
	}
	var c Conf
	if err := json.Unmarshal(env.Content, &c); err != nil {
		return nil, fmt.Errorf("global configuration content: %w", err)
	}
	if c.Instance != a.Instance {
		return nil, fmt.Errorf("global configuration is for instance %q, anchor for %q",
			c.Instance, a.Instance)
	}
	return &c, nil
}

// Load reads and verifies a signed configuration file.
func Load(path string, a *Anchor) (*Conf, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read global configuration: %w", err)
	}
	c, err := Verify(b, a)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ErrNoConf is returned by a Source that has no verified configuration yet.
var ErrNoConf = errors.New("no global configuration has been loaded yet; " +
	"install the configuration anchor and check that the server reaches the portal")
