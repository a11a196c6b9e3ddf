// Package sandbox runs a whole exchange on one machine, on loopback: the
// operator's portal with the 33 agencies and 63 information systems of
// appendix 1 in its registry, two security servers of two of those
// agencies registered through the real flow, and the sample information
// system behind the provider's server.
//
// The real flow is the operator's procedure from an annex 1 application
// for each of the two systems, approved with its contract (3.1-3.3), and an
// annex 2 application for the provider's services, tried with test data
// through security servers of the two agencies in the test instance
// (3.8.2), recorded as tested only when that call answered, and connected
// (3.9); then the security server's side of 4.1.2, through its local
// management API over HTTPS as 'qapi register' drives it: anchor installed,
// keys generated, certificate requests approved by the operator,
// certificates fetched, registration approved, configuration fetched and
// verified. The other 61 systems enter the registry directly, as systems
// the decision itself connects.
//
// The member codes it gives the agencies are made up (99000000NN): the
// decision lists no tax numbers.
package sandbox

import (
	"bytes"
	"context"
	"crypto/x509"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/appliance/keys"
	"github.com/qapi-az/qapi/appliance/manage"
	"github.com/qapi-az/qapi/appliance/ocsp"
	"github.com/qapi-az/qapi/appliance/server"
	"github.com/qapi-az/qapi/appliance/soap"
	"github.com/qapi-az/qapi/appliance/timestamp"
	"github.com/qapi-az/qapi/internal/sampleis"
	"github.com/qapi-az/qapi/portal"
	"github.com/qapi-az/qapi/portal/onboarding"
	"github.com/qapi-az/qapi/portal/registry"
	"github.com/qapi-az/qapi/portal/wire"
)

//go:embed appendix1-systems.tsv
var appendix1 string

// System is one information system of appendix 1.
type System struct {
	// Number is the appendix's number, AGENCY.SYSTEM, e.g. 2.1.
	Number string
	Agency string
	Name   string
}

// Appendix1 returns the 63 systems of appendix 1 in order.
func Appendix1() ([]System, error) {
	var out []System
	for i, line := range strings.Split(strings.TrimSpace(appendix1), "\n") {
		if i == 0 {
			continue // the header
		}
		f := strings.Split(strings.TrimRight(line, "\r"), "\t")
		if len(f) != 3 || !strings.Contains(f[0], ".") {
			return nil, fmt.Errorf("appendix 1 line %d is not NUMBER, AGENCY, SYSTEM", i+1)
		}
		out = append(out, System{Number: f[0], Agency: f[1], Name: f[2]})
	}
	return out, nil
}

// Instance is the sandbox's production instance.
const Instance = "AZ"

// MemberOf returns the made-up member of the agency with appendix number n
// (the part of a system's number before the dot).
func MemberOf(agency string) ident.Client {
	return ident.Client{Instance: Instance, MemberClass: "GOV",
		MemberCode: fmt.Sprintf("99%08s", agency)}
}

// SubsystemOf returns the subsystem of the system numbered number.
func SubsystemOf(number string) ident.Client {
	c := MemberOf(number[:strings.IndexByte(number, '.')])
	c.SubsystemCode = "IS" + number
	return c
}

// Systems the two security servers serve: the police's central
// information system asks the population register of the Ministry of
// Justice, which the sample information system stands in for.
const (
	ClientSystem   = "1.2"
	ProviderSystem = "2.1"
)

// Options configure a sandbox.
type Options struct {
	// Dir holds all state; a fresh temporary folder when empty.
	Dir string
	// FetchInterval is how often the servers fetch the global
	// configuration; 5 seconds when 0.
	FetchInterval time.Duration
}

// Node is one security server of the sandbox.
type Node struct {
	Member    ident.Client
	Subsystem ident.Client
	Code      string
	Manager   *manage.Manager
	Server    *server.Server
	Fetcher   *globalconf.Fetcher
	Stapler   *ocsp.Stapler
	// ManageConn is the connection file of its management API.
	ManageConn string
}

// ClientURL is where the node's information systems send requests.
func (n *Node) ClientURL() string {
	return "http://" + n.Server.Addr(server.RoleClientHTTP) + "/"
}

// Sandbox is a running sandbox.
type Sandbox struct {
	Dir       string
	Portal    *portal.Portal
	PublicURL string
	// OperatorConn is the operator API's connection file.
	OperatorConn string
	Operator     *portal.Client
	Client       *Node
	Provider     *Node
	// TestClient and TestProvider are the two agencies' security servers
	// in the test instance, through which the provider's services were
	// tried before they were connected (3.8.2).
	TestClient   *Node
	TestProvider *Node
	// ISURL is the sample information system's address.
	ISURL string

	cancel      context.CancelFunc
	wg          sync.WaitGroup
	closers     []func()
	closePortal func()
}

// GetPersonRequest returns a getPerson request from the client system to
// the provider's population register, for the given message id.
func (s *Sandbox) GetPersonRequest(id string) []byte {
	return getPersonRequest(s.Client, s.Provider, id)
}

// getPersonRequest is a getPerson request, with the sample register's test
// data, from the subsystem of client to that of provider.
func getPersonRequest(client, provider *Node, id string) []byte {
	svc := ident.Service{Client: provider.Subsystem, ServiceCode: sampleis.CodeGetPerson}
	fin := sampleis.Persons()[0].FIN
	return sampleis.GetPersonRequest(sampleis.Header{Client: client.Subsystem,
		Service: svc, ID: id, UserID: "AZ0000001"}, fin)
}

// TestInstance is the sandbox's test instance (3.8.2).
const TestInstance = Instance + "-TEST"

// inInstance returns c in instance.
func inInstance(c ident.Client, instance string) ident.Client {
	c.Instance = instance
	return c
}

// Start builds and starts the sandbox. Close stops it.
func Start(ctx context.Context, opts Options) (s *Sandbox, err error) {
	if opts.FetchInterval == 0 {
		opts.FetchInterval = 5 * time.Second
	}
	if opts.Dir == "" {
		if opts.Dir, err = os.MkdirTemp("", "qapi-sandbox-"); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	s = &Sandbox{Dir: opts.Dir, cancel: cancel}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if err := s.startPortal(ctx); err != nil {
		return nil, err
	}
	if err := s.loadAppendix1(ctx); err != nil {
		return nil, err
	}
	var services uint64
	for _, number := range []string{ClientSystem, ProviderSystem} {
		id, err := s.apply(ctx, number)
		if err != nil {
			return nil, fmt.Errorf("system %s: %w", number, err)
		}
		if id != 0 {
			services = id
		}
	}
	is := portal.NewServer(sampleis.New())
	isURL, err := s.serve(is, nil)
	if err != nil {
		return nil, err
	}
	s.ISURL = isURL

	if err := s.startPair(ctx, TestInstance, "-test", opts); err != nil {
		return nil, fmt.Errorf("test instance %s: %w", TestInstance, err)
	}
	if err := s.tryAndConnect(ctx, services); err != nil {
		return nil, err
	}
	if err := s.startPair(ctx, Instance, "", opts); err != nil {
		return nil, err
	}
	return s, nil
}

// Refresh publishes a new configuration and has both servers fetch it at
// once, instead of waiting for their next interval.
func (s *Sandbox) Refresh(ctx context.Context) error {
	if err := s.Operator.Do(ctx, "POST", "/api/publish", nil, nil); err != nil {
		return err
	}
	for _, n := range []*Node{s.TestProvider, s.TestClient, s.Provider, s.Client} {
		if n == nil {
			continue
		}
		if err := n.Fetcher.Refresh(ctx); err != nil {
			return fmt.Errorf("%s fetching the configuration: %w", n.Code, err)
		}
	}
	return nil
}

// startPair brings up, in instance, the provider's security server (the
// sample register behind it, getPerson and searchPersons granted to the
// client's system) and the client's, and has both see each other: Provider
// and Client, or TestProvider and TestClient in the test instance. suffix
// tells their server codes from those of another instance.
func (s *Sandbox) startPair(ctx context.Context, instance, suffix string,
	opts Options) error {
	provider, client := &s.Provider, &s.Client
	if instance == TestInstance {
		provider, client = &s.TestProvider, &s.TestClient
	}
	caller := inInstance(SubsystemOf(ClientSystem), instance)
	var err error
	*provider, err = s.startNode(ctx, instance, ProviderSystem, "ss-justice"+suffix, opts,
		func(c *server.Config, n *Node) {
			c.Services = []server.ServiceConfig{{Provider: n.Subsystem.String(),
				URL: s.ISURL, WSDL: s.ISURL + "/?wsdl"}}
			for _, code := range []string{sampleis.CodeGetPerson, sampleis.CodeSearchPersons} {
				svc := ident.Service{Client: n.Subsystem, ServiceCode: code}
				c.AccessRights = append(c.AccessRights, server.AccessRight{
					Service: svc.String(), Subject: "subsystem:" + caller.String()})
			}
		})
	if err != nil {
		return fmt.Errorf("provider's security server: %w", err)
	}
	if *client, err = s.startNode(ctx, instance, ClientSystem, "ss-police"+suffix, opts,
		nil); err != nil {
		return fmt.Errorf("client's security server: %w", err)
	}
	// Both servers must see each other: one more publication and fetch.
	return s.Refresh(ctx)
}

// tryAndConnect tries the provider's getPerson with test data through the
// test instance's security servers (3.8.2); only when it answers does the
// operator record annex 2 application app as tested and connect its
// services (3.9).
func (s *Sandbox) tryAndConnect(ctx context.Context, app uint64) error {
	id := fmt.Sprintf("sandbox-test-%d", time.Now().UnixNano())
	req := getPersonRequest(s.TestClient, s.TestProvider, id)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, s.TestClient.ClientURL(),
		bytes.NewReader(req))
	if err != nil {
		return err
	}
	hr.Header.Set("Content-Type", "text/xml; charset=utf-8")
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		return fmt.Errorf("trying getPerson in %s: %w", TestInstance, err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("trying getPerson in %s: %w", TestInstance, err)
	}
	m, err := soap.ParseResponse(body, soap.Limits{MaxBytes: 1 << 20, MaxDepth: 64})
	switch {
	case err != nil:
		return fmt.Errorf("getPerson tried in %s answered HTTP %d, not SOAP: %w",
			TestInstance, resp.StatusCode, err)
	case m.Fault != nil:
		return fmt.Errorf("getPerson tried in %s answered fault %s: %s", TestInstance,
			m.Fault.Code, m.Fault.String)
	case m.Header.ID != id || resp.StatusCode != http.StatusOK:
		return fmt.Errorf("getPerson tried in %s answered HTTP %d for message %q, "+
			"not %q", TestInstance, resp.StatusCode, m.Header.ID, id)
	}
	note := fmt.Sprintf("%s with test data answered through %s and %s in %s, "+
		"message %s", sampleis.CodeGetPerson, s.TestClient.Code, s.TestProvider.Code,
		TestInstance, id)
	for _, step := range []struct {
		action string
		body   any
	}{{"tested", portal.Reason{Reason: note}}, {"connect", nil}} {
		err := s.Operator.Do(ctx, "POST", fmt.Sprintf("/api/applications/%d/%s", app,
			step.action), step.body, nil)
		if err != nil {
			return fmt.Errorf("annex 2 application %d, %s: %w", app, step.action, err)
		}
	}
	return nil
}

// serve serves h on a fresh loopback port and returns its URL.
func (s *Sandbox) serve(h *http.Server, ln net.Listener) (string, error) {
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return "", err
		}
	}
	scheme := "http"
	if h.TLSConfig != nil {
		scheme = "https"
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if h.TLSConfig != nil {
			h.ServeTLS(ln, "", "")
		} else {
			h.Serve(ln)
		}
	}()
	s.closers = append(s.closers, func() { h.Close() })
	return scheme + "://" + ln.Addr().String(), nil
}

func (s *Sandbox) startPortal(ctx context.Context) error {
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s.PublicURL = "http://" + pl.Addr().String()
	p, err := portal.Open(portal.Options{Dir: filepath.Join(s.Dir, "portal"),
		PublicURL: s.PublicURL, Instances: []string{Instance, TestInstance}})
	if err != nil {
		pl.Close()
		return err
	}
	s.Portal = p
	s.closePortal = func() { p.Close() }
	if _, err := s.serve(portal.NewServer(p.PublicHandler()), pl); err != nil {
		return err
	}

	ol, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	token := portal.NewToken()
	cfg, conn, err := p.OperatorTLS("https://"+ol.Addr().String(), token,
		[]string{"127.0.0.1", "localhost"})
	if err != nil {
		ol.Close()
		return err
	}
	ops := portal.NewServer(p.OperatorHandler(token))
	ops.TLSConfig = cfg
	if _, err := s.serve(ops, ol); err != nil {
		return err
	}
	s.OperatorConn = filepath.Join(s.Dir, "portal", "operator.json")
	if err := portal.WriteConn(s.OperatorConn, conn); err != nil {
		return err
	}
	if s.Operator, err = portal.NewClient(conn); err != nil {
		return err
	}
	if err := p.Publisher.PublishAll(); err != nil {
		return err
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); p.Run(ctx) }()
	return nil
}

// loadAppendix1 registers the agencies of appendix 1 as members with their
// systems as subsystems, as the operator does for participants connected
// by the decision itself.
func (s *Sandbox) loadAppendix1(ctx context.Context) error {
	systems, err := Appendix1()
	if err != nil {
		return err
	}
	members := map[ident.Client]*registry.Member{}
	var order []ident.Client
	for _, sys := range systems {
		sub := SubsystemOf(sys.Number)
		if sys.Number == ClientSystem || sys.Number == ProviderSystem {
			// Their agencies apply for them below, as a new participant does.
			sub.SubsystemCode = ""
		}
		m := sub.Member()
		if members[m] == nil {
			members[m] = &registry.Member{ID: m, Name: sys.Agency,
				Status: "central-executive-body"}
			order = append(order, m)
		}
		if sub.SubsystemCode != "" {
			members[m].Subsystems = append(members[m].Subsystems,
				registry.Subsystem{Code: sub.SubsystemCode, Name: sys.Name})
		}
	}
	for _, m := range order {
		if err := s.Operator.Do(ctx, "POST", "/api/members", members[m], nil); err != nil {
			return fmt.Errorf("register %s: %w", m, err)
		}
	}
	return nil
}

// apply takes the system numbered number through the operator's procedure
// as a new participant's system: its annex 1 application (3.1), approved
// with a connection contract (3.2, 3.3); for the provider's system also the
// annex 2 application of its services (3.8.1), whose id it returns, in
// testing (3.8.2). The contacts and documents are made up.
func (s *Sandbox) apply(ctx context.Context, number string) (uint64, error) {
	systems, err := Appendix1()
	if err != nil {
		return 0, err
	}
	var sys System
	for _, y := range systems {
		if y.Number == number {
			sys = y
		}
	}
	if sys.Number == "" {
		return 0, fmt.Errorf("appendix 1 has no system %s", number)
	}
	sub := SubsystemOf(number)
	day := time.Now().AddDate(0, 0, -7).Format(time.DateOnly)
	person := func(name, mail string) onboarding.Contact {
		return onboarding.Contact{Name: name, WorkPhone: "+994 12 555 00 00",
			Mobile: "+994 50 555 00 00", Email: mail + "@sandbox.example.az"}
	}
	official := onboarding.Official{Name: "Səlahiyyətli Şəxs", Post: "Nazir müavini",
		Signature: "sandbox " + number, Date: day}
	a1 := onboarding.SystemApplication{Participant: sys.Agency,
		VOEN: sub.MemberCode, Status: onboarding.StatusCentralExecutive,
		LegalAddress: "Bakı", ActualAddress: "Bakı",
		Basis:  onboarding.Basis{LegalAct: "Nazirlər Kabinetinin 118 nömrəli qərarı"},
		System: sys.Name, Resources: []string{sys.Name}, RegistryExtract: "SB-" + number,
		Assessment:  onboarding.Assessment{Date: day, Result: "positive"},
		Responsible: person("Qoşulmaya Məsul", "connect"),
		Support:     []onboarding.Contact{person("Dəstək Bir", "s1"), person("Dəstək İki", "s2")},
		Official:    official}
	var app registry.Application
	if err := s.Operator.Do(ctx, "POST", "/api/applications/system", a1, &app); err != nil {
		return 0, fmt.Errorf("annex 1 application: %w", err)
	}
	contract := registry.Contract{Number: "SB-" + number, Signed: day,
		Officials: []string{official.Name}, Services: []string{sampleis.CodeGetPerson},
		DataUsed:              []string{"population register extracts"},
		ServerAdministrator:   "Server Administratoru",
		RequestStructure:      "X-Road message protocol 4.0 SOAP",
		RestrictedInformation: "none", OtherTerms: "sandbox test data only"}
	if err := s.Operator.Do(ctx, "POST", fmt.Sprintf("/api/applications/%d/approve", app.ID),
		portal.ApproveSystem{Subsystem: sub.SubsystemCode, Contract: contract},
		nil); err != nil {
		return 0, fmt.Errorf("approving annex 1 application %d: %w", app.ID, err)
	}
	if number != ProviderSystem {
		return 0, nil
	}

	a2 := onboarding.ServiceApplication{Participant: sys.Agency, System: sys.Name,
		Provider: sub.String(), LegalBasis: "Nazirlər Kabinetinin 118 nömrəli qərarı",
		NotifyEmail: "notify@sandbox.example.az", NotifyPhone: "+994 12 555 00 01",
		Official: official}
	for i, code := range []string{sampleis.CodeGetPerson, sampleis.CodeSearchPersons} {
		a2.Services = append(a2.Services, onboarding.ServiceEntry{
			Number: fmt.Sprint(i + 1), Name: code, Code: code,
			Regulation: "SB-REG-" + code, Responsible: "Xidmətə Məsul",
			ResponsiblePhone: "+994 12 555 00 02"})
	}
	if err := s.Operator.Do(ctx, "POST", "/api/applications/service", a2, &app); err != nil {
		return 0, fmt.Errorf("annex 2 application: %w", err)
	}
	return app.ID, nil
}

// freeAddr reserves a loopback port for a server-side proxy, whose address
// must be registered before the proxy starts.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startNode brings up, in instance, the security server of the agency
// owning system through the registration flow of clause 4.1.2.
func (s *Sandbox) startNode(ctx context.Context, instance, system, code string,
	opts Options, configure func(*server.Config, *Node)) (*Node, error) {
	dir := filepath.Join(s.Dir, code)
	n := &Node{Subsystem: inInstance(SubsystemOf(system), instance), Code: code}
	n.Member = n.Subsystem.Member()
	store, err := keys.NewFileStore(filepath.Join(dir, "keys"))
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { store.Close() })
	if n.Manager, err = manage.Open(manage.Options{Dir: filepath.Join(dir, "manage"),
		Keys: store}); err != nil {
		return nil, err
	}

	// The management API on the internal interface, for 'qapi register'.
	ml, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	tlsCfg, token, err := n.Manager.APIListener("https://"+ml.Addr().String(),
		[]string{"127.0.0.1", "localhost"})
	if err != nil {
		ml.Close()
		return nil, err
	}
	n.ManageConn = filepath.Join(dir, "manage", "manage.json")
	ms := portal.NewServer(n.Manager.Handler(token))
	ms.TLSConfig = tlsCfg
	if _, err := s.serve(ms, ml); err != nil {
		return nil, err
	}

	// The server's side of 4.1.2 goes through that API, as the server's
	// administrator drives it with 'qapi register'.
	api, err := manage.DialAPI(n.ManageConn)
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	if err := api.Do(ctx, "POST", "/api/configure", manage.Identity{Owner: n.Member,
		Code: code, Address: addr, Clients: []ident.Client{n.Member, n.Subsystem}},
		nil); err != nil {
		return nil, fmt.Errorf("qapi register init: %w", err)
	}
	var anchor json.RawMessage
	if err := s.Operator.Do(ctx, "GET", "/api/anchor/"+instance, nil, &anchor); err != nil {
		return nil, err
	}
	if err := api.Do(ctx, "POST", "/api/anchor", []byte(anchor), nil); err != nil {
		return nil, fmt.Errorf("qapi register anchor: %w", err)
	}
	var submitted struct {
		AuthRequest    uint64 `json:"authRequest"`
		SigningRequest uint64 `json:"signingRequest"`
	}
	if err := api.Do(ctx, "POST", "/api/submit", nil, &submitted); err != nil {
		return nil, fmt.Errorf("qapi register submit: %w", err)
	}
	for _, id := range []uint64{submitted.AuthRequest, submitted.SigningRequest} {
		if err := s.Operator.Do(ctx, "POST", fmt.Sprintf("/api/csrs/%d/approve", id), nil,
			nil); err != nil {
			return nil, fmt.Errorf("operator approving certificate request %d: %w", id, err)
		}
	}
	var fetched struct {
		Imported bool `json:"imported"`
	}
	if err := api.Do(ctx, "POST", "/api/fetch", nil, &fetched); err != nil ||
		!fetched.Imported {
		return nil, fmt.Errorf("qapi register fetch: %v (all imported: %v)", err,
			fetched.Imported)
	}
	var reg wire.RegistrationStatus
	if err := api.Do(ctx, "POST", "/api/register", nil, &reg); err != nil {
		return nil, fmt.Errorf("qapi register server: %w", err)
	}
	if err := s.Operator.Do(ctx, "POST", fmt.Sprintf("/api/servers/%d/approve", reg.ID),
		nil, nil); err != nil {
		return nil, fmt.Errorf("operator approving registration %d: %w", reg.ID, err)
	}
	if err := api.Do(ctx, "GET", "/api/registration", nil, &reg); err != nil ||
		reg.State != "approved" {
		return nil, fmt.Errorf("qapi register registration: %v (state %q)", err, reg.State)
	}
	if err := s.Operator.Do(ctx, "POST", "/api/publish", nil, nil); err != nil {
		return nil, err
	}

	a, err := globalconf.LoadAnchor(n.Manager.AnchorPath())
	if err != nil {
		return nil, err
	}
	if n.Fetcher, err = globalconf.NewFetcher(globalconf.FetcherOptions{Anchor: a,
		Path: filepath.Join(dir, "globalconf.json"), Interval: opts.FetchInterval}); err != nil {
		return nil, err
	}
	if err := n.Fetcher.Refresh(ctx); err != nil {
		return nil, err
	}
	conf, _ := n.Fetcher.Current()
	sigCert, _, err := n.Manager.SigningCertificate()
	if err != nil {
		return nil, err
	}
	ca, err := x509Issuer(conf)
	if err != nil {
		return nil, err
	}
	if n.Stapler, err = ocsp.NewStapler(sigCert, ca, ocsp.StaplerOptions{}); err != nil {
		return nil, err
	}
	if _, err := n.Stapler.Response(); err != nil {
		return nil, err
	}
	checker := &ocsp.Checker{Source: n.Fetcher}
	s.wg.Add(2)
	go func() { defer s.wg.Done(); n.Fetcher.Run(ctx) }()
	go func() { defer s.wg.Done(); n.Stapler.Run(ctx) }()

	tsaRoots, err := conf.CAPool()
	if err != nil {
		return nil, err
	}
	cfg := &server.Config{
		Identity: server.Identity{Member: n.Member.String(), ServerCode: code,
			Clients: []string{n.Member.String(), n.Subsystem.String()}},
		Listen: server.Listen{ClientHTTP: "127.0.0.1:0", Server: addr},
		TLS: server.TLSFiles{AuthCert: n.Manager.CertPath(keys.Authentication),
			SigningCert: n.Manager.CertPath(keys.Signing)},
		KeyDir:     store.Dir(),
		MessageLog: filepath.Join(dir, "messagelog.db"),
		ConfigDB:   filepath.Join(dir, "config.db"),
		LogLevel:   "warn",
	}
	if configure != nil {
		configure(cfg, n)
	}
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	n.Server, err = server.New(cfg, server.Options{Keys: store, Source: n.Fetcher,
		OCSP: n.Stapler.Response, CheckOCSP: checker.Check,
		Stamper: &timestamp.Client{URL: conf.TSAs[0].URL, Roots: tsaRoots}})
	if err != nil {
		return nil, err
	}
	if err := n.Server.Start(); err != nil {
		n.Server.Shutdown(context.Background())
		return nil, err
	}
	srv := n.Server
	s.closers = append(s.closers, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	})
	return n, nil
}

// Close stops everything the sandbox started, newest first.
func (s *Sandbox) Close() error {
	s.cancel()
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.wg.Wait()
	if s.closePortal != nil {
		s.closePortal()
	}
	return nil
}

// x509Issuer returns the certification centre of the configuration, the
// issuer of every certificate in the sandbox.
func x509Issuer(c *globalconf.Conf) (*x509.Certificate, error) {
	if c == nil || len(c.CAs) == 0 {
		return nil, errors.New("the global configuration names no certification centre")
	}
	return x509.ParseCertificate(c.CAs[0].Cert)
}
