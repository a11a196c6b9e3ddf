package registry

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/internal/testpki"
	"github.com/qapi-az/qapi/portal/onboarding"
	"github.com/qapi-az/qapi/portal/wire"
)

// Monday 30 November 2026, 10:00 UTC. Seven working days later (3.2, 3.9)
// end with Wednesday 9 December.
var monday = time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)

// fixture is a registry on a fresh database with a settable clock and a
// record of the instances each change touched.
type fixture struct {
	*Registry
	now     time.Time
	changed []string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "reg.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &fixture{now: monday}
	f.Registry, err = Open(db, Options{Instances: []string{"AZ", "AZ-TEST"},
		Now:     func() time.Time { return f.now },
		Changed: func(inst string) { f.changed = append(f.changed, inst) }})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func systemApp() onboarding.SystemApplication {
	p := onboarding.Contact{Name: "Əli Məmmədov", WorkPhone: "+994 12 555 11 22",
		Mobile: "+994 50 555 11 22", Email: "ali@example.gov.az"}
	return onboarding.SystemApplication{
		Participant: "Ədliyyə Nazirliyi", VOEN: "1234567890",
		Status:       onboarding.StatusCentralExecutive,
		LegalAddress: "Bakı", ActualAddress: "Bakı",
		Basis:  onboarding.Basis{LegalAct: "Decision No. 118"},
		System: "Əhalinin Dövlət Reyestri", Resources: []string{"Reyestr"},
		RegistryExtract: "R-2026-17",
		Assessment:      onboarding.Assessment{Date: "2026-11-02", Result: "positive"},
		Responsible:     p, Support: []onboarding.Contact{p, p},
		Official: onboarding.Official{Name: "Vüqar Əliyev", Post: "Nazir müavini",
			Signature: "paper 2026/114", Date: "2026-11-20"},
	}
}

func contract() Contract {
	return Contract{Number: "C-17", Signed: "2026-12-01", Officials: []string{"V. Əliyev"},
		Services: []string{"population register"}, DataUsed: []string{"addresses"},
		ServerAdministrator: "R. Həsənov", RequestStructure: "X-Road 4.0",
		RestrictedInformation: "none", OtherTerms: "none"}
}

func serviceApp(provider string) onboarding.ServiceApplication {
	return onboarding.ServiceApplication{Participant: "Ədliyyə Nazirliyi",
		System: "Əhalinin Dövlət Reyestri", Provider: provider, LegalBasis: "Decision 118",
		Services: []onboarding.ServiceEntry{{Number: "1", Name: "Address", Code: "getAddress",
			Version: "v1", Regulation: "DRR-1", Responsible: "R. Həsənov",
			ResponsiblePhone: "+994 12 555 00 00"}},
		NotifyEmail: "it@example.gov.az", NotifyPhone: "+994 12 555 00 01",
		Official: onboarding.Official{Signature: "paper 2026/120", Date: "2026-12-02"}}
}

var (
	memberAZ = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1234567890"}
	subsysAZ = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1234567890",
		SubsystemCode: "REG"}
	other    = ident.Client{Instance: "AZ", MemberClass: "LOC", MemberCode: "2222222222"}
	stranger = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "9999999999"}
)

// approved is a fixture whose member memberAZ, with subsystem REG, came in
// through an approved annex 1 application.
func approved(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t)
	a, err := f.SubmitSystem(systemApp())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ApproveSystem(a.ID, "REG", contract()); err != nil {
		t.Fatal(err)
	}
	f.changed = nil
	return f
}

// connected is approved plus the connected service getAddress/v1 of REG.
func connected(t *testing.T) (*fixture, ident.Service) {
	t.Helper()
	f := approved(t)
	a, err := f.SubmitService(serviceApp(subsysAZ.String()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.RecordTest(a.ID, "passed"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ConnectServices(a.ID); err != nil {
		t.Fatal(err)
	}
	f.changed = nil
	return f, ident.Service{Client: subsysAZ, ServiceCode: "getAddress", Version: "v1"}
}

func wantErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("error %v, want none", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want one containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q, want one containing %q", err, want)
	}
}

func TestApproveSystem(t *testing.T) {
	tests := []struct {
		name      string
		change    func(*onboarding.SystemApplication)
		subsystem string
		contract  func(*Contract)
		wantErr   string
	}{
		{"approved", nil, "REG", nil, ""},
		{"negative assessment", func(a *onboarding.SystemApplication) {
			a.Assessment.Result = "negative"
		}, "REG", nil, "assessment is negative"},
		{"contract lacks its administrator", nil, "REG",
			func(c *Contract) { c.ServerAdministrator = " " }, "clause 3.3.4"},
		{"contract date unreadable", nil, "REG",
			func(c *Contract) { c.Signed = "01.12.2026" }, "contract.signed"},
		{"no subsystem code", nil, "", nil, "subsystem code"},
		{"subsystem code with a slash", nil, "A/B", nil, "subsystem code"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			sa := systemApp()
			if tt.change != nil {
				tt.change(&sa)
			}
			a, err := f.SubmitSystem(sa)
			if err != nil {
				t.Fatal(err)
			}
			if a.State != StatePending {
				t.Fatalf("submitted application is %s, want pending", a.State)
			}
			c := contract()
			if tt.contract != nil {
				tt.contract(&c)
			}
			got, err := f.ApproveSystem(a.ID, tt.subsystem, c)
			wantErr(t, err, tt.wantErr)
			if err != nil {
				// A refused approval changes nothing.
				if a, _ := f.Application(a.ID); a.State != StatePending {
					t.Errorf("after a refused approval the application is %s", a.State)
				}
				if ms, _ := f.Members(); len(ms) != 0 {
					t.Errorf("a refused approval registered %d members", len(ms))
				}
				return
			}
			if got.State != StateApproved || got.Member != memberAZ ||
				!got.Decided.Equal(monday) {
				t.Errorf("approved application = %+v", got)
			}
			// The member is registered in every instance (3.8.2's test
			// environment included) with the subsystem and the contract.
			for _, inst := range []string{"AZ", "AZ-TEST"} {
				id := memberAZ
				id.Instance = inst
				m, err := f.Member(id)
				if err != nil {
					t.Fatalf("member in %s: %v", inst, err)
				}
				if !m.Active() || !m.hasSubsystem("REG") || m.Contract == nil ||
					m.Contract.Number != "C-17" {
					t.Errorf("member in %s = %+v", inst, m)
				}
			}
			if !slices.Equal(f.changed, []string{"AZ", "AZ-TEST"}) {
				t.Errorf("changed instances = %v, want both", f.changed)
			}
		})
	}
}

func TestApplicationTransitions(t *testing.T) {
	// Each step runs on a fresh registry with one application of kind
	// system (pending) or service (testing), after the steps in before.
	type step func(f *fixture, id uint64) (Application, error)
	approve := func(f *fixture, id uint64) (Application, error) {
		return f.ApproveSystem(id, "REG", contract())
	}
	reject := func(f *fixture, id uint64) (Application, error) {
		return f.Reject(id, "test failed (3.10)")
	}
	test := func(f *fixture, id uint64) (Application, error) { return f.RecordTest(id, "ok") }
	connect := func(f *fixture, id uint64) (Application, error) {
		return f.ConnectServices(id)
	}
	tests := []struct {
		name    string
		kind    AppKind
		before  []step
		do      step
		want    AppState
		wantErr string
	}{
		{"reject pending system", AppSystem, nil, reject, StateRejected, ""},
		{"approve rejected system", AppSystem, []step{reject}, approve, "",
			"not a pending annex 1"},
		{"approve twice", AppSystem, []step{approve}, approve, "", "not a pending annex 1"},
		{"reject approved system", AppSystem, []step{approve}, reject, "", "already approved"},
		{"test a system application", AppSystem, nil, test, "", "not an annex 2"},
		{"approve a service application", AppService, nil, approve, "",
			"not a pending annex 1"},
		{"connect untested services", AppService, nil, connect, "",
			"record a passed test first"},
		{"record a passed test", AppService, nil, test, StateTested, ""},
		{"connect tested services", AppService, []step{test}, connect, StateConnected, ""},
		{"reject services in testing", AppService, nil, reject, StateRejected, ""},
		{"reject tested services", AppService, []step{test}, reject, StateRejected, ""},
		{"reject connected services", AppService, []step{test, connect}, reject, "",
			"already connected"},
		{"test twice", AppService, []step{test}, test, "", "not an annex 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := approved(t)
			var a Application
			var err error
			if tt.kind == AppSystem {
				sa := systemApp()
				sa.VOEN = "1111111111"
				a, err = f.SubmitSystem(sa)
			} else {
				a, err = f.SubmitService(serviceApp(subsysAZ.String()))
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tt.before {
				if _, err := s(f, a.ID); err != nil {
					t.Fatal(err)
				}
			}
			was, _ := f.Application(a.ID)
			got, err := tt.do(f, a.ID)
			wantErr(t, err, tt.wantErr)
			now, _ := f.Application(a.ID)
			if err != nil {
				if now.State != was.State {
					t.Errorf("a refused step moved the application from %s to %s",
						was.State, now.State)
				}
				return
			}
			if got.State != tt.want || now.State != tt.want {
				t.Errorf("state = %s (stored %s), want %s", got.State, now.State, tt.want)
			}
		})
	}
}

func TestUnknownApplication(t *testing.T) {
	f := newFixture(t)
	for name, do := range map[string]func() (Application, error){
		"approve": func() (Application, error) { return f.ApproveSystem(7, "REG", contract()) },
		"reject":  func() (Application, error) { return f.Reject(7, "no") },
		"test":    func() (Application, error) { return f.RecordTest(7, "") },
		"connect": func() (Application, error) { return f.ConnectServices(7) },
		"get":     func() (Application, error) { return f.Application(7) },
	} {
		if _, err := do(); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s of an unknown application: %v, want ErrNotFound", name, err)
		}
	}
	if _, err := f.Reject(7, " "); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("a rejection without a reason: %v, want the reason asked for", err)
	}
}

func TestDeadlines(t *testing.T) {
	// 7 working days after Monday 30 November end with Wednesday 9
	// December (3.2); a weekend in between does not count.
	due := time.Date(2026, 12, 10, 0, 0, 0, 0, time.UTC).Add(-time.Nanosecond)
	tests := []struct {
		name        string
		service     bool
		tested      bool
		decide      bool // approve or connect before looking
		at          time.Time
		wantDue     time.Time
		wantOverdue bool
	}{
		{"annex 1 on its last day", false, false, false, due, due, false},
		{"annex 1 a moment late", false, false, false, due.Add(time.Nanosecond), due, true},
		{"annex 1 decided, then late", false, false, true, due.Add(time.Hour), due, false},
		// While the participant tests (3.8.2), the operator has no deadline.
		{"annex 2 in testing", true, false, false, monday.AddDate(1, 0, 0), time.Time{},
			false},
		// Tested on Monday: 3.9's 7 working days start then.
		{"annex 2 tested, in time", true, true, false, due, due, false},
		{"annex 2 tested, late", true, true, false, due.Add(time.Minute), due, true},
		{"annex 2 connected, then late", true, true, true, due.Add(time.Hour), due, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := approved(t)
			var a Application
			var err error
			if tt.service {
				a, err = f.SubmitService(serviceApp(subsysAZ.String()))
			} else {
				sa := systemApp()
				sa.VOEN = "1111111111"
				a, err = f.SubmitSystem(sa)
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.tested {
				if _, err := f.RecordTest(a.ID, "ok"); err != nil {
					t.Fatal(err)
				}
			}
			if tt.decide {
				f.now = tt.at.Add(-2 * time.Hour)
				if tt.service {
					_, err = f.ConnectServices(a.ID)
				} else {
					_, err = f.ApproveSystem(a.ID, "SYS2", contract())
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			f.now = tt.at
			got, err := f.Application(a.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Due.Equal(tt.wantDue) || got.Overdue != tt.wantOverdue {
				t.Errorf("due %s overdue %v, want %s %v", got.Due, got.Overdue, tt.wantDue,
					tt.wantOverdue)
			}
		})
	}
}

func TestSubmitServiceProvider(t *testing.T) {
	tests := []struct {
		name     string
		provider ident.Client
		wantErr  string
	}{
		{"registered subsystem", subsysAZ, ""},
		{"registered member", memberAZ, ""},
		{"unknown subsystem", ident.Client{Instance: "AZ", MemberClass: "GOV",
			MemberCode: "1234567890", SubsystemCode: "NOPE"}, "not registered and active"},
		{"unknown member", stranger, "not registered and active"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := approved(t)
			a, err := f.SubmitService(serviceApp(tt.provider.String()))
			wantErr(t, err, tt.wantErr)
			if err == nil && (a.State != StateTesting || !a.Due.IsZero()) {
				t.Errorf("submitted annex 2 application = %+v, want testing, no due", a)
			}
		})
	}
}

func TestConnectServicesListsThem(t *testing.T) {
	f, svc := connected(t)
	svcs, err := f.Services()
	if err != nil {
		t.Fatal(err)
	}
	if len(svcs) != 1 || svcs[0].ID != svc || svcs[0].Application == 0 ||
		!svcs[0].Connected.Equal(monday) {
		t.Errorf("services = %+v, want %s connected now", svcs, svc)
	}
}

func TestBlock(t *testing.T) {
	tests := []struct {
		name       string
		client     ident.Client
		clause     string
		wantErr    string
		wantBreach bool
	}{
		{"slows the portal", memberAZ, "3.7.1", "", false},
		{"a subsystem breaches security", subsysAZ, "3.7.2", "", true},
		{"no ground", memberAZ, "3.7", "clause 3.7.1 or 3.7.2", false},
		{"unknown member", stranger, "3.7.1", "not found", false},
		{"unknown subsystem of a member", ident.Client{Instance: "AZ", MemberClass: "GOV",
			MemberCode: "1234567890", SubsystemCode: "NOPE"}, "3.7.1", "no subsystem NOPE",
			false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := approved(t)
			b, br, err := f.BlockClient(tt.client, tt.clause, "flooded the portal")
			wantErr(t, err, tt.wantErr)
			blocks, _ := f.Blocks()
			if err != nil {
				if len(blocks) != 0 || len(f.changed) != 0 {
					t.Errorf("a refused block left %v and changed %v", blocks, f.changed)
				}
				return
			}
			if b.Client != tt.client || !b.Since.Equal(monday) || b.Clause != tt.clause {
				t.Errorf("block = %+v", b)
			}
			if len(blocks) != 1 || blocks[0].Client != tt.client {
				t.Errorf("blocks = %+v", blocks)
			}
			if !slices.Equal(f.changed, []string{"AZ"}) {
				t.Errorf("changed = %v, want AZ", f.changed)
			}
			// Clause 3.7.2: a written notice (3.6) follows the block.
			if got := br != nil; got != tt.wantBreach {
				t.Fatalf("breach notice %v, want one: %v", br, tt.wantBreach)
			}
			if br != nil && (br.Member != memberAZ || br.State != "open" ||
				!br.RemedyBy.Equal(monday.AddDate(0, 1, 0))) {
				t.Errorf("breach notice = %+v", br)
			}

			if err := f.Unblock(tt.client); err != nil {
				t.Fatal(err)
			}
			if blocks, _ := f.Blocks(); len(blocks) != 0 {
				t.Errorf("after Unblock blocks = %+v", blocks)
			}
			if err := f.Unblock(tt.client); !errors.Is(err, ErrNotFound) {
				t.Errorf("second Unblock = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestDisconnect(t *testing.T) {
	month := monday.AddDate(0, 1, 0)
	tests := []struct {
		name      string
		member    ident.Client
		dissolved bool
		remedied  bool      // the breach notice was closed first
		at        time.Time // when the operator disconnects
		wantErr   string
	}{
		{"dissolved (3.5)", memberAZ, true, false, monday, ""},
		{"breach unremedied after a month (3.6)", memberAZ, false, false, month, ""},
		{"breach within its month", memberAZ, false, false, month.Add(-time.Second),
			"clause 3.6 gives"},
		{"breach remedied", memberAZ, false, true, month, "is remedied"},
		{"breach notice to another member", other, false, false, month, "is to"},
		{"unknown member dissolved", stranger, true, false, monday, "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := approved(t)
			if err := f.AddMember(Member{ID: other, Name: "Other"}); err != nil {
				t.Fatal(err)
			}
			f.changed = nil
			br, err := f.NoticeBreach(memberAZ, "personal data sent in the clear")
			if err != nil {
				t.Fatal(err)
			}
			if tt.remedied {
				if _, err := f.Remedied(br.ID); err != nil {
					t.Fatal(err)
				}
			}
			f.now = tt.at
			var id uint64
			if !tt.dissolved {
				id = br.ID
			}
			err = f.Disconnect(tt.member, tt.dissolved, id)
			wantErr(t, err, tt.wantErr)
			for _, inst := range []string{"AZ", "AZ-TEST"} {
				m := memberAZ
				m.Instance = inst
				got, err := f.Member(m)
				if err != nil {
					t.Fatal(err)
				}
				if got.Active() != (tt.wantErr != "") {
					t.Errorf("%s active = %v after %v", inst, got.Active(), err)
				}
			}
			if tt.wantErr != "" {
				return
			}
			if !slices.Equal(f.changed, []string{"AZ", "AZ-TEST"}) {
				t.Errorf("changed = %v, want both instances", f.changed)
			}
			if brs, _ := f.Breaches(); !tt.dissolved && brs[0].State != "disconnected" {
				t.Errorf("breach notice = %+v, want disconnected", brs[0])
			}
			// A disconnected member cannot bring services any more.
			if _, err := f.SubmitService(serviceApp(subsysAZ.String())); err == nil {
				t.Error("a disconnected member's annex 2 application was accepted")
			}
		})
	}
}

func TestBreachNotice(t *testing.T) {
	f := approved(t)
	if _, err := f.NoticeBreach(memberAZ, "  "); err == nil {
		t.Error("a breach notice without text was accepted")
	}
	if _, err := f.NoticeBreach(stranger, "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a notice to an unknown member: %v, want ErrNotFound", err)
	}
	br, err := f.NoticeBreach(subsysAZ, "late patches")
	if err != nil {
		t.Fatal(err)
	}
	if br.Member != memberAZ {
		t.Errorf("notice to a subsystem went to %s, want its member", br.Member)
	}
	if _, err := f.Remedied(br.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Remedied(br.ID); err == nil {
		t.Error("a breach was remedied twice")
	}
	if _, err := f.Remedied(99); !errors.Is(err, ErrNotFound) {
		t.Errorf("Remedied(99) = %v, want ErrNotFound", err)
	}
}

func TestAnnounceDisconnect(t *testing.T) {
	month := monday.AddDate(0, 1, 0)
	tests := []struct {
		name      string
		svc       func(ident.Service) ident.Service
		effective time.Time
		text      string
		wantErr   string
	}{
		{"a month ahead (3.14)", nil, month, "system retired", ""},
		{"a day short of a month", nil, month.Add(-24 * time.Hour), "system retired",
			"at least one month"},
		{"no reason (3.13)", nil, month, " ", "reason"},
		{"unknown service", func(s ident.Service) ident.Service {
			s.Version = "v9"
			return s
		}, month, "system retired", "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, svc := connected(t)
			if tt.svc != nil {
				svc = tt.svc(svc)
			}
			n, err := f.AnnounceDisconnect(svc, tt.effective, tt.text)
			wantErr(t, err, tt.wantErr)
			notices, _ := f.Notices()
			if err != nil {
				if len(notices) != 0 {
					t.Errorf("a refused announcement left notices %+v", notices)
				}
				return
			}
			if n.Kind != globalconf.NoticeDisconnect || n.Service != svc ||
				!n.Effective.Equal(month) || len(notices) != 1 {
				t.Errorf("notice %+v, notices %+v", n, notices)
			}
			svcs, _ := f.Services()
			if !svcs[0].Disconnects.Equal(month) {
				t.Errorf("service disconnects at %s, want %s", svcs[0].Disconnects, month)
			}
			if !slices.Equal(f.changed, []string{"AZ"}) {
				t.Errorf("changed = %v, want AZ", f.changed)
			}
		})
	}
}

func TestAnnounceVersion(t *testing.T) {
	version := func(s ident.Service, v string) ident.Service { s.Version = v; return s }
	tests := []struct {
		name      string
		newer     func(ident.Service) ident.Service
		older     func(ident.Service) ident.Service
		endOfLife time.Time
		wantErr   string
	}{
		{"v1 replaces v0 (3.12)", nil, func(s ident.Service) ident.Service {
			return version(s, "v0")
		}, monday.AddDate(0, 3, 0), ""},
		{"same version", nil, nil, monday.AddDate(0, 3, 0), "another version"},
		{"other service", nil, func(s ident.Service) ident.Service {
			s.ServiceCode = "getName"
			return s
		}, monday.AddDate(0, 3, 0), "another version"},
		{"new version not connected", func(s ident.Service) ident.Service {
			return version(s, "v2")
		}, nil, monday.AddDate(0, 3, 0), "not connected"},
		{"end of life passed", nil, func(s ident.Service) ident.Service {
			return version(s, "v0")
		}, monday, "in the future"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, svc := connected(t)
			newer, older := svc, svc
			if tt.newer != nil {
				newer = tt.newer(svc)
			}
			if tt.older != nil {
				older = tt.older(svc)
			}
			ns, err := f.AnnounceVersion(newer, older, tt.endOfLife, "use v1")
			wantErr(t, err, tt.wantErr)
			stored, _ := f.Notices()
			if err != nil {
				if len(stored) != 0 {
					t.Errorf("a refused announcement left notices %+v", stored)
				}
				return
			}
			if len(ns) != 2 || len(stored) != 2 ||
				ns[0].Kind != globalconf.NoticeNewVersion || ns[0].Service != newer ||
				ns[1].Kind != globalconf.NoticeEndOfLife || ns[1].Service != older ||
				!ns[1].Effective.Equal(tt.endOfLife) {
				t.Errorf("notices %+v, stored %+v", ns, stored)
			}
		})
	}
}

func TestRejectServerNeedsReason(t *testing.T) {
	f := approved(t)
	ca, err := testpki.NewCA("cc")
	if err != nil {
		t.Fatal(err)
	}
	auth, err := ca.IssueAuth(memberAZ, "SS1")
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.SubmitServer(wire.ServerRegistration{Owner: memberAZ, Code: "SS1",
		Address: "ss1.example.az:5500"}, auth.Cert)
	if err != nil {
		t.Fatal(err)
	}
	for _, reason := range []string{"", "  \t"} {
		_, err := f.RejectServer(s.ID, reason)
		wantErr(t, err, "needs a reason")
	}
	if got, _ := f.Server(s.ID); got.State != "pending" {
		t.Errorf("after refused rejections the registration is %s, want pending", got.State)
	}
	got, err := f.RejectServer(s.ID, "address is not the agency's")
	if err != nil || got.State != "rejected" || got.Reason != "address is not the agency's" {
		t.Errorf("RejectServer with a reason = %+v, %v", got, err)
	}
}

// corrupt stores an unreadable record for member id, so that the step of
// an operation that reads it fails half-way.
func (f *fixture) corrupt(t *testing.T, id ident.Client) {
	t.Helper()
	err := f.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMembers).Put([]byte(id.String()), []byte("{"))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestApproveSystemAllOrNothing(t *testing.T) {
	f := newFixture(t)
	a, err := f.SubmitSystem(systemApp())
	if err != nil {
		t.Fatal(err)
	}
	// Registering the member fails in the second instance.
	testID := memberAZ
	testID.Instance = "AZ-TEST"
	f.corrupt(t, testID)
	if _, err := f.ApproveSystem(a.ID, "REG", contract()); err == nil {
		t.Fatal("ApproveSystem succeeded over an unreadable member record")
	}
	if got, _ := f.Application(a.ID); got.State != StatePending {
		t.Errorf("after a failed registration the application is %s, want pending",
			got.State)
	}
	if _, err := f.Member(memberAZ); !errors.Is(err, ErrNotFound) {
		t.Errorf("after a failed approval the member in AZ: %v, want ErrNotFound", err)
	}
	if len(f.changed) != 0 {
		t.Errorf("a failed approval changed %v", f.changed)
	}

	// Once the record is mended, the same approval goes through.
	f.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMembers).Delete([]byte(testID.String()))
	})
	if got, err := f.ApproveSystem(a.ID, "REG", contract()); err != nil ||
		got.State != StateApproved {
		t.Fatalf("ApproveSystem after the repair = %+v, %v", got, err)
	}
	if m, err := f.Member(testID); err != nil || !m.hasSubsystem("REG") {
		t.Errorf("member in AZ-TEST after approval = %+v, %v", m, err)
	}
}

func TestDisconnectAllOrNothing(t *testing.T) {
	f := approved(t)
	br, err := f.NoticeBreach(memberAZ, "personal data sent in the clear")
	if err != nil {
		t.Fatal(err)
	}
	f.now = monday.AddDate(0, 1, 0)
	testID := memberAZ
	testID.Instance = "AZ-TEST"
	f.corrupt(t, testID)
	if err := f.Disconnect(memberAZ, false, br.ID); err == nil {
		t.Fatal("Disconnect succeeded over an unreadable member record")
	}
	if brs, _ := f.Breaches(); brs[0].State != "open" {
		t.Errorf("after a failed disconnection the breach notice is %s, want open",
			brs[0].State)
	}
	if m, _ := f.Member(memberAZ); !m.Active() {
		t.Error("after a failed disconnection the member in AZ is disconnected")
	}
	if len(f.changed) != 0 {
		t.Errorf("a failed disconnection changed %v", f.changed)
	}
}

// TestServiceDisconnectedAfterDate: a service whose announced date (3.14)
// has passed counts as disconnected, and a new version cannot be announced
// against it.
func TestServiceDisconnectedAfterDate(t *testing.T) {
	f, svc := connected(t)
	date := monday.AddDate(0, 1, 0)
	if _, err := f.AnnounceDisconnect(svc, date, "system retired"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		now  time.Time
		want bool
	}{{date.Add(-time.Second), false}, {date, true}, {date.AddDate(1, 0, 0), true}} {
		f.now = tt.now
		svcs, err := f.Services()
		if err != nil {
			t.Fatal(err)
		}
		if got := svcs[0].DisconnectedAt(f.now); got != tt.want {
			t.Errorf("DisconnectedAt(%s) = %v, want %v", tt.now, got, tt.want)
		}
	}
	older := svc
	older.Version = "v0"
	_, err := f.AnnounceVersion(svc, older, f.now.AddDate(0, 3, 0), "use v1")
	wantErr(t, err, "not connected")
}
