package onboarding

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func goodSystem() SystemApplication {
	p := Contact{Name: "Əli Məmmədov", WorkPhone: "+994 12 555 11 22",
		Mobile: "+994 50 555 11 22", Email: "ali@example.gov.az"}
	return SystemApplication{
		Participant: "Ədliyyə Nazirliyi", VOEN: "1234567890",
		Status: StatusCentralExecutive, LegalAddress: "Bakı", ActualAddress: "Bakı",
		Basis:  Basis{LegalAct: "Decision No. 118"},
		System: "Əhalinin Dövlət Reyestri", Resources: []string{"Reyestr"},
		RegistryExtract: "R-2026-17",
		Assessment:      Assessment{Date: "2026-11-02", Result: "positive"},
		Responsible:     p, Support: []Contact{p, p},
		Official: Official{Name: "Vüqar Əliyev", Post: "Nazir müavini",
			Signature: "paper 2026/114", Date: "2026-11-20"},
	}
}

func TestSystemApplicationValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*SystemApplication)
		want   []string // each must appear in the error; nil: valid
	}{
		{"valid", func(*SystemApplication) {}, nil},
		{"bad support e-mail", func(a *SystemApplication) { a.Support[1].Email = "x@" },
			[]string{`support[1].email: "x@" is not an e-mail address`}},
		{"one support person", func(a *SystemApplication) { a.Support = a.Support[:1] },
			[]string{"support: needs at least two technical-support persons, has 1"}},
		{"short VOEN", func(a *SystemApplication) { a.VOEN = "12345" },
			[]string{`voen: "12345" is not a VÖEN (10 digits)`}},
		{"letters in VOEN", func(a *SystemApplication) { a.VOEN = "12345678AB" },
			[]string{`voen: "12345678AB" is not a VÖEN`}},
		{"unknown status", func(a *SystemApplication) { a.Status = "ministry" },
			[]string{`status: "ministry" is not one of`}},
		{"no basis", func(a *SystemApplication) { a.Basis = Basis{Notes: "n"} },
			[]string{"basis: needs a legal act or another ground"}},
		{"bad date and result", func(a *SystemApplication) {
			a.Assessment = Assessment{Date: "02.11.2026", Result: "ok"}
		}, []string{`assessment.date: "02.11.2026" is not a date`,
			`assessment.result: "ok" is not positive or negative`}},
		{"bad mobile", func(a *SystemApplication) { a.Responsible.Mobile = "050-abc" },
			[]string{`responsible.mobile: "050-abc" is not a phone number`}},
		{"missing official", func(a *SystemApplication) { a.Official = Official{} },
			[]string{"official.name: is required", "official.post: is required",
				"official.signature: is required", "official.date: is required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := goodSystem()
			a.Support = append([]Contact(nil), a.Support...)
			tt.change(&a)
			err := a.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var fe FieldErrors
			if !errors.As(err, &fe) {
				t.Fatalf("Validate() = %v, want FieldErrors", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if len(fe) != len(tt.want) {
				t.Errorf("got %d field errors, want %d: %v", len(fe), len(tt.want), err)
			}
		})
	}
}

func TestServiceApplicationValidate(t *testing.T) {
	good := func() ServiceApplication {
		return ServiceApplication{
			Participant: "Ədliyyə Nazirliyi", System: "Reyestr",
			Provider: "AZ/GOV/1234567890/REG", LegalBasis: "Decision No. 118",
			Services: []ServiceEntry{{Number: "1", Name: "Arayış", Code: "getCertificate",
				Version: "v1", Regulation: "DRLA-123", Responsible: "Aynur",
				ResponsiblePhone: "+994 12 555 00 00"}},
			NotifyEmail: "notify@example.gov.az", NotifyPhone: "+994125550000",
			Official: Official{Signature: "paper 7", Date: "2026-11-20"},
		}
	}
	tests := []struct {
		name   string
		change func(*ServiceApplication)
		want   []string
	}{
		{"valid", func(*ServiceApplication) {}, nil},
		{"bad provider", func(a *ServiceApplication) { a.Provider = "AZ/GOV" },
			[]string{`provider: "AZ/GOV" is not INSTANCE/CLASS/CODE[/SUBSYSTEM]`}},
		{"no services", func(a *ServiceApplication) { a.Services = nil },
			[]string{"services: needs at least one service"}},
		{"duplicate service", func(a *ServiceApplication) {
			a.Services = append(a.Services, a.Services[0])
		}, []string{`services[1].code: "getCertificate" appears twice`}},
		{"missing regulation", func(a *ServiceApplication) { a.Services[0].Regulation = "" },
			[]string{"services[0].regulation: is required"}},
		{"bad notify e-mail", func(a *ServiceApplication) { a.NotifyEmail = "a b@c" },
			[]string{`notifyEmail: "a b@c" is not an e-mail address`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := good()
			tt.change(&a)
			err := a.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate() = nil, want errors")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestAddWorkingDays(t *testing.T) {
	cal, err := ParseHolidays([]string{"2026-12-31"})
	if err != nil {
		t.Fatal(err)
	}
	day := func(s string) time.Time {
		d, err := time.Parse(time.DateOnly, s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	tests := []struct {
		start string
		n     int
		want  string
	}{
		{"2026-12-01", 7, "2026-12-10"}, // Tuesday: Wed..Fri, Mon..Thu
		{"2026-12-04", 7, "2026-12-15"}, // Friday: the weekend does not count
		{"2026-12-05", 1, "2026-12-07"}, // Saturday arrival: Monday
		{"2026-12-24", 7, "2027-01-05"}, // a holiday on Thursday the 31st
		{"2026-12-01", 0, "2026-12-01"},
	}
	for _, tt := range tests {
		got := cal.AddWorkingDays(day(tt.start).Add(15*time.Hour), tt.n)
		if got.Format(time.DateOnly) != tt.want {
			t.Errorf("AddWorkingDays(%s, %d) = %s, want %s", tt.start, tt.n,
				got.Format(time.DateOnly), tt.want)
		}
		if !got.Add(time.Nanosecond).Equal(day(tt.want).AddDate(0, 0, 1)) {
			t.Errorf("AddWorkingDays(%s, %d) = %v, want the end of the day", tt.start,
				tt.n, got)
		}
	}
	if _, err := ParseHolidays([]string{"31.12.2026"}); err == nil {
		t.Error("ParseHolidays accepted 31.12.2026")
	}
}
