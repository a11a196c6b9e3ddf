package portal_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/keys"
	"github.com/qapi-az/qapi/appliance/manage"
	appocsp "github.com/qapi-az/qapi/appliance/ocsp"
	"github.com/qapi-az/qapi/portal"
	"github.com/qapi-az/qapi/portal/incident"
	"github.com/qapi-az/qapi/portal/onboarding"
	"github.com/qapi-az/qapi/portal/registry"
)

// clock is a settable clock shared by the portal and the test.
type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) Set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *clock) Add(d time.Duration) { c.ns.Add(int64(d)) }

// env is a running portal with its operator client.
type env struct {
	t      *testing.T
	clk    *clock
	portal *portal.Portal
	public *httptest.Server
	op     *portal.Client
	conn   portal.Conn
}

func newEnv(t *testing.T) *env {
	t.Helper()
	clk := &clock{}
	clk.Set(time.Now())
	pub := httptest.NewUnstartedServer(nil)
	pub.Start()
	t.Cleanup(pub.Close)
	p, err := portal.Open(portal.Options{Dir: t.TempDir(), PublicURL: pub.URL,
		Now: clk.Now, Holidays: []string{"2026-12-31"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	pub.Config.Handler = p.PublicHandler()
	if err := p.Publisher.PublishAll(); err != nil {
		t.Fatal(err)
	}

	token := portal.NewToken()
	ops := httptest.NewUnstartedServer(p.OperatorHandler(token))
	ops.StartTLS()
	t.Cleanup(ops.Close)
	conn := portal.Conn{URL: ops.URL, Token: token,
		CACert: portal.CertPEM(ops.Certificate().Raw)}
	op, err := portal.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, clk: clk, portal: p, public: pub, op: op, conn: conn}
}

func (e *env) do(method, path string, in, out any) {
	e.t.Helper()
	if err := e.op.Do(context.Background(), method, path, in, out); err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
}

func annex1(voen string) onboarding.SystemApplication {
	p := onboarding.Contact{Name: "Texniki Şəxs", WorkPhone: "+994 12 555 11 22",
		Mobile: "+994 50 555 11 22", Email: "tech@example.gov.az"}
	return onboarding.SystemApplication{
		Participant: "Ədliyyə Nazirliyi", VOEN: voen,
		Status: onboarding.StatusCentralExecutive, LegalAddress: "Bakı",
		ActualAddress: "Bakı", Basis: onboarding.Basis{LegalAct: "Qərar 118"},
		System: "Əhalinin Dövlət Reyestri", Resources: []string{"Reyestr"},
		RegistryExtract: "R-1", Responsible: p, Support: []onboarding.Contact{p, p},
		Assessment: onboarding.Assessment{Date: "2026-11-02", Result: "positive"},
		Official: onboarding.Official{Name: "Rəsmi", Post: "Müavin", Signature: "paper 1",
			Date: "2026-11-20"},
	}
}

func contract() registry.Contract {
	return registry.Contract{Number: "C-1", Signed: "2026-12-01",
		Officials: []string{"Rəsmi"}, Services: []string{"getPerson"},
		DataUsed: []string{"registry extracts"}, ServerAdministrator: "Admin",
		RequestStructure: "X-Road 4.0 SOAP", RestrictedInformation: "none",
		OtherTerms: "none"}
}

// onboard takes a participant from its annex 1 application to an
// approved security server: the whole of 3.1-3.3 and 4.1.2.
func (e *env) onboard(voen, subsystem, code string) (*manage.Manager, ident.Client) {
	t := e.t
	var app registry.Application
	e.do("POST", "/api/applications/system", annex1(voen), &app)
	e.do("POST", "/api/applications/"+itoa(app.ID)+"/approve",
		portal.ApproveSystem{Subsystem: subsystem, Contract: contract()}, &app)
	member := app.Member
	if member.String() != "AZ/GOV/"+voen {
		t.Fatalf("approval registered %s", member)
	}

	store, err := keys.NewFileStore(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := manage.Open(manage.Options{Dir: t.TempDir(), Keys: store, Now: e.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	sub := member
	sub.SubsystemCode = subsystem
	if err := m.Configure(manage.Identity{Owner: member, Code: code,
		Address: "127.0.0.1:5500", Clients: []ident.Client{member, sub}}); err != nil {
		t.Fatal(err)
	}
	var anchor json.RawMessage
	e.do("GET", "/api/anchor/AZ", nil, &anchor)
	if _, err := m.InstallAnchor(anchor); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	authID, sigID, err := m.SubmitRequests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if done, err := m.FetchCertificates(ctx); err != nil || done {
		t.Fatalf("FetchCertificates before approval = %v, %v; want false, nil", done, err)
	}
	e.do("POST", "/api/csrs/"+itoa(authID)+"/approve", nil, nil)
	e.do("POST", "/api/csrs/"+itoa(sigID)+"/approve", nil, nil)
	if done, err := m.FetchCertificates(ctx); err != nil || !done {
		t.Fatalf("FetchCertificates after approval = %v, %v", done, err)
	}
	st, err := m.Register(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.do("POST", "/api/servers/"+itoa(st.ID)+"/approve", nil, nil)
	if st, err := m.RegistrationStatus(ctx); err != nil || st.State != "approved" {
		t.Fatalf("RegistrationStatus = %+v, %v", st, err)
	}
	return m, member
}

func itoa(id uint64) string { return strings.TrimSpace(string(mustJSON(id))) }

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

func (e *env) fetcher(m *manage.Manager) *globalconf.Fetcher {
	e.t.Helper()
	a, err := globalconf.LoadAnchor(m.AnchorPath())
	if err != nil {
		e.t.Fatal(err)
	}
	f, err := globalconf.NewFetcher(globalconf.FetcherOptions{Anchor: a, Now: e.clk.Now,
		Path: filepath.Join(e.t.TempDir(), "globalconf.json")})
	if err != nil {
		e.t.Fatal(err)
	}
	return f
}

func (e *env) refresh(f *globalconf.Fetcher) *globalconf.Conf {
	e.t.Helper()
	e.do("POST", "/api/publish", nil, nil)
	if err := f.Refresh(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	c, err := f.Current()
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// TestOnboardingToVerifiedConfiguration goes from an empty portal through
// an application, its approval, key generation, certificate issuance and
// registration, to a verified published configuration that lists the
// server; then blocking and revocation take effect.
func TestOnboardingToVerifiedConfiguration(t *testing.T) {
	e := newEnv(t)
	m, member := e.onboard("1234567890", "REG", "SS1")
	f := e.fetcher(m)
	conf := e.refresh(f)

	auth, err := m.AuthCertificate()
	if err != nil {
		t.Fatal(err)
	}
	srv, ok := conf.ServerByAuthCert(auth.Leaf.Raw)
	if !ok || srv.Owner != member || srv.Code != "SS1" || srv.Address != "127.0.0.1:5500" {
		t.Fatalf("published configuration lacks the server: %+v", conf.SecurityServers)
	}
	sub := member
	sub.SubsystemCode = "REG"
	if !conf.HasClient(sub) || len(conf.ServersOf(sub)) != 1 {
		t.Errorf("published configuration lacks subsystem %s", sub)
	}
	pool, err := conf.CAPool()
	if err != nil {
		t.Fatal(err)
	}
	sigCert, sigKey, err := m.SigningCertificate()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sigCert.Verify(x509VerifyOpts(pool)); err != nil {
		t.Errorf("signing certificate does not chain to the published CA: %v", err)
	}
	if sigKey == nil || len(conf.TSAs) != 1 || conf.IncidentURL == "" {
		t.Errorf("configuration lacks TSA or incident URL: %+v", conf)
	}

	// Clause 3.7: a block reaches the server with its next refresh.
	var blocked struct {
		Breach *registry.Breach `json:"breach"`
	}
	e.do("POST", "/api/block", portal.BlockRequest{Client: member, Clause: "3.7.2",
		Reason: "personal data leaked"}, &blocked)
	if conf := e.refresh(f); !conf.IsBlocked(sub) {
		t.Error("the block did not reach the published configuration")
	}
	if blocked.Breach == nil || !blocked.Breach.RemedyBy.After(e.clk.Now().AddDate(0, 0, 27)) {
		t.Errorf("a 3.7.2 block must send a breach notice with a month to remedy: %+v",
			blocked.Breach)
	}
	e.do("POST", "/api/unblock", portal.BlockRequest{Client: member}, nil)
	if conf := e.refresh(f); conf.IsBlocked(sub) {
		t.Error("unblock did not reach the published configuration")
	}

	// Revocation: the stapler refuses to staple, the checker refuses.
	caCert := e.portal.CA.Certificate()
	st, err := appocsp.NewStapler(sigCert, caCert, appocsp.StaplerOptions{Now: e.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	good, err := st.Response()
	if err != nil {
		t.Fatalf("staple before revocation: %v", err)
	}
	checker := &appocsp.Checker{Source: f, Now: e.clk.Now}
	if err := checker.Check(sigCert, caCert, good); err != nil {
		t.Errorf("checker refused a good response: %v", err)
	}
	e.do("POST", "/api/certs/"+sigCert.SerialNumber.Text(16)+"/revoke",
		portal.RevokeRequest{Reason: ocsp.KeyCompromise}, nil)
	if err := st.Refresh(context.Background()); !errors.Is(err, appocsp.ErrRevoked) {
		t.Errorf("stapler after revocation: %v, want ErrRevoked", err)
	}
	revoked := e.portal.CA.Respond(mustOCSPRequest(t, sigCert, caCert))
	if err := checker.Check(sigCert, caCert, revoked); !errors.Is(err, appocsp.ErrRevoked) {
		t.Errorf("checker on a revoked response: %v, want ErrRevoked", err)
	}

	// Clause 6.8: the server reports an incident; the operator filters.
	// (Before the revocation of its authentication certificate below.)
	ic := &incident.Client{URL: conf.IncidentURL, Key: auth.PrivateKey.(signerKey),
		Cert: auth.Leaf.Raw}
	rep := incident.Report{Kind: incident.Replay, Time: e.clk.Now(), Client: sub.String(),
		MessageID: "m-1", Detail: "message id seen twice"}
	if err := ic.Report(context.Background(), rep); err != nil {
		t.Fatal(err)
	}
	var recs []incident.Record
	e.do("GET", "/api/incidents?kind=replay", nil, &recs)
	if len(recs) != 1 || recs[0].Server != member.String()+"/SS1" || recs[0].MessageID != "m-1" {
		t.Errorf("incidents = %+v", recs)
	}
	e.do("GET", "/api/incidents?kind=access-denied", nil, &recs)
	if len(recs) != 0 {
		t.Errorf("filter by kind returned %+v", recs)
	}
	stranger := &incident.Client{URL: conf.IncidentURL, Key: sigKey.(signerKey),
		Cert: sigCert.Raw}
	if err := stranger.Report(context.Background(), rep); err == nil ||
		!strings.Contains(err.Error(), "not the authentication certificate") {
		t.Errorf("report signed by a non-server certificate: %v", err)
	}

	// A revoked authentication certificate is no longer pinned.
	e.do("POST", "/api/certs/"+auth.Leaf.SerialNumber.Text(16)+"/revoke",
		portal.RevokeRequest{Reason: ocsp.KeyCompromise}, nil)
	if conf := e.refresh(f); len(conf.SecurityServers) != 0 {
		t.Errorf("a server with a revoked authentication certificate is still published: "+
			"%+v", conf.SecurityServers)
	}
}

// TestStaleConfigurationRefused: when the portal stops publishing, the
// server's configuration runs out and it stops trusting it.
func TestStaleConfigurationRefused(t *testing.T) {
	e := newEnv(t)
	m, _ := e.onboard("1234567891", "REG", "SS1")
	f := e.fetcher(m)
	e.refresh(f)
	e.clk.Add(11 * time.Minute)
	if err := f.Refresh(context.Background()); !errors.Is(err, globalconf.ErrStale) {
		t.Errorf("fetching an unrefreshed configuration: %v, want ErrStale", err)
	}
	if _, err := f.Current(); !errors.Is(err, globalconf.ErrStale) {
		t.Errorf("Current after expiry: %v, want ErrStale", err)
	}
	if c := e.refresh(f); c == nil {
		t.Error("a fresh publication was not accepted")
	}
}

// TestDeadlinesAndNotices covers the operator's duties in time: the 7
// working days of 3.2 and 3.9, the month of 3.6 and the month of 3.14.
func TestDeadlinesAndNotices(t *testing.T) {
	e := newEnv(t)
	e.clk.Set(time.Date(2026, 12, 24, 10, 0, 0, 0, time.UTC)) // a Thursday
	var app registry.Application
	e.do("POST", "/api/applications/system", annex1("1111111111"), &app)
	if got := app.Due.Format(time.DateOnly); got != "2027-01-05" {
		t.Errorf("due date over a weekend and a holiday = %s, want 2027-01-05", got)
	}
	e.clk.Set(time.Date(2027, 1, 6, 9, 0, 0, 0, time.UTC))
	var apps []registry.Application
	e.do("GET", "/api/applications", nil, &apps)
	if len(apps) != 1 || !apps[0].Overdue {
		t.Errorf("application past its due date is not overdue: %+v", apps)
	}

	bad := annex1("12")
	bad.Support[1].Email = "x@"
	err := e.op.Do(context.Background(), "POST", "/api/applications/system", bad, nil)
	if err == nil || !strings.Contains(err.Error(), `support[1].email: "x@" is not an e-mail`) ||
		!strings.Contains(err.Error(), "voen") {
		t.Errorf("invalid application: %v", err)
	}
	incomplete := contract()
	incomplete.ServerAdministrator = ""
	err = e.op.Do(context.Background(), "POST", "/api/applications/1/approve",
		portal.ApproveSystem{Subsystem: "REG", Contract: incomplete}, nil)
	if err == nil || !strings.Contains(err.Error(), "contract.serverAdministrator") ||
		!strings.Contains(err.Error(), "3.3.4") {
		t.Errorf("approval without the server administrator: %v", err)
	}
	e.do("POST", "/api/applications/1/approve",
		portal.ApproveSystem{Subsystem: "REG", Contract: contract()}, &app)
	member := app.Member

	// Annex 2: testing (3.8.2), tested (7 working days of 3.9), connected.
	svcApp := onboarding.ServiceApplication{Participant: "Ədliyyə Nazirliyi",
		System: "Reyestr", Provider: member.String() + "/REG", LegalBasis: "Qərar 118",
		Services: []onboarding.ServiceEntry{{Number: "1", Name: "Şəxs", Code: "getPerson",
			Version: "v2", Regulation: "DRLA-1", Responsible: "Aynur",
			ResponsiblePhone: "+994125550000"}},
		NotifyEmail: "n@example.gov.az", NotifyPhone: "+994125550000",
		Official: onboarding.Official{Signature: "paper 2", Date: "2027-01-06"}}
	e.do("POST", "/api/applications/service", svcApp, &app)
	if app.State != registry.StateTesting {
		t.Fatalf("annex 2 application starts %s, want testing", app.State)
	}
	if err := e.op.Do(context.Background(), "POST",
		"/api/applications/"+itoa(app.ID)+"/connect", nil, nil); err == nil {
		t.Error("connecting an untested service succeeded (3.8.2)")
	}
	e.do("POST", "/api/applications/"+itoa(app.ID)+"/tested",
		portal.Reason{Reason: "tried in AZ-TEST"}, &app)
	if got := app.Due.Format(time.DateOnly); got != "2027-01-15" {
		t.Errorf("connection due = %s, want 2027-01-15", got)
	}
	e.do("POST", "/api/applications/"+itoa(app.ID)+"/connect", nil, &app)

	svc := ident.Service{Client: ident.Client{Instance: "AZ", MemberClass: "GOV",
		MemberCode: "1111111111", SubsystemCode: "REG"}, ServiceCode: "getPerson",
		Version: "v2"}
	old := svc
	old.Version = "v1"
	var notices []registry.NoticeRecord
	e.do("POST", "/api/notices/version", portal.VersionNotice{New: svc, Old: old,
		EndOfLife: e.clk.Now().AddDate(0, 3, 0)}, &notices)
	if len(notices) != 2 {
		t.Errorf("version announcement made %d notices, want new-version and end-of-life",
			len(notices))
	}

	// Clause 3.14: a disconnection needs at least a month's notice.
	err = e.op.Do(context.Background(), "POST", "/api/notices/disconnect",
		portal.DisconnectNotice{Service: svc, Effective: e.clk.Now().AddDate(0, 0, 20),
			Text: "replaced"}, nil)
	if err == nil || !strings.Contains(err.Error(), "clause 3.14") ||
		!strings.Contains(err.Error(), "the earliest is 2027-02-06") {
		t.Errorf("disconnection with 20 days' notice: %v", err)
	}
	e.do("POST", "/api/notices/disconnect", portal.DisconnectNotice{Service: svc,
		Effective: e.clk.Now().AddDate(0, 1, 1), Text: "replaced by v3"}, nil)
	c, err := e.portal.Publisher.Build("AZ")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Notices) != 3 {
		t.Errorf("published notices = %+v, want 3", c.Notices)
	}

	// Clause 3.6: disconnection only after the month to remedy.
	var br registry.Breach
	e.do("POST", "/api/breaches", portal.BreachRequest{Member: member,
		Text: "no server administrator"}, &br)
	err = e.op.Do(context.Background(), "POST", "/api/disconnect",
		portal.DisconnectRequest{Member: member, Breach: br.ID}, nil)
	if err == nil || !strings.Contains(err.Error(), "3.6") {
		t.Errorf("disconnect within the month: %v", err)
	}
	e.clk.Add(32 * 24 * time.Hour)
	e.do("POST", "/api/disconnect", portal.DisconnectRequest{Member: member, Breach: br.ID},
		nil)
	c, err = e.portal.Publisher.Build("AZ")
	if err != nil {
		t.Fatal(err)
	}
	if c.HasClient(member) {
		t.Error("a disconnected member is still in the configuration")
	}
}

func TestOperatorAPINeedsToken(t *testing.T) {
	e := newEnv(t)
	conn := e.conn
	conn.Token = "wrong"
	bad, err := portal.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Do(context.Background(), "GET", "/api/members", nil, nil); err == nil ||
		!strings.Contains(err.Error(), "operator token") {
		t.Errorf("wrong token: %v", err)
	}
}

type signerKey = crypto.Signer

func x509VerifyOpts(pool *x509.CertPool) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
}

func mustOCSPRequest(t *testing.T, cert, issuer *x509.Certificate) []byte {
	t.Helper()
	req, err := ocsp.CreateRequest(cert, issuer, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestTestInstance: an approved participant is also a member of the test
// instance (3.8.2), whose configuration is signed for that instance only.
func TestTestInstance(t *testing.T) {
	e := newEnv(t)
	var app registry.Application
	e.do("POST", "/api/applications/system", annex1("2222222222"), &app)
	e.do("POST", "/api/applications/"+itoa(app.ID)+"/approve",
		portal.ApproveSystem{Subsystem: "REG", Contract: contract()}, &app)
	var testAnchor, prodAnchor globalconf.Anchor
	e.do("GET", "/api/anchor/AZ-TEST", nil, &testAnchor)
	e.do("GET", "/api/anchor/AZ", nil, &prodAnchor)
	e.do("POST", "/api/publish", nil, nil)
	signed := e.portal.Publisher.Signed("AZ-TEST")
	c, err := globalconf.Verify(signed, &testAnchor)
	if err != nil {
		t.Fatal(err)
	}
	member := ident.Client{Instance: "AZ-TEST", MemberClass: "GOV", MemberCode: "2222222222",
		SubsystemCode: "REG"}
	if !c.HasClient(member) {
		t.Errorf("the test instance lacks %s", member)
	}
	if _, err := globalconf.Verify(signed, &prodAnchor); err == nil ||
		!strings.Contains(err.Error(), "instance") {
		t.Errorf("a production server accepted the test configuration: %v", err)
	}
}

// TestTamperedConfigurationRejected: a configuration the portal signed and
// someone on the way changed (here, to hide a block of clause 3.7) is
// rejected by the security server with a message that says so, and the
// server keeps the version it had.
func TestTamperedConfigurationRejected(t *testing.T) {
	e := newEnv(t)
	m, member := e.onboard("1234567892", "REG", "SS1")
	e.do("POST", "/api/publish", nil, nil)
	genuine := e.portal.Publisher.Signed("AZ")
	var served atomic.Value
	served.Store(genuine)
	mitm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter,
		_ *http.Request) {
		w.Write(served.Load().([]byte))
	}))
	defer mitm.Close()
	a, err := globalconf.LoadAnchor(m.AnchorPath())
	if err != nil {
		t.Fatal(err)
	}
	a.ConfigURLs = []string{mitm.URL + "/globalconf/AZ"}
	f, err := globalconf.NewFetcher(globalconf.FetcherOptions{Anchor: a, Now: e.clk.Now,
		Path: filepath.Join(t.TempDir(), "globalconf.json")})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Refresh(context.Background()); err != nil {
		t.Fatalf("fetching the genuine configuration through the relay: %v", err)
	}
	before, err := f.Current()
	if err != nil {
		t.Fatal(err)
	}

	e.do("POST", "/api/block", portal.BlockRequest{Client: member, Clause: "3.7.1",
		Reason: "flooding"}, nil)
	e.do("POST", "/api/publish", nil, nil)
	var env struct {
		Content     []byte `json:"content"`
		Signature   []byte `json:"signature"`
		Certificate []byte `json:"certificate"`
	}
	if err := json.Unmarshal(e.portal.Publisher.Signed("AZ"), &env); err != nil {
		t.Fatal(err)
	}
	hidden := strings.Replace(string(env.Content), `"blocked":`, `"unblocked":`, 1)
	if hidden == string(env.Content) {
		t.Fatalf("the published configuration has no block to hide:\n%s", env.Content)
	}
	env.Content = []byte(hidden)
	tampered := mustJSON(env)
	served.Store(tampered)

	if _, err := globalconf.Verify(tampered, a); !errors.Is(err, globalconf.ErrTampered) ||
		!strings.Contains(err.Error(), "changed after signing") {
		t.Errorf("Verify(tampered) = %v, want ErrTampered saying it was changed", err)
	}
	if err := f.Refresh(context.Background()); !errors.Is(err, globalconf.ErrTampered) {
		t.Errorf("fetching the tampered configuration: %v, want ErrTampered", err)
	}
	if c, err := f.Current(); err != nil || c.Serial != before.Serial {
		t.Errorf("after a tampered fetch Current = %v, %v; want serial %d kept", c, err,
			before.Serial)
	}

	// The genuine version with the block replaces it.
	served.Store(e.portal.Publisher.Signed("AZ"))
	if err := f.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c, _ := f.Current(); !c.IsBlocked(member) {
		t.Error("the genuine configuration after the block does not block the member")
	}
}

// TestServiceNoticesReachServer: the notices of 3.12 and 3.14 reach the
// provider's security server, whose management API lists them as its own;
// once the announced disconnection date passes, the published
// configuration lists the service as disconnected, which every security
// server refuses, and the notice leaves the list of those to come.
func TestServiceNoticesReachServer(t *testing.T) {
	e := newEnv(t)
	e.clk.Set(time.Date(2027, 1, 11, 9, 0, 0, 0, time.UTC)) // a Monday
	e.do("POST", "/api/publish", nil, nil)
	m, member := e.onboard("3333333333", "REG", "SS1")
	sub := member
	sub.SubsystemCode = "REG"
	var app registry.Application
	e.do("POST", "/api/applications/service", onboarding.ServiceApplication{
		Participant: "Ədliyyə Nazirliyi", System: "Reyestr", Provider: sub.String(),
		LegalBasis: "Qərar 118",
		Services: []onboarding.ServiceEntry{
			{Number: "1", Name: "Şəxs", Code: "getPerson", Version: "v2",
				Regulation: "DRLA-1", Responsible: "Aynur", ResponsiblePhone: "+994125550000"},
			{Number: "2", Name: "Şəxs", Code: "getPerson", Version: "v1",
				Regulation: "DRLA-1", Responsible: "Aynur", ResponsiblePhone: "+994125550000"}},
		NotifyEmail: "n@example.gov.az", NotifyPhone: "+994125550000",
		Official: onboarding.Official{Signature: "paper 3", Date: "2027-01-11"}}, &app)
	e.do("POST", "/api/applications/"+itoa(app.ID)+"/tested",
		portal.Reason{Reason: "tried in AZ-TEST"}, &app)
	e.do("POST", "/api/applications/"+itoa(app.ID)+"/connect", nil, &app)
	v2 := ident.Service{Client: sub, ServiceCode: "getPerson", Version: "v2"}
	v1 := v2
	v1.Version = "v1"
	eol := e.clk.Now().AddDate(0, 3, 0)
	e.do("POST", "/api/notices/version", portal.VersionNotice{New: v2, Old: v1,
		EndOfLife: eol, Text: "use v2"}, nil)
	date := e.clk.Now().AddDate(0, 1, 1)
	e.do("POST", "/api/notices/disconnect", portal.DisconnectNotice{Service: v1,
		Effective: date, Text: "replaced by v2"}, nil)

	f := e.fetcher(m)
	conf := e.refresh(f)
	if _, ok := conf.Disconnection(v1, e.clk.Now()); ok {
		t.Error("the service is disconnected before the announced date")
	}
	if got := conf.Warnings(v1); len(got) != 2 {
		t.Errorf("warnings on %s = %+v, want end-of-life and disconnect", v1, got)
	}
	kinds := func() map[string]manage.ServiceNotice {
		list, err := m.Notices(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]manage.ServiceNotice{}
		for _, n := range list.Notices {
			if !n.Ours {
				t.Errorf("notice %+v on the server's own service is not marked ours", n)
			}
			out[n.Kind] = n
		}
		return out
	}
	got := kinds()
	if len(got) != 3 || !got["disconnect"].Effective.Equal(date) ||
		!got["end-of-life"].Effective.Equal(eol) || got["new-version"].Service != v2 {
		t.Errorf("the management API lists %+v", got)
	}

	// Clause 3.14: past the date, the service is disconnected.
	e.clk.Set(date.Add(time.Minute))
	conf = e.refresh(f)
	d, ok := conf.Disconnection(v1, e.clk.Now())
	if !ok || d.Service != v1 || !d.Since.Equal(date) || len(conf.Disconnected) != 1 {
		t.Errorf("after the date: disconnection %+v, %v; listed %+v", d, ok,
			conf.Disconnected)
	}
	if _, ok := conf.Disconnection(v2, e.clk.Now()); ok {
		t.Error("the new version is disconnected too")
	}
	for _, n := range conf.Notices {
		if n.Kind == globalconf.NoticeDisconnect {
			t.Errorf("a disconnection that took effect is still announced: %+v", n)
		}
	}
	got = kinds()
	if _, ok := got["disconnect"]; ok || !got[manage.KindDisconnected].Effective.Equal(date) {
		t.Errorf("after the date the management API lists %+v", got)
	}
	// A new version cannot be announced against a disconnected service.
	err := e.op.Do(context.Background(), "POST", "/api/notices/version",
		portal.VersionNotice{New: v1, Old: v2, EndOfLife: e.clk.Now().AddDate(0, 1, 0)}, nil)
	if err == nil || !strings.Contains(err.Error(), "not connected") {
		t.Errorf("announcing a disconnected service as the new version: %v", err)
	}
}
