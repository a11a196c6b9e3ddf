package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/qapi-az/qapi/appliance/acl"
	"github.com/qapi-az/qapi/appliance/archive"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/replay"
)

// Config is the security server's configuration file (JSON). Relative
// paths are relative to the file's folder. docs/configuration.md documents
// every field with its default and an example.
type Config struct {
	Identity Identity `json:"identity"`
	Listen   Listen   `json:"listen"`
	TLS      TLSFiles `json:"tls"`

	// KeyStore is "tpm" (keys sealed by the TPM, clause 6.2.3) or "dev"
	// (keys in plain files under KeyDir, for development). Empty means
	// "dev" when KeyDir is set, else "tpm".
	KeyStore string `json:"keyStore,omitempty"`
	// KeyDir is the folder of the development key store (keys.FileStore).
	KeyDir string `json:"keyDir,omitempty"`
	// TPM configures the TPM-sealed key store.
	TPM TPMConfig `json:"tpm,omitzero"`
	// Anchor and GlobalConf are the configuration anchor and the signed
	// global configuration files (4.1.2.3-4.1.2.5).
	Anchor     string `json:"anchor"`
	GlobalConf string `json:"globalConf"`
	// MessageLog is the message log's bbolt file; ConfigDB the bbolt file
	// of access rights and seen message ids.
	MessageLog string `json:"messageLog"`
	ConfigDB   string `json:"configDB"`
	// MessageLogVerify is how often the live message log is verified
	// again after the check at start ("24h").
	MessageLogVerify Duration `json:"messageLogVerify,omitempty"`

	// Services are the provider's information systems.
	Services []ServiceConfig `json:"services,omitempty"`
	// AccessRights are granted at start (clause 3.8.3); rights granted
	// otherwise stay until revoked.
	AccessRights []AccessRight `json:"accessRights,omitempty"`
	// ISCerts pin information systems' TLS client certificates to clients.
	ISCerts []ISCert `json:"isCerts,omitempty"`

	Limits Limits `json:"limits"`
	// MonitorSocket is the Unix socket of the local monitoring station
	// (2.6); empty for none.
	MonitorSocket string `json:"monitorSocket,omitempty"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"logLevel,omitempty"`

	// OCSP says whether our signatures carry OCSP responses and peers'
	// must (2.3, 6.4).
	OCSP OCSPConfig `json:"ocsp,omitzero"`
	// Timestamps configures the message log's time stamps (6.3).
	Timestamps TimestampConfig `json:"timestamps,omitzero"`
	// Archive, when set, moves the message log into archive files (3.8.4).
	Archive *ArchiveConfig `json:"archive,omitempty"`
	// Incidents configures the reports of security events (6.8).
	Incidents IncidentConfig `json:"incidents,omitzero"`
	// Manage, when set, serves the management API (4.1.2).
	Manage *ManageConfig `json:"manage,omitempty"`
	// NetConfig is the network configuration file (package netconfig) whose
	// links the monitoring station is shown; empty for none.
	NetConfig string `json:"netconfig,omitempty"`

	dir string // folder of the file, for relative paths
}

// Identity says who the server is and whom it serves.
type Identity struct {
	// Member owns the server and its signing key: INSTANCE/CLASS/CODE.
	Member string `json:"member"`
	// ServerCode names the server among its member's servers.
	ServerCode string `json:"serverCode"`
	// Clients are the member and subsystems served; the member alone when
	// empty.
	Clients []string `json:"clients,omitempty"`
}

// Listen holds the listen addresses; an empty address is not served.
type Listen struct {
	// ClientHTTP and ClientHTTPS are the client proxy for the member's
	// information systems (internal network).
	ClientHTTP  string `json:"clientHTTP,omitempty"`
	ClientHTTPS string `json:"clientHTTPS,omitempty"`
	// Server is the server proxy that other security servers reach
	// (external network).
	Server string `json:"server,omitempty"`
}

// TLSFiles are certificate files (PEM). The private keys of the signing
// and authentication certificates are in the key store, not here.
type TLSFiles struct {
	// AuthCert is the authentication certificate (4.1.2.7), followed by
	// any intermediates.
	AuthCert string `json:"authCert"`
	// SigningCert is the member's signing certificate (4.1.2.9), followed
	// by any intermediates.
	SigningCert string `json:"signingCert"`
	// ClientHTTPSCert and ClientHTTPSKey are the certificate and key the
	// client proxy's HTTPS listener shows information systems.
	ClientHTTPSCert string `json:"clientHTTPSCert,omitempty"`
	ClientHTTPSKey  string `json:"clientHTTPSKey,omitempty"`
}

// ServiceConfig says where an information system answers.
type ServiceConfig struct {
	// Provider is the member or subsystem providing the service.
	Provider string `json:"provider"`
	// Code is the service code; empty for every service of Provider
	// without an entry of its own.
	Code string `json:"code,omitempty"`
	// URL is the information system's http or https endpoint.
	URL string `json:"url"`
	// WSDL is the URL of the service description, for getWsdl.
	WSDL string `json:"wsdl,omitempty"`
	// TLSCA, TLSCert and TLSKey configure HTTPS to the information system:
	// the CA that issued its certificate (system roots when empty) and a
	// client certificate to present.
	TLSCA   string `json:"tlsCA,omitempty"`
	TLSCert string `json:"tlsCert,omitempty"`
	TLSKey  string `json:"tlsKey,omitempty"`
}

// AccessRight grants a subject (acl.ParseSubject form) the right to call a
// service (ident.ParseService form).
type AccessRight struct {
	Service string `json:"service"`
	Subject string `json:"subject"`
}

// ISCert pins an information system's TLS client certificate (hex
// SHA-256 of its DER) to the client it may send as.
type ISCert struct {
	Client     string `json:"client"`
	CertSHA256 string `json:"certSHA256"`
}

// Limits bound requests and waits.
type Limits struct {
	// MaxRequestBytes is the largest request (clause 5.2: 10240).
	MaxRequestBytes int `json:"maxRequestBytes,omitempty"`
	// MaxResponseBytes is the largest response (1 MiB).
	MaxResponseBytes int `json:"maxResponseBytes,omitempty"`
	// Timeout bounds the wait for the next hop ("30s").
	Timeout Duration `json:"timeout,omitempty"`
	// ReplayWindow is how far a signing time may be from the clock ("5m",
	// clause 6.2.4).
	ReplayWindow Duration `json:"replayWindow,omitempty"`
	// MaxConcurrent bounds the exchanges each proxy works on at once (64);
	// -1 for no bound.
	MaxConcurrent int `json:"maxConcurrent,omitempty"`
}

// Key store kinds.
const (
	KeyStoreTPM = "tpm"
	KeyStoreDev = "dev"
)

// TPMConfig configures the TPM-sealed key store (package tpm).
type TPMConfig struct {
	// Dir holds the sealed key blobs (DefaultSealedDir).
	Dir string `json:"dir,omitempty"`
	// Devices are the TPM device paths or swtpm sockets tried in order
	// (tpm.DevicePaths).
	Devices []string `json:"devices,omitempty"`
	// Authority is a PEM public key (ECDSA P-256) of the operator whose
	// approvals of a boot state unseal the keys, and Approval the approval
	// file of the running image. Without Authority the keys are sealed to
	// the current PCR values.
	Authority string `json:"authority,omitempty"`
	Approval  string `json:"approval,omitempty"`
}

// DefaultSealedDir is where the appliance keeps its sealed keys.
const DefaultSealedDir = "/perm/qapi/sealed"

// OCSP modes.
const (
	OCSPAuto = "auto"
	OCSPOff  = "off"
)

// OCSPConfig configures OCSP stapling and checking.
type OCSPConfig struct {
	// Mode is "auto" (the default): where the global configuration lists
	// OCSP responders for a certification centre, signatures by its
	// certificates carry a fresh response and peers' must; "off" neither
	// staples nor checks.
	Mode string `json:"mode,omitempty"`
}

// TimestampConfig configures the message log's time stamps.
type TimestampConfig struct {
	// Off leaves the log unstamped (development only; clause 6.3 wants
	// stamps).
	Off bool `json:"off,omitempty"`
	// Interval is how often the chain head is stamped ("1m"); Grace how
	// long entries may wait for a stamp before exchanges stop (ten
	// intervals).
	Interval Duration `json:"interval,omitempty"`
	Grace    Duration `json:"grace,omitempty"`
}

// ArchiveConfig configures the archiving procedure of clause 3.8.4.
type ArchiveConfig struct {
	// Dir receives the archive files. Required.
	Dir string `json:"dir"`
	// Readers are PEM certificate files of the persons who may read the
	// archives; each file is encrypted to all of them. Required.
	Readers []string `json:"readers"`
	// Period is how often entries are archived ("24h").
	Period Duration `json:"period,omitempty"`
	// Level is the default archive level: full, metadata or link ("full");
	// Services sets levels by service, provider or member prefix.
	Level    string            `json:"level,omitempty"`
	Services map[string]string `json:"services,omitempty"`
	// Retention is how long files are kept; zero keeps them forever.
	Retention Duration `json:"retention,omitempty"`
	// MaxEntries bounds the entries of one file (2000).
	MaxEntries int `json:"maxEntries,omitempty"`
}

// IncidentConfig configures the reports of security events to the portal.
type IncidentConfig struct {
	// Off sends no reports.
	Off bool `json:"off,omitempty"`
	// Queue is how many reports wait for the portal (256); more are
	// dropped and counted.
	Queue int `json:"queue,omitempty"`
}

// ManageConfig configures the management API.
type ManageConfig struct {
	// Listen is its address on the internal network. Required.
	Listen string `json:"listen"`
	// Dir holds the registration state, the imported certificates and the
	// connection file manage.json. Required.
	Dir string `json:"dir"`
	// Hosts are the names and addresses its TLS certificate is for (the
	// host of Listen when empty).
	Hosts []string `json:"hosts,omitempty"`
}

// Duration reads and writes JSON as a Go duration string such as "30s".
type Duration time.Duration

// MarshalJSON writes d as "30s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads "30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration must be a string like \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Defaults of the limits.
const (
	DefaultMaxRequestBytes  = 10 << 10 // clause 5.2
	DefaultMaxResponseBytes = 1 << 20
	DefaultTimeout          = 30 * time.Second
	DefaultMaxConcurrent    = 64
)

// LoadConfig reads, completes and checks the configuration file path.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	var c Config
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("configuration %s: %w (docs/configuration.md lists the "+
			"fields)", path, err)
	}
	c.dir = filepath.Dir(path)
	if err := c.Check(); err != nil {
		return nil, fmt.Errorf("configuration %s: %w", path, err)
	}
	return &c, nil
}

// Check fills in defaults and reports the first field that is wrong.
func (c *Config) Check() error {
	if c.Limits.MaxRequestBytes == 0 {
		c.Limits.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.Limits.MaxResponseBytes == 0 {
		c.Limits.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if c.Limits.Timeout == 0 {
		c.Limits.Timeout = Duration(DefaultTimeout)
	}
	if c.Limits.ReplayWindow == 0 {
		c.Limits.ReplayWindow = Duration(replay.DefaultWindow)
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.Limits.MaxConcurrent == 0 {
		c.Limits.MaxConcurrent = DefaultMaxConcurrent
	}
	if err := c.checkAdded(); err != nil {
		return err
	}
	member, err := ident.ParseClient(c.Identity.Member)
	if err != nil {
		return fmt.Errorf("identity.member: %w", err)
	}
	if member.SubsystemCode != "" {
		return fmt.Errorf("identity.member %s names a subsystem; put it in "+
			"identity.clients", member)
	}
	if c.Identity.ServerCode == "" {
		return errors.New("identity.serverCode is empty")
	}
	clients, err := c.ClientIDs()
	if err != nil {
		return err
	}
	for _, cl := range clients {
		if cl.Member() != member {
			return fmt.Errorf("identity.clients: %s is not of member %s; a server signs "+
				"with one member's key", cl, member)
		}
	}
	for name, v := range map[string]string{"tls.authCert": c.TLS.AuthCert,
		"tls.signingCert": c.TLS.SigningCert,
		"messageLog":      c.MessageLog, "configDB": c.ConfigDB} {
		if v == "" {
			return fmt.Errorf("%s is empty", name)
		}
	}
	if c.Listen.ClientHTTP == "" && c.Listen.ClientHTTPS == "" && c.Listen.Server == "" {
		return errors.New("listen: no address is set")
	}
	if c.Listen.ClientHTTPS != "" && (c.TLS.ClientHTTPSCert == "" || c.TLS.ClientHTTPSKey == "") {
		return errors.New("listen.clientHTTPS needs tls.clientHTTPSCert and tls.clientHTTPSKey")
	}
	if c.Limits.MaxRequestBytes < 0 || c.Limits.MaxResponseBytes < 0 ||
		c.Limits.Timeout < 0 || c.Limits.ReplayWindow < 0 {
		return errors.New("limits must not be negative")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("logLevel %q is not debug, info, warn or error", c.LogLevel)
	}
	for i, s := range c.Services {
		p, err := ident.ParseClient(s.Provider)
		if err != nil {
			return fmt.Errorf("services[%d].provider: %w", i, err)
		}
		found := false
		for _, cl := range clients {
			found = found || cl == p
		}
		if !found {
			return fmt.Errorf("services[%d].provider %s is not in identity.clients", i, p)
		}
		if !strings.HasPrefix(s.URL, "http://") && !strings.HasPrefix(s.URL, "https://") {
			return fmt.Errorf("services[%d].url %q is not an http or https URL", i, s.URL)
		}
	}
	for i, r := range c.AccessRights {
		if _, err := ident.ParseService(r.Service); err != nil {
			return fmt.Errorf("accessRights[%d].service: %w", i, err)
		}
		if _, err := acl.ParseSubject(r.Subject); err != nil {
			return fmt.Errorf("accessRights[%d].subject: %w", i, err)
		}
	}
	for i, p := range c.ISCerts {
		if _, err := ident.ParseClient(p.Client); err != nil {
			return fmt.Errorf("isCerts[%d].client: %w", i, err)
		}
		if len(p.CertSHA256) != 64 {
			return fmt.Errorf("isCerts[%d].certSHA256 is not 64 hex digits", i)
		}
	}
	return nil
}

// MemberID returns the parsed identity.member.
func (c *Config) MemberID() ident.Client {
	m, _ := ident.ParseClient(c.Identity.Member)
	return m
}

// ClientIDs returns the parsed identity.clients (the member alone when
// empty).
func (c *Config) ClientIDs() ([]ident.Client, error) {
	if len(c.Identity.Clients) == 0 {
		m, err := ident.ParseClient(c.Identity.Member)
		return []ident.Client{m}, err
	}
	var out []ident.Client
	for i, s := range c.Identity.Clients {
		cl, err := ident.ParseClient(s)
		if err != nil {
			return nil, fmt.Errorf("identity.clients[%d]: %w", i, err)
		}
		out = append(out, cl)
	}
	return out, nil
}

// KeyDirPath returns KeyDir resolved against the file's folder.
func (c *Config) KeyDirPath() string { return c.path(c.KeyDir) }

// MonitorSocketPath returns MonitorSocket resolved against the file's
// folder.
func (c *Config) MonitorSocketPath() string { return c.path(c.MonitorSocket) }

// path resolves p against the configuration file's folder.
func (c *Config) path(p string) string {
	if p == "" || filepath.IsAbs(p) || c.dir == "" {
		return p
	}
	return filepath.Join(c.dir, p)
}

// Defaults of the added sections.
const (
	DefaultStampInterval  = time.Minute
	DefaultArchivePeriod  = 24 * time.Hour
	DefaultIncidentQueue  = 256
	DefaultStatusInterval = 10 * time.Second
	DefaultLogVerify      = 24 * time.Hour
)

// checkAdded fills in and checks keyStore, tpm, ocsp, timestamps,
// messageLogVerify, archive, incidents and manage.
func (c *Config) checkAdded() error {
	if c.KeyStore == "" {
		c.KeyStore = KeyStoreTPM
		if c.KeyDir != "" {
			c.KeyStore = KeyStoreDev
		}
	}
	switch c.KeyStore {
	case KeyStoreTPM:
		if c.TPM.Dir == "" {
			c.TPM.Dir = DefaultSealedDir
		}
		if (c.TPM.Authority == "") != (c.TPM.Approval == "") {
			return errors.New("tpm.authority and tpm.approval go together: the image's " +
				"approval is checked against the operator's key")
		}
	case KeyStoreDev:
		if c.KeyDir == "" {
			return errors.New("keyStore \"dev\" needs keyDir, the folder of the key files")
		}
	default:
		return fmt.Errorf("keyStore %q is not \"tpm\" or \"dev\"", c.KeyStore)
	}
	if c.OCSP.Mode == "" {
		c.OCSP.Mode = OCSPAuto
	}
	if c.OCSP.Mode != OCSPAuto && c.OCSP.Mode != OCSPOff {
		return fmt.Errorf("ocsp.mode %q is not \"auto\" or \"off\"", c.OCSP.Mode)
	}
	if c.Timestamps.Interval == 0 {
		c.Timestamps.Interval = Duration(DefaultStampInterval)
	}
	if c.Timestamps.Grace == 0 {
		c.Timestamps.Grace = 10 * c.Timestamps.Interval
	}
	if c.Timestamps.Interval < 0 || c.Timestamps.Grace < 0 {
		return errors.New("timestamps.interval and grace must not be negative")
	}
	if c.MessageLogVerify == 0 {
		c.MessageLogVerify = Duration(DefaultLogVerify)
	}
	if c.MessageLogVerify < 0 {
		return errors.New("messageLogVerify must not be negative")
	}
	if c.Incidents.Queue == 0 {
		c.Incidents.Queue = DefaultIncidentQueue
	}
	if a := c.Archive; a != nil {
		if a.Dir == "" || len(a.Readers) == 0 {
			return errors.New("archive needs dir and at least one reader certificate " +
				"(clause 3.8.4: the persons who may read the archives)")
		}
		if a.Period == 0 {
			a.Period = Duration(DefaultArchivePeriod)
		}
		if a.Period < 0 || a.Retention < 0 || a.MaxEntries < 0 {
			return errors.New("archive.period, retention and maxEntries must not be negative")
		}
		if _, err := a.policy(); err != nil {
			return err
		}
	}
	if m := c.Manage; m != nil && (m.Listen == "" || m.Dir == "") {
		return errors.New("manage needs listen and dir")
	}
	return nil
}

// policy returns the archive policy of a.
func (a *ArchiveConfig) policy() (archive.Policy, error) {
	level := func(name, s string) (archive.Level, error) {
		switch l := archive.Level(s); l {
		case "":
			return archive.LevelFull, nil
		case archive.LevelFull, archive.LevelMetadata, archive.LevelLink:
			return l, nil
		}
		return "", fmt.Errorf("%s %q is not full, metadata or link", name, s)
	}
	p := archive.Policy{Retention: time.Duration(a.Retention),
		Services: map[string]archive.Level{}}
	var err error
	if p.Default, err = level("archive.level", a.Level); err != nil {
		return p, err
	}
	for k, v := range a.Services {
		if p.Services[k], err = level("archive.services["+k+"]", v); err != nil {
			return p, err
		}
	}
	return p, nil
}
