// Package acl holds the security server's access rights: which clients may
// call which of the services this server provides (clauses 2.2.3, 3.8.3,
// 6.7).
//
// Rights are deny by default. A right names a service of a provider (its
// member or subsystem and service code; every version of the service shares
// the right) and a subject: a member (with all its subsystems), one
// subsystem, a global group of the global configuration, or a local group
// defined on this server. Rights and local groups live in the server's
// configuration database (bbolt) and are cached in memory, so a check costs
// no disk access.
package acl

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/qapi-az/qapi/appliance/ident"
	bolt "go.etcd.io/bbolt"
)

// Kind says what a Subject names.
type Kind string

// Kinds of subjects.
const (
	// KindMember matches the member and every one of its subsystems.
	KindMember Kind = "member"
	// KindSubsystem matches one subsystem.
	KindSubsystem Kind = "subsystem"
	// KindGlobalGroup matches the clients of a global group of the global
	// configuration.
	KindGlobalGroup Kind = "globalgroup"
	// KindLocalGroup matches the clients of a group defined on this server.
	KindLocalGroup Kind = "localgroup"
)

// Subject is who a right is granted to. Client is set for KindMember
// (without subsystem) and KindSubsystem; Group for the group kinds.
type Subject struct {
	Kind   Kind         `json:"kind"`
	Client ident.Client `json:"client,omitzero"`
	Group  string       `json:"group,omitempty"`
}

// Member returns the subject matching member c and all its subsystems.
func Member(c ident.Client) Subject { return Subject{Kind: KindMember, Client: c.Member()} }

// Subsystem returns the subject matching subsystem c only.
func Subsystem(c ident.Client) Subject { return Subject{Kind: KindSubsystem, Client: c} }

// GlobalGroup returns the subject matching the global group code.
func GlobalGroup(code string) Subject { return Subject{Kind: KindGlobalGroup, Group: code} }

// LocalGroup returns the subject matching the local group code.
func LocalGroup(code string) Subject { return Subject{Kind: KindLocalGroup, Group: code} }

// Validate reports what is wrong with s, if anything.
func (s Subject) Validate() error {
	switch s.Kind {
	case KindMember:
		if s.Client.SubsystemCode != "" {
			return fmt.Errorf("member subject %s names a subsystem; use kind %q",
				s.Client, KindSubsystem)
		}
		return s.Client.Validate()
	case KindSubsystem:
		if s.Client.SubsystemCode == "" {
			return fmt.Errorf("subsystem subject %s has no subsystem code", s.Client)
		}
		return s.Client.Validate()
	case KindGlobalGroup, KindLocalGroup:
		if s.Group == "" || strings.ContainsAny(s.Group, "/:") {
			return fmt.Errorf("%s subject needs a group code without '/' or ':'", s.Kind)
		}
		if !s.Client.IsZero() {
			return fmt.Errorf("%s subject %q must not name a client", s.Kind, s.Group)
		}
		return nil
	}
	return fmt.Errorf("subject kind %q is not one of member, subsystem, globalgroup, "+
		"localgroup", s.Kind)
}

// String returns KIND:ID, the form ParseSubject reads, e.g.
// "subsystem:AZ/GOV/1001/REG" or "globalgroup:security-agencies".
func (s Subject) String() string {
	if s.Kind == KindGlobalGroup || s.Kind == KindLocalGroup {
		return string(s.Kind) + ":" + s.Group
	}
	return string(s.Kind) + ":" + s.Client.String()
}

// ParseSubject reads the form String writes.
func ParseSubject(str string) (Subject, error) {
	kind, id, ok := strings.Cut(str, ":")
	if !ok {
		return Subject{}, fmt.Errorf("subject %q: want KIND:ID, e.g. member:AZ/GOV/1001", str)
	}
	s := Subject{Kind: Kind(kind)}
	switch s.Kind {
	case KindGlobalGroup, KindLocalGroup:
		s.Group = id
	case KindMember, KindSubsystem:
		c, err := ident.ParseClient(id)
		if err != nil {
			return Subject{}, fmt.Errorf("subject %q: %w", str, err)
		}
		s.Client = c
	}
	if err := s.Validate(); err != nil {
		return Subject{}, fmt.Errorf("subject %q: %w", str, err)
	}
	return s, nil
}

// Groups answers global-group membership; *globalconf.Conf implements it.
type Groups interface {
	InGroup(code string, client ident.Client) bool
}

// Right is one grant: subject may call every version of Service.
type Right struct {
	Service ident.Service `json:"service"`
	Subject Subject       `json:"subject"`
}

var (
	bucketRights = []byte("acl-rights")
	bucketGroups = []byte("acl-localgroups")
)

// Store is the set of access rights. Safe for concurrent use.
type Store struct {
	db *bolt.DB

	mu     sync.RWMutex
	rights map[string]*serviceRights // by key(provider, serviceCode)
	groups map[string][]ident.Client
}

type serviceRights struct {
	Provider    ident.Client `json:"provider"`
	ServiceCode string       `json:"serviceCode"`
	Subjects    []Subject    `json:"subjects"`
}

func key(svc ident.Service) string {
	return svc.Client.String() + "\x00" + svc.ServiceCode
}

// Open loads the rights from db, creating its buckets on first use. The
// caller owns db and closes it after it stops using the Store.
func Open(db *bolt.DB) (*Store, error) {
	s := &Store{db: db, rights: map[string]*serviceRights{},
		groups: map[string][]ident.Client{}}
	err := db.Update(func(tx *bolt.Tx) error {
		br, err := tx.CreateBucketIfNotExists(bucketRights)
		if err != nil {
			return err
		}
		bg, err := tx.CreateBucketIfNotExists(bucketGroups)
		if err != nil {
			return err
		}
		if err := br.ForEach(func(k, v []byte) error {
			var r serviceRights
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("access rights record %q: %w", k, err)
			}
			s.rights[string(k)] = &r
			return nil
		}); err != nil {
			return err
		}
		return bg.ForEach(func(k, v []byte) error {
			var members []ident.Client
			if err := json.Unmarshal(v, &members); err != nil {
				return fmt.Errorf("local group %q: %w", k, err)
			}
			s.groups[string(k)] = members
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load access rights from %s: %w", db.Path(), err)
	}
	return s, nil
}

// Grant lets sub call svc (every version). Granting an existing right is
// not an error.
func (s *Store) Grant(svc ident.Service, sub Subject) error {
	if err := checkService(svc); err != nil {
		return err
	}
	if err := sub.Validate(); err != nil {
		return fmt.Errorf("grant %s: %w", svc, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key(svc)
	old := s.rights[k]
	r := &serviceRights{Provider: svc.Client, ServiceCode: svc.ServiceCode}
	if old != nil {
		if slices.Contains(old.Subjects, sub) {
			return nil
		}
		r.Subjects = slices.Clone(old.Subjects)
	}
	r.Subjects = append(r.Subjects, sub)
	if err := s.put(bucketRights, k, r); err != nil {
		return fmt.Errorf("grant %s to %s: %w", svc, sub, err)
	}
	s.rights[k] = r
	return nil
}

// Revoke removes the right of sub to call svc. It reports an error if no
// such right exists, so that a mistyped revocation is not silently kept.
func (s *Store) Revoke(svc ident.Service, sub Subject) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key(svc)
	old := s.rights[k]
	if old == nil || !slices.Contains(old.Subjects, sub) {
		return fmt.Errorf("revoke %s from %s: no such right; list the rights to see "+
			"what is granted", svc, sub)
	}
	r := &serviceRights{Provider: old.Provider, ServiceCode: old.ServiceCode}
	for _, x := range old.Subjects {
		if x != sub {
			r.Subjects = append(r.Subjects, x)
		}
	}
	var err error
	if len(r.Subjects) == 0 {
		err = s.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketRights).Delete([]byte(k))
		})
	} else {
		err = s.put(bucketRights, k, r)
	}
	if err != nil {
		return fmt.Errorf("revoke %s from %s: %w", svc, sub, err)
	}
	if len(r.Subjects) == 0 {
		delete(s.rights, k)
	} else {
		s.rights[k] = r
	}
	return nil
}

// List returns every right, ordered by service then subject.
func (s *Store) List() []Right {
	s.mu.RLock()
	var out []Right
	for _, r := range s.rights {
		svc := ident.Service{Client: r.Provider, ServiceCode: r.ServiceCode}
		for _, sub := range r.Subjects {
			out = append(out, Right{Service: svc, Subject: sub})
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b Right) int {
		if c := strings.Compare(a.Service.String(), b.Service.String()); c != 0 {
			return c
		}
		return strings.Compare(a.Subject.String(), b.Subject.String())
	})
	return out
}

// SetLocalGroup creates or replaces the local group code.
func (s *Store) SetLocalGroup(code string, members []ident.Client) error {
	if err := LocalGroup(code).Validate(); err != nil {
		return err
	}
	for _, m := range members {
		if err := m.Validate(); err != nil {
			return fmt.Errorf("local group %q: %w", code, err)
		}
	}
	members = slices.Clone(members)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.put(bucketGroups, code, members); err != nil {
		return fmt.Errorf("store local group %q: %w", code, err)
	}
	s.groups[code] = members
	return nil
}

// DeleteLocalGroup removes the local group code. Rights granted to it stay
// but match nobody until a group of that code exists again.
func (s *Store) DeleteLocalGroup(code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGroups).Delete([]byte(code))
	}); err != nil {
		return fmt.Errorf("delete local group %q: %w", code, err)
	}
	delete(s.groups, code)
	return nil
}

// LocalGroup returns the members of the local group code and whether it
// exists.
func (s *Store) LocalGroup(code string) ([]ident.Client, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m, ok := s.groups[code]
	return slices.Clone(m), ok
}

// Allowed reports whether client may call svc (clause 2.2.3). Global
// groups are resolved through groups, which may be nil (then no global
// group matches).
func (s *Store) Allowed(groups Groups, svc ident.Service, client ident.Client) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r := s.rights[key(svc)]
	if r == nil {
		return false
	}
	for _, sub := range r.Subjects {
		if s.matches(groups, sub, client) {
			return true
		}
	}
	return false
}

// AllowedCodes returns the service codes of provider that client may call,
// sorted: the answer to allowedMethods.
func (s *Store) AllowedCodes(groups Groups, provider, client ident.Client) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for _, r := range s.rights {
		if r.Provider != provider {
			continue
		}
		for _, sub := range r.Subjects {
			if s.matches(groups, sub, client) {
				out = append(out, r.ServiceCode)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// matches is called with s.mu held.
func (s *Store) matches(groups Groups, sub Subject, client ident.Client) bool {
	switch sub.Kind {
	case KindMember:
		return client.Member() == sub.Client
	case KindSubsystem:
		return client == sub.Client
	case KindGlobalGroup:
		return groups != nil && groups.InGroup(sub.Group, client)
	case KindLocalGroup:
		return slices.Contains(s.groups[sub.Group], client)
	}
	return false
}

func (s *Store) put(bucket []byte, k string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).Put([]byte(k), b)
	})
}

var errNoServiceCode = errors.New("service code is empty")

func checkService(svc ident.Service) error {
	if err := svc.Client.Validate(); err != nil {
		return fmt.Errorf("service provider: %w", err)
	}
	if svc.ServiceCode == "" {
		return errNoServiceCode
	}
	return nil
}
