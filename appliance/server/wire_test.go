package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/qapi-az/qapi/appliance/archive"
	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/messagelog"
	"github.com/qapi-az/qapi/appliance/server"
	"github.com/qapi-az/qapi/appliance/sign"
	"github.com/qapi-az/qapi/appliance/soap"
	"github.com/qapi-az/qapi/appliance/timestamp"
	"github.com/qapi-az/qapi/internal/sampleis"
	"github.com/qapi-az/qapi/internal/testpki"
	"github.com/qapi-az/qapi/portal/incident"
	"github.com/qapi-az/qapi/portal/wire"
	"github.com/qapi-az/qapi/tpm"
)

// eventually polls cond until it holds, failing after a generous bound:
// the conditions wait on background work (stamping, archiving, reports)
// whose pace the test does not assert.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ocspResponder answers OCSP requests for certificates of ca: good unless
// the serial is revoked.
type ocspResponder struct {
	ca      *testpki.CA
	revoked sync.Map // serial string -> true
	asked   atomic.Int64
}

func (o *ocspResponder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.asked.Add(1)
	b, _ := io.ReadAll(r.Body)
	req, err := ocsp.ParseRequest(b)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	status := ocsp.Good
	if _, ok := o.revoked.Load(req.SerialNumber.String()); ok {
		status = ocsp.Revoked
	}
	now := time.Now()
	der, err := ocsp.CreateResponse(o.ca.Cert, o.ca.Cert, ocsp.Response{
		SerialNumber: req.SerialNumber, Status: status, ThisUpdate: now.Add(-time.Minute),
		NextUpdate: now.Add(time.Hour), RevokedAt: now.Add(-time.Hour)}, o.ca.Key)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.Write(der)
}

// incidentSink is the portal's incident endpoint: it keeps the reports.
type incidentSink struct {
	mu      sync.Mutex
	reports []incident.Report
	// hold, when set, is waited on before a report is taken.
	hold chan struct{}
}

func (s *incidentSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.hold != nil {
		<-s.hold
	}
	var signed wire.Signed
	if err := json.NewDecoder(r.Body).Decode(&signed); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var rep incident.Report
	if err := json.Unmarshal(signed.Payload, &rep); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.reports = append(s.reports, rep)
	s.mu.Unlock()
}

func (s *incidentSink) find(kind incident.Kind, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.ContainsFunc(s.reports, func(r incident.Report) bool {
		return r.Kind == kind && (id == "" || r.MessageID == id)
	})
}

// TestOCSPCheckedByDefault shows that a provider whose global
// configuration lists an OCSP responder refuses a request without a staple
// (6.4), from a client server that staples nothing.
func TestOCSPCheckedByDefault(t *testing.T) {
	e := newEnvEdit(t, nil, func(e *env, c *server.Config) { c.OCSP.Mode = server.OCSPOff })
	e.setConf(func(c, p *globalconf.Conf) { p.CAs[0].OCSP = []string{"http://127.0.0.1:9/"} })
	status, body := call(t, http.DefaultClient, e.clientURL(), getPersonReq2(e, newID()))
	if code := faultCode(t, body); status != 500 || code != soap.CodeBadCertificate {
		t.Fatalf("no staple: status %d, fault %q, want %s", status, code,
			soap.CodeBadCertificate)
	}
}

// TestOCSPByDefault shows that once the global configuration lists an OCSP
// responder for the certification centre, each server staples a fresh
// response to what it signs (2.3), a peer's message without one is refused
// (6.4), and a revoked signing certificate is refused and reported (6.8).
func TestOCSPByDefault(t *testing.T) {
	resp := &ocspResponder{}
	rs := httptest.NewServer(resp)
	defer rs.Close()
	inc := &incidentSink{}
	is := httptest.NewServer(inc)
	defer is.Close()

	e := newEnv(t)
	resp.ca = e.ca
	e.setConf(func(c, p *globalconf.Conf) {
		for _, g := range []*globalconf.Conf{c, p} {
			g.CAs[0].OCSP = []string{rs.URL}
			g.IncidentURL = is.URL
		}
	})
	id := newID()
	status, body := call(t, http.DefaultClient, e.clientURL(), getPersonReq2(e, id))
	if status != 200 {
		t.Fatalf("with OCSP: status %d: %s", status, body)
	}
	// The request the provider logged carries the client's staple.
	var stapled []byte
	e.p.srv.MessageLog().Entries(1, 0, func(en *messagelog.Entry) error {
		if en.MessageID == id && en.Kind == messagelog.KindRequest {
			v, err := sign.CheckSignature(en.Signed, en.ContentType, 0)
			if err == nil {
				stapled = v.OCSP
			}
		}
		return nil
	})
	if len(stapled) == 0 {
		t.Errorf("the logged request carries no OCSP response")
	}

	// The operator revokes the client's signing certificate; the client's
	// stapler fetches anew, and the server signs nothing more and says so.
	resp.revoked.Store(e.c.sign.Cert.SerialNumber.String(), true)
	e.setConf(func(c, p *globalconf.Conf) {
		for _, g := range []*globalconf.Conf{c, p} {
			g.CAs[0].OCSP = []string{rs.URL + "/again"} // a new stapler, a new fetch
			g.IncidentURL = is.URL
		}
	})
	id = newID()
	status, body = call(t, http.DefaultClient, e.clientURL(), getPersonReq2(e, id))
	if code := faultCode(t, body); status != 500 || code != soap.CodeInternal ||
		!strings.Contains(faultString(t, body), "revoked") {
		t.Fatalf("revoked: status %d, fault %q %q", status, code, faultString(t, body))
	}
	eventually(t, "a revoked-certificate incident", func() bool {
		return inc.find(incident.RevokedCert, "")
	})
}

// getPersonReq2 is a getPerson request with the given message id.
func getPersonReq2(e *env, id string) []byte {
	return sampleis.GetPersonRequest(header(getPerson, id), e.is.Persons()[0].FIN)
}

// searchPersonsReq is a searchPersons request, which no right opens.
func searchPersonsReq(id string) []byte {
	return sampleis.SearchPersonsRequest(header(searchPersons, id),
		sampleis.Search{Surname: "Əliyev"})
}

// tsaServer is an RFC 3161 time-stamping authority over HTTP that can be
// taken down.
type tsaServer struct {
	key    *ecdsa.PrivateKey
	cert   *x509.Certificate
	roots  *x509.CertPool
	down   atomic.Bool
	serial atomic.Int64
}

func newTSA(t *testing.T, ca *testpki.CA) *tsaServer {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	eku, _ := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 8}})
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "test TSA"},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature,
		ExtraExtensions: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Critical: true, Value: eku}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return &tsaServer{key: key, cert: cert, roots: roots}
}

func (s *tsaServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.down.Load() {
		http.Error(w, "down for the test", http.StatusServiceUnavailable)
		return
	}
	req, _ := io.ReadAll(r.Body)
	resp, err := timestamp.Issue(req, s.key, s.cert, time.Now(), big.NewInt(s.serial.Add(1)))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", timestamp.ContentTypeReply)
	w.Write(resp)
}

// withTSA puts the TSA in both servers' configuration.
func withTSA(e *env, url string, tsa *tsaServer) {
	e.setConf(func(c, p *globalconf.Conf) {
		for _, g := range []*globalconf.Conf{c, p} {
			g.TSAs = []globalconf.TSA{{Name: "test TSA", URL: url, Cert: tsa.cert.Raw}}
		}
	})
}

// TestTimestampFailureStopsAndResumes shows clause 6.3's time stamps from
// the global configuration's TSA: while the TSA is down longer than the
// grace, exchanges stop with Server.TimestampFailure; once it is back they
// resume by themselves.
func TestTimestampFailureStopsAndResumes(t *testing.T) {
	var tsa *tsaServer
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter,
		r *http.Request) {
		tsa.ServeHTTP(w, r)
	}))
	defer ts.Close()
	e := newEnvEdit(t, nil, func(e *env, c *server.Config) {
		c.Timestamps = server.TimestampConfig{Interval: server.Duration(50 * time.Millisecond),
			Grace: server.Duration(300 * time.Millisecond)}
	})
	tsa = newTSA(t, e.ca)
	withTSA(e, ts.URL, tsa)

	if status, body := call(t, http.DefaultClient, e.clientURL(),
		getPersonReq2(e, newID())); status != 200 {
		t.Fatalf("TSA up: status %d: %s", status, body)
	}
	eventually(t, "the first stamp", func() bool {
		st := e.c.srv.MessageLog().State()
		return st.Stamped == st.Head
	})

	tsa.down.Store(true)
	eventually(t, "exchanges to stop with "+soap.CodeTimestampFailure, func() bool {
		_, body := call(t, http.DefaultClient, e.clientURL(), getPersonReq2(e, newID()))
		return faultCode(t, body) == soap.CodeTimestampFailure
	})
	if lag := e.c.srv.Status().TimestampLag; lag <= 0 {
		t.Errorf("status shows a time-stamping lag of %v while the TSA is down", lag)
	}

	tsa.down.Store(false)
	eventually(t, "exchanges to resume", func() bool {
		status, _ := call(t, http.DefaultClient, e.clientURL(), getPersonReq2(e, newID()))
		return status == 200
	})
}

// TestArchiveEveryPeriod shows clause 3.8.4's procedure from the
// configuration: after a period the stamped records move to an archive file
// that the named reader can open and that verifies, and leave the live log.
func TestArchiveEveryPeriod(t *testing.T) {
	var tsa *tsaServer
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter,
		r *http.Request) {
		tsa.ServeHTTP(w, r)
	}))
	defer ts.Close()
	archDir := t.TempDir()
	var reader *testpki.Cert
	e := newEnvEdit(t, nil, func(e *env, c *server.Config) {
		reader = must[*testpki.Cert](t)(e.ca.IssueTLS("log reader"))
		path := filepath.Join(t.TempDir(), "reader.pem")
		writePEM(t, path, reader.Cert)
		c.Timestamps = server.TimestampConfig{Interval: server.Duration(50 * time.Millisecond)}
		c.Archive = &server.ArchiveConfig{Dir: archDir, Readers: []string{path},
			Period: server.Duration(time.Second), Level: "full"}
	})
	tsa = newTSA(t, e.ca)
	withTSA(e, ts.URL, tsa)

	var ids []string
	for range 3 {
		id := newID()
		if status, body := call(t, http.DefaultClient, e.clientURL(),
			getPersonReq2(e, id)); status != 200 {
			t.Fatalf("status %d: %s", status, body)
		}
		ids = append(ids, id)
	}
	head := e.c.srv.MessageLog().State().Head
	eventually(t, "the records to be archived", func() bool {
		return e.c.srv.MessageLog().State().Archived >= head
	})
	files, _ := filepath.Glob(filepath.Join(archDir, "qapi-log-*.p7m"))
	if len(files) == 0 {
		t.Fatal("no archive file written")
	}
	// The archive head, signed by the server, says where the archives end.
	headPath := filepath.Join(archDir, archive.HeadName)
	eventually(t, "the archive head", func() bool {
		h, _, err := archive.ReadHead(headPath, nil)
		return err == nil && h.Last >= head
	})
	rep := archive.Verify(files, archive.VerifyOptions{Key: reader.Key,
		TSARoots: tsa.roots, RequireStamps: true, Head: headPath})
	if !rep.OK() {
		t.Fatalf("archive does not verify: %+v", rep.Problems)
	}
	found := 0
	for _, f := range files {
		c, _, err := archive.Open(f, reader.Key)
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range c.Entries {
			if slices.Contains(ids, en.MessageID) {
				found++
			}
		}
	}
	if found != 2*len(ids) {
		t.Errorf("archives hold %d entries of the exchanges, want %d", found, 2*len(ids))
	}
	for _, id := range ids {
		if k := logged(t, e.c.srv.MessageLog(), id); len(k) != 0 {
			t.Errorf("exchange %s still in the live log: %v", id, k)
		}
	}
}

// TestIncidentsReported shows clause 6.8: an access denial and a replay are
// reported to the global configuration's incident URL, and a portal that
// does not answer delays no exchange.
func TestIncidentsReported(t *testing.T) {
	inc := &incidentSink{hold: make(chan struct{})}
	is := httptest.NewServer(inc)
	defer is.Close()
	e := newEnv(t)
	e.setConf(func(c, p *globalconf.Conf) { c.IncidentURL, p.IncidentURL = is.URL, is.URL })

	// The portal holds every report: exchanges go on regardless.
	denied := newID()
	_, body := call(t, http.DefaultClient, e.clientURL(),
		searchPersonsReq(denied))
	if code := faultCode(t, body); code != soap.CodeAccessDenied {
		t.Fatalf("searchPersons without a right: fault %q", code)
	}
	if status, body := call(t, http.DefaultClient, e.clientURL(),
		getPersonReq2(e, newID())); status != 200 {
		t.Fatalf("an exchange waited on the incident report: %d %s", status, body)
	}
	close(inc.hold)
	eventually(t, "the access-denied report", func() bool {
		return inc.find(incident.AccessDenied, denied)
	})
	if inc.find(incident.AccessDenied, "") && countKind(inc, incident.AccessDenied) != 1 {
		t.Errorf("the denial was reported %d times, want once (by the provider's server)",
			countKind(inc, incident.AccessDenied))
	}
}

func countKind(s *incidentSink, k incident.Kind) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.reports {
		if r.Kind == k {
			n++
		}
	}
	return n
}

// TestKeyStoreChoice shows the keyStore field: a configuration naming only
// keyDir keeps development keys, one naming nothing uses the TPM, and a
// TPM that is not there is reported with what to do.
func TestKeyStoreChoice(t *testing.T) {
	base := func() *server.Config {
		return &server.Config{Identity: server.Identity{Member: "AZ/GOV/1001",
			ServerCode: "ss1"}, Listen: server.Listen{Server: "127.0.0.1:0"},
			TLS:        server.TLSFiles{AuthCert: "a.pem", SigningCert: "s.pem"},
			MessageLog: "m.db", ConfigDB: "c.db"}
	}
	c := base()
	c.KeyDir = "keys"
	if err := c.Check(); err != nil || c.KeyStore != server.KeyStoreDev {
		t.Errorf("keyDir alone: keyStore %q, err %v; want dev", c.KeyStore, err)
	}
	c = base()
	if err := c.Check(); err != nil || c.KeyStore != server.KeyStoreTPM ||
		c.TPM.Dir != server.DefaultSealedDir {
		t.Errorf("nothing: keyStore %q in %q, err %v; want tpm in %s", c.KeyStore,
			c.TPM.Dir, err, server.DefaultSealedDir)
	}
	c = base()
	c.KeyStore = "dev"
	if err := c.Check(); err == nil {
		t.Error("keyStore dev without keyDir accepted")
	}
	c = base()
	c.TPM = server.TPMConfig{Dir: t.TempDir(),
		Devices: []string{filepath.Join(t.TempDir(), "no-tpm")}}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	_, err := server.OpenKeyStore(c)
	if !errors.Is(err, tpm.ErrNoTPM) {
		t.Errorf("OpenKeyStore without a TPM: %v, want ErrNoTPM", err)
	}
	if _, statErr := os.Stat(c.TPM.Devices[0]); statErr == nil {
		t.Error("the missing device exists")
	}
}
