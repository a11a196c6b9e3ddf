package server_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/events"
	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/keys"
	"github.com/qapi-az/qapi/appliance/messagelog"
	"github.com/qapi-az/qapi/appliance/server"
	"github.com/qapi-az/qapi/appliance/soap"
	"github.com/qapi-az/qapi/internal/sampleis"
	"github.com/qapi-az/qapi/internal/testpki"
)

var (
	providerMember = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1001"}
	provider       = sub(providerMember, "EDR")
	clientMember   = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "2002"}
	client         = sub(clientMember, "POLICE")
	rogueMember    = ident.Client{Instance: "AZ", MemberClass: "COM", MemberCode: "3003"}
	getPerson      = ident.Service{Client: provider, ServiceCode: sampleis.CodeGetPerson}
	searchPersons  = ident.Service{Client: provider, ServiceCode: sampleis.CodeSearchPersons}
)

func sub(m ident.Client, code string) ident.Client {
	m.SubsystemCode = code
	return m
}

// memKeys is a keys.Store over keys made by testpki.
type memKeys struct {
	sign, auth crypto.Signer
	secret     []byte
}

func (k *memKeys) Signer(p keys.Purpose) (crypto.Signer, error) {
	if p == keys.Signing {
		return k.sign, nil
	}
	return k.auth, nil
}
func (k *memKeys) Secret(keys.Purpose) ([]byte, error) { return k.secret, nil }
func (k *memKeys) Close() error                        { return nil }

// clock is a settable clock: the real time plus an offset.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// sink collects event records, and passes them on to next when set.
type sink struct {
	mu   sync.Mutex
	recs []events.Record
	next atomic.Pointer[events.Sink]
}

func (s *sink) Emit(r events.Record) {
	s.mu.Lock()
	s.recs = append(s.recs, r)
	s.mu.Unlock()
	if n := s.next.Load(); n != nil {
		(*n).Emit(r)
	}
}

func (s *sink) last() events.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.recs) == 0 {
		return events.Record{}
	}
	return s.recs[len(s.recs)-1]
}

// node is one security server under test.
type node struct {
	srv    *server.Server
	src    *globalconf.Static
	clock  *clock
	events *sink
	auth   *testpki.Cert
	sign   *testpki.Cert
	dir    string
	// cfg and opts made srv, to start it again.
	cfg  *server.Config
	opts server.Options
}

// env is two security servers, a client's and a provider's, the sample
// register behind the provider's, and the global configuration naming
// them.
type env struct {
	ca             *testpki.CA
	c, p           *node
	is             *sampleis.Service
	isURL          string
	rogueSign      *testpki.Cert
	foreignAuth    *testpki.Cert
	clientHTTPSURL string
	isTLS          *testpki.Cert // the client IS's TLS client certificate
	// onIS, when set, runs whenever the provider's information system is
	// reached, before it answers.
	onIS atomic.Pointer[func()]
	// editOptions, when set, changes each server's Options before New.
	editOptions func(*server.Options)
}

func writePEM(t testing.TB, path string, certs ...*x509.Certificate) {
	t.Helper()
	var b bytes.Buffer
	for _, c := range certs {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeKeyPEM(t testing.TB, path string, c *testpki.Cert) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY",
		Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func newNode(t testing.TB, e *env, member ident.Client, code string, clients []ident.Client,
	edit func(*server.Config)) *node {
	t.Helper()
	n := &node{src: globalconf.NewStatic(nil), clock: &clock{}, events: &sink{},
		dir: t.TempDir()}
	n.src.Now = n.clock.Now
	n.auth = must[*testpki.Cert](t)(e.ca.IssueAuth(member, code))
	n.sign = must[*testpki.Cert](t)(e.ca.IssueSigning(member))
	writePEM(t, filepath.Join(n.dir, "auth.pem"), n.auth.Cert)
	writePEM(t, filepath.Join(n.dir, "sign.pem"), n.sign.Cert)
	cfg := &server.Config{
		Identity:   server.Identity{Member: member.String(), ServerCode: code},
		Listen:     server.Listen{ClientHTTP: "127.0.0.1:0", Server: "127.0.0.1:0"},
		TLS:        server.TLSFiles{AuthCert: "auth.pem", SigningCert: "sign.pem"},
		KeyDir:     "keys",
		MessageLog: "messagelog.db",
		ConfigDB:   "conf.db",
		// Most tests move the clock; a test of time stamps turns them on.
		Timestamps: server.TimestampConfig{Off: true},
	}
	for _, c := range clients {
		cfg.Identity.Clients = append(cfg.Identity.Clients, c.String())
	}
	if edit != nil {
		edit(cfg)
	}
	b := must[[]byte](t)(json.Marshal(cfg))
	path := filepath.Join(n.dir, "qapi-server.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	loaded := must[*server.Config](t)(server.LoadConfig(path))
	secret := make([]byte, 32)
	rand.Read(secret)
	opts := server.Options{
		Keys:   &memKeys{sign: n.sign.Key, auth: n.auth.Key, secret: secret},
		Source: n.src, Events: n.events, Now: n.clock.Now}
	if e.editOptions != nil {
		e.editOptions(&opts)
	}
	n.cfg, n.opts = loaded, opts
	n.srv = must[*server.Server](t)(server.New(loaded, opts))
	if err := n.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// net/http waits 5 s before it counts a connection that never
		// carried a request as idle, and a client's transport under load
		// dials such spare connections: give Shutdown well over that.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := n.srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return n
}

func newEnv(t testing.TB) *env { return newEnvWith(t, nil) }

// newEnvWith is newEnv with a last change to the provider's server's
// configuration.
func newEnvWith(t testing.TB, editProvider func(e *env, c *server.Config)) *env {
	t.Helper()
	return newEnvEdit(t, editProvider, nil)
}

// newEnvEdit is newEnv with a last change to each server's configuration.
func newEnvEdit(t testing.TB, editProvider, editClient func(e *env,
	c *server.Config)) *env {
	t.Helper()
	return buildEnv(t, &env{is: sampleis.New()}, editProvider, editClient)
}

// buildEnv fills in e, whose register and editOptions are set, as newEnvEdit.
func buildEnv(t testing.TB, e *env, editProvider, editClient func(e *env,
	c *server.Config)) *env {
	t.Helper()
	e.ca = must[*testpki.CA](t)(testpki.NewCA("Qapı test CA"))
	ists := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := e.onIS.Load(); f != nil {
			(*f)()
		}
		e.is.ServeHTTP(w, r)
	}))
	t.Cleanup(ists.Close)
	e.isURL = ists.URL
	e.rogueSign = must[*testpki.Cert](t)(e.ca.IssueSigning(rogueMember))
	e.foreignAuth = must[*testpki.Cert](t)(e.ca.IssueAuth(clientMember, "ss-c"))
	e.isTLS = must[*testpki.Cert](t)(e.ca.IssueTLS("police-is"))

	e.p = newNode(t, e, providerMember, "ss-p", []ident.Client{provider}, func(c *server.Config) {
		c.Services = []server.ServiceConfig{{Provider: provider.String(), URL: e.isURL,
			WSDL: e.isURL + "/?wsdl"}, {Provider: provider.String(),
			Code: sampleis.CodeGetPerson, URL: e.isURL, WSDL: e.isURL + "/?wsdl"},
			{Provider: provider.String(), Code: sampleis.CodeSearchPersons, URL: e.isURL}}
		c.AccessRights = []server.AccessRight{{Service: getPerson.String(),
			Subject: "subsystem:" + client.String()}}
		if editProvider != nil {
			editProvider(e, c)
		}
	})
	e.c = newNode(t, e, clientMember, "ss-c", []ident.Client{client, clientMember},
		func(c *server.Config) {
			c.Listen.ClientHTTPS = "127.0.0.1:0"
			srvTLS := must[*testpki.Cert](t)(e.ca.IssueTLS("ss-c-internal"))
			dir := t.TempDir()
			writePEM(t, filepath.Join(dir, "is.pem"), srvTLS.Cert)
			writeKeyPEM(t, filepath.Join(dir, "is.key"), srvTLS)
			c.TLS.ClientHTTPSCert = filepath.Join(dir, "is.pem")
			c.TLS.ClientHTTPSKey = filepath.Join(dir, "is.key")
			c.ISCerts = []server.ISCert{{Client: clientMember.String(),
				CertSHA256: globalconf.CertHash(e.isTLS.Cert.Raw)}}
			if editClient != nil {
				editClient(e, c)
			}
		})
	e.clientHTTPSURL = "https://" + e.c.srv.Addr(server.RoleClientHTTPS) + "/"
	e.setConf(nil)
	return e
}

// conf returns the global configuration of the test: three members, the two
// servers with their pinned certificates.
func (e *env) conf() *globalconf.Conf {
	now := time.Now()
	return &globalconf.Conf{
		Instance: "AZ", Serial: 1, Issued: now.Add(-time.Hour), Expires: now.Add(time.Hour),
		Members: []globalconf.Member{
			{ID: providerMember, Name: "Ədliyyə Nazirliyi",
				Subsystems: []globalconf.Subsystem{{Code: "EDR", Name: "Əhali reyestri"}}},
			{ID: clientMember, Name: "Daxili İşlər Nazirliyi",
				Subsystems: []globalconf.Subsystem{{Code: "POLICE"}}},
			{ID: rogueMember, Name: "Rogue MMC",
				Subsystems: []globalconf.Subsystem{{Code: "X"}}},
		},
		SecurityServers: []globalconf.SecurityServer{
			{Owner: providerMember, Code: "ss-p", Address: e.p.srv.Addr(server.RoleServer),
				AuthCertHashes: []string{globalconf.CertHash(e.p.auth.Cert.Raw)},
				Clients:        []ident.Client{provider}},
			{Owner: clientMember, Code: "ss-c", Address: e.c.srv.Addr(server.RoleServer),
				AuthCertHashes: []string{globalconf.CertHash(e.c.auth.Cert.Raw)},
				Clients:        []ident.Client{client, clientMember}},
		},
		CAs: []globalconf.CA{{Name: "test", Cert: e.ca.Cert.Raw}},
	}
}

// setConf gives both servers the test configuration, changed by edit for
// the client's (c) and the provider's (p) server.
func (e *env) setConf(edit func(c, p *globalconf.Conf)) {
	c, p := e.conf(), e.conf()
	if edit != nil {
		edit(c, p)
	}
	e.c.src.Set(c)
	e.p.src.Set(p)
}

var idSeq atomic.Int64

func newID() string { return fmt.Sprintf("test-%d-%d", time.Now().UnixNano(), idSeq.Add(1)) }

func header(svc ident.Service, id string) sampleis.Header {
	return sampleis.Header{Client: client, Service: svc, ID: id, UserID: "AZ0000001"}
}

// call posts a request to a client proxy URL and returns status and body.
func call(t testing.TB, hc *http.Client, url string, req []byte) (int, []byte) {
	t.Helper()
	resp, err := hc.Post(url, "text/xml; charset=utf-8", bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func (e *env) clientURL() string { return "http://" + e.c.srv.Addr(server.RoleClientHTTP) + "/" }

// faultCode returns the fault code of a SOAP answer, or "" if it is none.
func faultCode(t *testing.T, body []byte) string {
	t.Helper()
	m, err := soap.ParseResponse(body, soap.Limits{MaxBytes: 1 << 20, MaxDepth: 64})
	if err != nil {
		t.Fatalf("answer does not parse as a SOAP response: %v\n%s", err, body)
	}
	if m.Fault == nil {
		return ""
	}
	return m.Fault.Code
}

// faultString returns the fault string of a SOAP answer, or "".
func faultString(t *testing.T, body []byte) string {
	t.Helper()
	m, err := soap.ParseResponse(body, soap.Limits{MaxBytes: 1 << 20, MaxDepth: 64})
	if err != nil || m.Fault == nil {
		return ""
	}
	return m.Fault.String
}

// logged returns the kinds of the message-log entries with message id.
func logged(t *testing.T, l *messagelog.Log, id string) []messagelog.Kind {
	t.Helper()
	var kinds []messagelog.Kind
	if err := l.Entries(1, 0, func(e *messagelog.Entry) error {
		if e.MessageID == id {
			kinds = append(kinds, e.Kind)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return kinds
}

// tlsClient returns an HTTP client presenting cert over TLS 1.3.
func tlsClient(cert *testpki.Cert) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
		Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Cert.Raw},
			PrivateKey: cert.Key, Leaf: cert.Cert}},
	}}}
}
