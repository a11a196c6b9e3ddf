// Package ident defines the identifiers of the exchange: members, subsystems
// and services, as the X-Road message protocol 4.0 carries them in the
// client and service headers (namespace http://x-road.eu/xsd/identifiers).
//
// Every other package names parties with these types, so that one string
// form is used for logs, access rights, the global configuration and events.
package ident

import (
	"errors"
	"fmt"
	"strings"
)

// Object types of the identifiers namespace.
const (
	TypeMember    = "MEMBER"
	TypeSubsystem = "SUBSYSTEM"
	TypeService   = "SERVICE"
)

// Client names a member or one of its subsystems. SubsystemCode is empty for
// a member itself.
type Client struct {
	Instance      string `json:"instance"`
	MemberClass   string `json:"memberClass"`
	MemberCode    string `json:"memberCode"`
	SubsystemCode string `json:"subsystemCode,omitempty"`
}

// Service names one service of a provider (a member or subsystem). Version is
// optional.
type Service struct {
	Client
	ServiceCode string `json:"serviceCode"`
	Version     string `json:"serviceVersion,omitempty"`
}

// ObjectType returns MEMBER or SUBSYSTEM.
func (c Client) ObjectType() string {
	if c.SubsystemCode == "" {
		return TypeMember
	}
	return TypeSubsystem
}

// Member returns the member that owns c (c itself if it is a member).
func (c Client) Member() Client {
	c.SubsystemCode = ""
	return c
}

// IsZero reports whether c is the zero Client.
func (c Client) IsZero() bool { return c == Client{} }

// String returns the slash-separated form INSTANCE/CLASS/CODE[/SUBSYSTEM],
// the form used in configuration files, logs and access rights.
func (c Client) String() string {
	s := c.Instance + "/" + c.MemberClass + "/" + c.MemberCode
	if c.SubsystemCode != "" {
		s += "/" + c.SubsystemCode
	}
	return s
}

// Validate reports an error naming the first empty or malformed part of c.
func (c Client) Validate() error {
	for _, p := range []struct{ name, v string }{
		{"xRoadInstance", c.Instance},
		{"memberClass", c.MemberClass},
		{"memberCode", c.MemberCode},
	} {
		if err := validPart(p.name, p.v, true); err != nil {
			return err
		}
	}
	return validPart("subsystemCode", c.SubsystemCode, false)
}

// String returns INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE[/VERSION], with an
// empty SUBSYSTEM part (two slashes) for a service of a member itself, so
// that ParseService reads back every form String writes.
func (s Service) String() string {
	str := s.Instance + "/" + s.MemberClass + "/" + s.MemberCode + "/" + s.SubsystemCode +
		"/" + s.ServiceCode
	if s.Version != "" {
		str += "/" + s.Version
	}
	return str
}

// Validate reports an error naming the first empty or malformed part of s.
func (s Service) Validate() error {
	if err := s.Client.Validate(); err != nil {
		return err
	}
	if err := validPart("serviceCode", s.ServiceCode, true); err != nil {
		return err
	}
	return validPart("serviceVersion", s.Version, false)
}

// ParseClient parses INSTANCE/CLASS/CODE or INSTANCE/CLASS/CODE/SUBSYSTEM.
func ParseClient(s string) (Client, error) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 && len(parts) != 4 {
		return Client{}, fmt.Errorf(
			"client %q: want INSTANCE/CLASS/CODE or INSTANCE/CLASS/CODE/SUBSYSTEM", s)
	}
	c := Client{Instance: parts[0], MemberClass: parts[1], MemberCode: parts[2]}
	if len(parts) == 4 {
		c.SubsystemCode = parts[3]
		if c.SubsystemCode == "" {
			return Client{}, fmt.Errorf("client %q: empty subsystem code", s)
		}
	}
	if err := c.Validate(); err != nil {
		return Client{}, fmt.Errorf("client %q: %w", s, err)
	}
	return c, nil
}

// ParseService parses INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE[/VERSION] or, for
// a service of a member without subsystem, INSTANCE/CLASS/CODE//SERVICE
// [/VERSION] (an empty subsystem part).
func ParseService(s string) (Service, error) {
	parts := strings.Split(s, "/")
	if len(parts) != 5 && len(parts) != 6 {
		return Service{}, fmt.Errorf(
			"service %q: want INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE[/VERSION]", s)
	}
	svc := Service{
		Client: Client{Instance: parts[0], MemberClass: parts[1], MemberCode: parts[2],
			SubsystemCode: parts[3]},
		ServiceCode: parts[4],
	}
	if len(parts) == 6 {
		svc.Version = parts[5]
		if svc.Version == "" {
			return Service{}, fmt.Errorf("service %q: empty version", s)
		}
	}
	if err := svc.Validate(); err != nil {
		return Service{}, fmt.Errorf("service %q: %w", s, err)
	}
	return svc, nil
}

var errEmpty = errors.New("is empty")

func validPart(name, v string, required bool) error {
	if v == "" {
		if required {
			return fmt.Errorf("%s %w", name, errEmpty)
		}
		return nil
	}
	if len(v) > 255 {
		return fmt.Errorf("%s is longer than 255 bytes", name)
	}
	for _, r := range v {
		if r == '/' || r < 0x20 || r == 0x7f {
			return fmt.Errorf("%s %q contains '/' or a control character", name, v)
		}
	}
	return nil
}

// MemberFromCertSerial reads the member a certificate belongs to from its
// subject serialNumber attribute. The portal's certification centre writes
// INSTANCE/CLASS/CODE there for signing certificates, and
// INSTANCE/CLASS/CODE/SERVERCODE for authentication certificates; the
// second return value is the server code, empty for signing certificates.
func MemberFromCertSerial(serial string) (Client, string, error) {
	parts := strings.Split(serial, "/")
	if len(parts) != 3 && len(parts) != 4 {
		return Client{}, "", fmt.Errorf("certificate subject serialNumber %q does not name "+
			"a member as INSTANCE/CLASS/CODE[/SERVER]", serial)
	}
	c := Client{Instance: parts[0], MemberClass: parts[1], MemberCode: parts[2]}
	if err := c.Validate(); err != nil {
		return Client{}, "", fmt.Errorf("certificate subject serialNumber %q: %w", serial, err)
	}
	code := ""
	if len(parts) == 4 {
		code = parts[3]
	}
	return c, code, nil
}
