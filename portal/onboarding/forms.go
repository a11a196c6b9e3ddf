// Package onboarding holds the application forms a participant hands the
// operator (annex 1 for an information system, clause 3.1; annex 2 for its
// e-services, clause 3.8.1), checks them field by field, and counts the
// working days the operator has to decide (clauses 3.2 and 3.9).
//
// Validation errors name the field in the form's JSON path, as in
// support[1].email: "x@" is not an e-mail address, so that a person can
// find and fix each one.
package onboarding

import (
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode"

	"github.com/qapi-az/qapi/appliance/ident"
)

// Status is the legal status of a participant (annex 1).
type Status string

// Statuses annex 1 offers.
const (
	StatusCentralExecutive Status = "central-executive-body"
	StatusLocalExecutive   Status = "local-executive-body"
	StatusMunicipality     Status = "municipality"
	StatusOther            Status = "other"
)

// MemberClass returns the member class the registry gives a participant
// of status s: GOV, LOC, MUN or OTH.
func (s Status) MemberClass() string {
	switch s {
	case StatusCentralExecutive:
		return "GOV"
	case StatusLocalExecutive:
		return "LOC"
	case StatusMunicipality:
		return "MUN"
	}
	return "OTH"
}

// Contact is a person the operator can reach (annex 1).
type Contact struct {
	Name      string `json:"name"`
	WorkPhone string `json:"workPhone"`
	Mobile    string `json:"mobile"`
	Email     string `json:"email"`
}

// Official is the participant's authorised official who signs a form.
type Official struct {
	Name string `json:"name,omitempty"`
	Post string `json:"post,omitempty"`
	// Signature identifies the signature on the form as received: the
	// number of the signed paper in the operator's records, or an
	// electronic-signature value.
	Signature string `json:"signature"`
	// Date is the date of signature, 2006-01-02.
	Date string `json:"date"`
}

// Basis is the ground on which a system connects (annex 1): a legal act,
// another ground, or both, with notes.
type Basis struct {
	LegalAct string `json:"legalAct,omitempty"`
	Other    string `json:"other,omitempty"`
	Notes    string `json:"notes,omitempty"`
}

// Assessment is the result of the system's assessment (annex 1).
type Assessment struct {
	// Date is 2006-01-02.
	Date string `json:"date"`
	// Result is "positive" or "negative".
	Result string `json:"result"`
}

// SystemApplication is the annex 1 form: a participant applies to connect
// an information system (clause 3.1).
type SystemApplication struct {
	Participant string `json:"participant"`
	// VOEN is the participant's 10-digit tax identification number.
	VOEN          string `json:"voen"`
	Status        Status `json:"status"`
	LegalAddress  string `json:"legalAddress"`
	ActualAddress string `json:"actualAddress"`
	Basis         Basis  `json:"basis"`
	// System is the full name of the information system.
	System string `json:"system"`
	// Resources are the full names of its information resources.
	Resources       []string   `json:"resources"`
	RegistryExtract string     `json:"registryExtract"`
	Assessment      Assessment `json:"assessment"`
	// Responsible is the person responsible for connecting.
	Responsible Contact `json:"responsible"`
	// Support are the technical-support persons, at least two.
	Support  []Contact `json:"support"`
	Official Official  `json:"official"`
}

// ServiceEntry is one e-service of an annex 2 form.
type ServiceEntry struct {
	Number string `json:"number"`
	Name   string `json:"name"`
	// Code is the serviceCode the service has in the exchange, and
	// Version its serviceVersion (optional).
	Code    string `json:"code"`
	Version string `json:"version,omitempty"`
	// Regulation is the administrative regulation's number in the State
	// Register of Legal Acts.
	Regulation       string `json:"regulation"`
	Responsible      string `json:"responsible"`
	ResponsiblePhone string `json:"responsiblePhone"`
}

// ServiceApplication is the annex 2 form: a participant applies to connect
// e-services of an information system (clause 3.8.1).
type ServiceApplication struct {
	Participant string `json:"participant"`
	System      string `json:"system"`
	// Provider is the subsystem (or member) that provides the services,
	// INSTANCE/CLASS/CODE[/SUBSYSTEM].
	Provider    string         `json:"provider"`
	LegalBasis  string         `json:"legalBasis"`
	Services    []ServiceEntry `json:"services"`
	NotifyEmail string         `json:"notifyEmail"`
	NotifyPhone string         `json:"notifyPhone"`
	Official    Official       `json:"official"`
}

// FieldError is one problem with one field of a form.
type FieldError struct {
	// Field is the JSON path, for example support[1].email.
	Field string
	// Value is what the form held; empty for a missing field.
	Value string
	// Problem says what is wrong, for example "is not an e-mail address".
	Problem string
}

func (e *FieldError) Error() string {
	if e.Value == "" {
		return e.Field + ": " + e.Problem
	}
	return fmt.Sprintf("%s: %q %s", e.Field, e.Value, e.Problem)
}

// FieldErrors are all the problems found in one form, in field order.
type FieldErrors []*FieldError

func (es FieldErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

type checker struct{ errs FieldErrors }

func (c *checker) fail(field, value, problem string) {
	c.errs = append(c.errs, &FieldError{Field: field, Value: value, Problem: problem})
}

func (c *checker) required(field, v string) bool {
	if strings.TrimSpace(v) == "" {
		c.fail(field, "", "is required")
		return false
	}
	return true
}

func (c *checker) email(field, v string) {
	if !c.required(field, v) {
		return
	}
	a, err := mail.ParseAddress(v)
	if err != nil || a.Address != v || a.Name != "" ||
		!strings.Contains(v[strings.LastIndexByte(v, '@')+1:], ".") {
		c.fail(field, v, "is not an e-mail address")
	}
}

// phone accepts an optional leading +, digits, spaces, hyphens and
// brackets, with 7 to 15 digits (E.164 allows at most 15).
func (c *checker) phone(field, v string) {
	if !c.required(field, v) {
		return
	}
	digits := 0
	for i, r := range v {
		switch {
		case unicode.IsDigit(r) && r < 0x80:
			digits++
		case r == '+' && i == 0, r == ' ', r == '-', r == '(', r == ')':
		default:
			c.fail(field, v, "is not a phone number (digits, spaces, -, () and a leading +)")
			return
		}
	}
	if digits < 7 || digits > 15 {
		c.fail(field, v, "is not a phone number (it needs 7 to 15 digits)")
	}
}

func (c *checker) date(field, v string) {
	if !c.required(field, v) {
		return
	}
	if _, err := time.Parse(time.DateOnly, v); err != nil {
		c.fail(field, v, "is not a date written as 2026-01-31")
	}
}

func (c *checker) contact(field string, p Contact) {
	c.required(field+".name", p.Name)
	c.phone(field+".workPhone", p.WorkPhone)
	c.phone(field+".mobile", p.Mobile)
	c.email(field+".email", p.Email)
}

func (c *checker) official(field string, o Official, needNamePost bool) {
	if needNamePost {
		c.required(field+".name", o.Name)
		c.required(field+".post", o.Post)
	}
	c.required(field+".signature", o.Signature)
	c.date(field+".date", o.Date)
}

func (c *checker) result() error {
	if len(c.errs) == 0 {
		return nil
	}
	return c.errs
}

// Validate checks every field of the annex 1 form and returns nil or
// FieldErrors listing each problem.
func (a *SystemApplication) Validate() error {
	var c checker
	c.required("participant", a.Participant)
	if c.required("voen", a.VOEN) {
		if len(a.VOEN) != 10 || strings.TrimFunc(a.VOEN, func(r rune) bool {
			return r >= '0' && r <= '9'
		}) != "" {
			c.fail("voen", a.VOEN, "is not a VÖEN (10 digits)")
		}
	}
	switch a.Status {
	case StatusCentralExecutive, StatusLocalExecutive, StatusMunicipality, StatusOther:
	case "":
		c.fail("status", "", "is required")
	default:
		c.fail("status", string(a.Status), "is not one of central-executive-body, "+
			"local-executive-body, municipality, other")
	}
	c.required("legalAddress", a.LegalAddress)
	c.required("actualAddress", a.ActualAddress)
	if strings.TrimSpace(a.Basis.LegalAct) == "" && strings.TrimSpace(a.Basis.Other) == "" {
		c.fail("basis", "", "needs a legal act or another ground (basis.legalAct or basis.other)")
	}
	c.required("system", a.System)
	if len(a.Resources) == 0 {
		c.fail("resources", "", "needs at least one information resource")
	}
	for i, r := range a.Resources {
		c.required(fmt.Sprintf("resources[%d]", i), r)
	}
	c.required("registryExtract", a.RegistryExtract)
	c.date("assessment.date", a.Assessment.Date)
	switch a.Assessment.Result {
	case "positive", "negative":
	case "":
		c.fail("assessment.result", "", "is required")
	default:
		c.fail("assessment.result", a.Assessment.Result, "is not positive or negative")
	}
	c.contact("responsible", a.Responsible)
	if len(a.Support) < 2 {
		c.fail("support", "", fmt.Sprintf(
			"needs at least two technical-support persons, has %d", len(a.Support)))
	}
	for i, p := range a.Support {
		c.contact(fmt.Sprintf("support[%d]", i), p)
	}
	c.official("official", a.Official, true)
	return c.result()
}

// Validate checks every field of the annex 2 form and returns nil or
// FieldErrors listing each problem.
func (a *ServiceApplication) Validate() error {
	var c checker
	c.required("participant", a.Participant)
	c.required("system", a.System)
	if c.required("provider", a.Provider) {
		if _, err := ident.ParseClient(a.Provider); err != nil {
			c.fail("provider", a.Provider, "is not INSTANCE/CLASS/CODE[/SUBSYSTEM]")
		}
	}
	c.required("legalBasis", a.LegalBasis)
	if len(a.Services) == 0 {
		c.fail("services", "", "needs at least one service")
	}
	seen := map[string]bool{}
	for i, s := range a.Services {
		f := fmt.Sprintf("services[%d]", i)
		c.required(f+".number", s.Number)
		c.required(f+".name", s.Name)
		if c.required(f+".code", s.Code) {
			if strings.ContainsAny(s.Code, "/ ") {
				c.fail(f+".code", s.Code, "may not contain '/' or spaces")
			} else if key := s.Code + "/" + s.Version; seen[key] {
				c.fail(f+".code", s.Code, "appears twice with the same version")
			} else {
				seen[key] = true
			}
		}
		if strings.Contains(s.Version, "/") {
			c.fail(f+".version", s.Version, "may not contain '/'")
		}
		c.required(f+".regulation", s.Regulation)
		c.required(f+".responsible", s.Responsible)
		c.phone(f+".responsiblePhone", s.ResponsiblePhone)
	}
	c.email("notifyEmail", a.NotifyEmail)
	c.phone("notifyPhone", a.NotifyPhone)
	c.official("official", a.Official, false)
	return c.result()
}
