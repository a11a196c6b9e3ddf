package registry

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/portal/onboarding"
)

// AppKind says which annex an application follows.
type AppKind string

// Kinds of applications.
const (
	AppSystem  AppKind = "system"  // annex 1, clause 3.1
	AppService AppKind = "service" // annex 2, clause 3.8.1
)

// AppState is where an application stands.
type AppState string

// States of an application. An annex 1 application goes pending, then
// approved or rejected (3.2, 3.4). An annex 2 application goes testing
// (3.8.2), then tested (the 7 working days of 3.9 start) and connected, or
// rejected when its test fails (3.10).
const (
	StatePending   AppState = "pending"
	StateApproved  AppState = "approved"
	StateRejected  AppState = "rejected"
	StateTesting   AppState = "testing"
	StateTested    AppState = "tested"
	StateConnected AppState = "connected"
)

// WorkingDaysToDecide is the operator's deadline of clauses 3.2 and 3.9.
const WorkingDaysToDecide = 7

// Application is an annex 1 or annex 2 application and its handling.
type Application struct {
	ID       uint64    `json:"id"`
	Kind     AppKind   `json:"kind"`
	Received time.Time `json:"received"`
	// Due is when the operator's current duty ends: the check of 3.2 for
	// annex 1, the connection of 3.9 once tested for annex 2. Zero while
	// the duty is the participant's (testing).
	Due     time.Time                      `json:"due,omitzero"`
	State   AppState                       `json:"state"`
	Decided time.Time                      `json:"decided,omitzero"`
	Reason  string                         `json:"reason,omitempty"`
	System  *onboarding.SystemApplication  `json:"system,omitempty"`
	Service *onboarding.ServiceApplication `json:"service,omitempty"`
	// Member and Subsystem are what approval registered (annex 1).
	Member ident.Client `json:"member,omitzero"`
	// Contract is the connection contract of 3.3, recorded at approval.
	Contract *Contract `json:"contract,omitempty"`
	// Overdue is computed when listing: the duty is open past Due.
	Overdue bool `json:"overdue,omitempty"`
}

// Contract is the connection contract the operator and the participant
// sign after a positive check (3.2), with the contents clause 3.3 lists.
type Contract struct {
	Number string `json:"number"`
	// Signed is the date of signature, 2006-01-02.
	Signed string `json:"signed"`
	// Officials are the officials authorised to exchange data (3.3.1).
	Officials []string `json:"officials"`
	// Services are the e-services provided through the portal (3.3.2).
	Services []string `json:"services"`
	// DataUsed is the data the participant uses through the portal (3.3.3).
	DataUsed []string `json:"dataUsed"`
	// ServerAdministrator is the person responsible for the security
	// server (3.3.4).
	ServerAdministrator string `json:"serverAdministrator"`
	// RequestStructure describes the electronic requests sent (3.3.5).
	RequestStructure string `json:"requestStructure"`
	// RestrictedInformation says whether and how restricted information
	// may be used (3.3.6); "none" when it may not.
	RestrictedInformation string `json:"restrictedInformation"`
	// OtherTerms are the other terms of the exchange (3.3.7); "none" when
	// there are none.
	OtherTerms string `json:"otherTerms"`
}

// Validate names every missing part of the contract by clause.
func (c *Contract) Validate() error {
	var errs onboarding.FieldErrors
	need := func(field, clause string, ok bool) {
		if !ok {
			errs = append(errs, &onboarding.FieldError{Field: "contract." + field,
				Problem: "is required (clause " + clause + ")"})
		}
	}
	full := func(s string) bool { return strings.TrimSpace(s) != "" }
	need("number", "3.2", full(c.Number))
	if _, err := time.Parse(time.DateOnly, c.Signed); err != nil {
		errs = append(errs, &onboarding.FieldError{Field: "contract.signed", Value: c.Signed,
			Problem: "is not a date written as 2026-01-31"})
	}
	need("officials", "3.3.1", len(c.Officials) > 0)
	need("services", "3.3.2", len(c.Services) > 0)
	need("dataUsed", "3.3.3", len(c.DataUsed) > 0)
	need("serverAdministrator", "3.3.4", full(c.ServerAdministrator))
	need("requestStructure", "3.3.5", full(c.RequestStructure))
	need("restrictedInformation", "3.3.6", full(c.RestrictedInformation))
	need("otherTerms", "3.3.7", full(c.OtherTerms))
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// SubmitSystem records an annex 1 application after validating it, with
// the 7 working days of clause 3.2 starting at receipt.
func (r *Registry) SubmitSystem(a onboarding.SystemApplication) (Application, error) {
	if err := a.Validate(); err != nil {
		return Application{}, fmt.Errorf("annex 1 application is incomplete:\n%w", err)
	}
	now := r.opts.Now().UTC()
	app := Application{Kind: AppSystem, Received: now, State: StatePending, System: &a,
		Due: r.opts.Calendar.AddWorkingDays(now, WorkingDaysToDecide)}
	err := insert(r.db, bucketApps, &app, func(a *Application, id uint64) { a.ID = id })
	return app, err
}

// SubmitService records an annex 2 application after validating it. The
// provider must be a registered member or subsystem. The application
// starts in testing: the participant tries the services in the test
// instance with test data (3.8.2).
func (r *Registry) SubmitService(a onboarding.ServiceApplication) (Application, error) {
	if err := a.Validate(); err != nil {
		return Application{}, fmt.Errorf("annex 2 application is incomplete:\n%w", err)
	}
	prov, _ := ident.ParseClient(a.Provider)
	m, err := r.Member(prov)
	if err != nil || !m.Active() ||
		(prov.SubsystemCode != "" && !m.hasSubsystem(prov.SubsystemCode)) {
		return Application{}, fmt.Errorf("annex 2 provider %s is not registered and active; "+
			"its annex 1 application must be approved first", prov)
	}
	app := Application{Kind: AppService, Received: r.opts.Now().UTC(), State: StateTesting,
		Service: &a}
	err = insert(r.db, bucketApps, &app, func(a *Application, id uint64) { a.ID = id })
	return app, err
}

// Applications lists all applications, oldest first, with Overdue set.
func (r *Registry) Applications() ([]Application, error) {
	apps, err := list[Application](r.db, bucketApps)
	now := r.opts.Now()
	for i := range apps {
		apps[i].Overdue = apps[i].open() && !apps[i].Due.IsZero() && now.After(apps[i].Due)
	}
	return apps, err
}

func (a *Application) open() bool { return a.State == StatePending || a.State == StateTested }

// Application returns one application.
func (r *Registry) Application(id uint64) (Application, error) {
	apps, err := r.Applications()
	if err != nil {
		return Application{}, err
	}
	for _, a := range apps {
		if a.ID == id {
			return a, nil
		}
	}
	return Application{}, fmt.Errorf("application %d: %w", id, ErrNotFound)
}

// ApproveSystem approves a pending annex 1 application after a positive
// check (3.2): it records the contract (3.3) and registers the participant
// as member CLASS/VOEN, with the status's member class, and the system as
// subsystem subsystemCode, in every instance. The approval and the
// registration commit together or not at all, so a failure leaves the
// application pending and the approval can be tried again.
func (r *Registry) ApproveSystem(id uint64, subsystemCode string, c Contract) (
	Application, error) {
	if err := c.Validate(); err != nil {
		return Application{}, fmt.Errorf("the connection contract is incomplete:\n%w", err)
	}
	if subsystemCode == "" || strings.ContainsAny(subsystemCode, "/ ") {
		return Application{}, fmt.Errorf("subsystem code %q must be non-empty, "+
			"without '/' or spaces", subsystemCode)
	}
	var app Application
	err := r.db.Update(func(tx *bbolt.Tx) error {
		var err error
		app, err = updateTx(tx, bucketApps, itob(id), fmt.Sprintf("application %d", id),
			func(a *Application) error {
				if a.Kind != AppSystem || a.State != StatePending {
					return fmt.Errorf("application %d is a %s application in state %s, "+
						"not a pending annex 1 application", id, a.Kind, a.State)
				}
				if a.System.Assessment.Result != "positive" {
					return errors.New("the system's assessment is negative: reject the " +
						"application (3.4) or wait for a positive assessment")
				}
				a.State, a.Decided, a.Contract = StateApproved, r.opts.Now().UTC(), &c
				a.Member = ident.Client{Instance: r.opts.Instances[0],
					MemberClass: a.System.Status.MemberClass(), MemberCode: a.System.VOEN}
				return nil
			})
		if err != nil {
			return err
		}
		return r.addMemberTx(tx, Member{ID: app.Member, Name: app.System.Participant,
			VOEN: app.System.VOEN, Status: app.System.Status, Contract: &c,
			Subsystems: []Subsystem{{Code: subsystemCode, Name: app.System.System,
				Application: id}}})
	})
	if err != nil {
		return Application{}, err
	}
	r.changed(r.opts.Instances...)
	return app, nil
}

// Reject refuses an open application (3.4, 3.10) with a reason the
// participant is told.
func (r *Registry) Reject(id uint64, reason string) (Application, error) {
	if strings.TrimSpace(reason) == "" {
		return Application{}, errors.New("a rejection needs a reason for the participant")
	}
	return update(r.db, bucketApps, itob(id), fmt.Sprintf("application %d", id),
		func(a *Application) error {
			if a.State != StatePending && a.State != StateTesting && a.State != StateTested {
				return fmt.Errorf("application %d is already %s", id, a.State)
			}
			a.State, a.Decided, a.Reason = StateRejected, r.opts.Now().UTC(), reason
			return nil
		})
}

// RecordTest records that the services of an annex 2 application passed
// their test in the test instance (3.8.2); the 7 working days of 3.9 to
// connect them start now. A failed test is a Reject (3.10).
func (r *Registry) RecordTest(id uint64, note string) (Application, error) {
	return update(r.db, bucketApps, itob(id), fmt.Sprintf("application %d", id),
		func(a *Application) error {
			if a.Kind != AppService || a.State != StateTesting {
				return fmt.Errorf("application %d is a %s application in state %s, "+
					"not an annex 2 application in testing", id, a.Kind, a.State)
			}
			now := r.opts.Now().UTC()
			a.State, a.Reason = StateTested, note
			a.Due = r.opts.Calendar.AddWorkingDays(now, WorkingDaysToDecide)
			return nil
		})
}

// ConnectServices connects the services of a tested annex 2 application
// (3.9): they enter the registry's service list in production.
func (r *Registry) ConnectServices(id uint64) (Application, error) {
	app, err := update(r.db, bucketApps, itob(id), fmt.Sprintf("application %d", id),
		func(a *Application) error {
			if a.Kind != AppService || a.State != StateTested {
				return fmt.Errorf("application %d is in state %s; record a passed test "+
					"first (3.8.2, 3.9)", id, a.State)
			}
			a.State, a.Decided = StateConnected, r.opts.Now().UTC()
			return nil
		})
	if err != nil {
		return app, err
	}
	prov, _ := ident.ParseClient(app.Service.Provider)
	for _, e := range app.Service.Services {
		s := Service{ID: ident.Service{Client: prov, ServiceCode: e.Code, Version: e.Version},
			Name: e.Name, Regulation: e.Regulation, Responsible: e.Responsible,
			ResponsiblePhone: e.ResponsiblePhone, Application: id,
			Connected: app.Decided}
		if err := r.putService(s); err != nil {
			return app, err
		}
	}
	return app, nil
}
