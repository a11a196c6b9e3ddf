// Package registry is the portal's register of participants: the annex 1
// and annex 2 applications and the operator's decisions on them (clauses
// 3.1 to 3.14), members and their subsystems, security servers, services,
// blocks, breach notices and service notices. The global configuration
// publisher reads it to build each published version.
//
// Every instance (production, say AZ, and the test environment of clause
// 3.8.2, say AZ-TEST) has its own members and servers: identifiers carry
// their instance. Approving an annex 1 application registers the member in
// every instance the registry knows, so that the participant can try its
// services in the test environment first.
//
// State lives in buckets of the bbolt database the caller opens.
package registry

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/portal/onboarding"
)

var (
	bucketApps     = []byte("reg-applications")
	bucketMembers  = []byte("reg-members")
	bucketServers  = []byte("reg-servers")
	bucketServices = []byte("reg-services")
	bucketBlocks   = []byte("reg-blocks")
	bucketNotices  = []byte("reg-notices")
	bucketBreaches = []byte("reg-breaches")
)

// Options configure a Registry.
type Options struct {
	// Instances are the instance names the portal serves; the first is
	// production. At least one.
	Instances []string
	// Calendar counts the working days of clauses 3.2 and 3.9.
	Calendar onboarding.Calendar
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Changed, when set, is called after every change that alters what
	// the global configuration of an instance holds.
	Changed func(instance string)
}

// Registry is the register. It is safe for concurrent use.
type Registry struct {
	db   *bbolt.DB
	opts Options
}

// Open creates the registry's buckets in db if needed.
func Open(db *bbolt.DB, opts Options) (*Registry, error) {
	if len(opts.Instances) == 0 {
		return nil, errors.New("registry needs at least one instance name")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	err := db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketApps, bucketMembers, bucketServers,
			bucketServices, bucketBlocks, bucketNotices, bucketBreaches} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open registry: %w", err)
	}
	return &Registry{db: db, opts: opts}, nil
}

// Instances returns the instance names, production first.
func (r *Registry) Instances() []string { return r.opts.Instances }

func (r *Registry) knows(instance string) bool {
	for _, i := range r.opts.Instances {
		if i == instance {
			return true
		}
	}
	return false
}

func (r *Registry) changed(instances ...string) {
	if r.opts.Changed == nil {
		return
	}
	for _, i := range instances {
		r.opts.Changed(i)
	}
}

// ErrNotFound is returned (wrapped) for an unknown id.
var ErrNotFound = errors.New("not found")

func put(b *bbolt.Bucket, k []byte, v any) error {
	j, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, j)
}

func get(b *bbolt.Bucket, k []byte, v any) error {
	j := b.Get(k)
	if j == nil {
		return ErrNotFound
	}
	return json.Unmarshal(j, v)
}

func list[T any](db *bbolt.DB, bucket []byte) ([]T, error) {
	var out []T
	err := db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(_, v []byte) error {
			var x T
			if err := json.Unmarshal(v, &x); err != nil {
				return err
			}
			out = append(out, x)
			return nil
		})
	})
	return out, err
}

func itob(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// update loads the record with key k of bucket into v, calls f, and stores
// v back when f returns nil, in one transaction.
func update[T any](db *bbolt.DB, bucket, k []byte, what string, f func(*T) error) (T, error) {
	var v T
	err := db.Update(func(tx *bbolt.Tx) error {
		var err error
		v, err = updateTx(tx, bucket, k, what, f)
		return err
	})
	return v, err
}

// updateTx is update within tx, for changes that must commit together with
// others or not at all.
func updateTx[T any](tx *bbolt.Tx, bucket, k []byte, what string, f func(*T) error) (T, error) {
	var v T
	b := tx.Bucket(bucket)
	if err := get(b, k, &v); err != nil {
		if errors.Is(err, ErrNotFound) {
			return v, fmt.Errorf("%s: %w", what, ErrNotFound)
		}
		return v, fmt.Errorf("%s: %w", what, err)
	}
	if err := f(&v); err != nil {
		return v, err
	}
	return v, put(b, k, v)
}

func insert[T any](db *bbolt.DB, bucket []byte, v *T, setID func(*T, uint64)) error {
	return db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucket)
		id, err := b.NextSequence()
		if err != nil {
			return err
		}
		setID(v, id)
		return put(b, itob(id), v)
	})
}

// Member is a registered participant in one instance.
type Member struct {
	ID         ident.Client      `json:"id"`
	Name       string            `json:"name"`
	VOEN       string            `json:"voen,omitempty"`
	Status     onboarding.Status `json:"status,omitempty"`
	Subsystems []Subsystem       `json:"subsystems,omitempty"`
	Contract   *Contract         `json:"contract,omitempty"`
	Registered time.Time         `json:"registered"`
	// Disconnected is set once the participant is disconnected (3.5, 3.6);
	// a disconnected member leaves the published configuration.
	Disconnected     time.Time `json:"disconnected,omitzero"`
	DisconnectReason string    `json:"disconnectReason,omitempty"`
}

// Subsystem is an information system of a member.
type Subsystem struct {
	Code string `json:"code"`
	Name string `json:"name"`
	// Application is the annex 1 application that registered it; 0 when
	// the operator registered it directly.
	Application uint64 `json:"application,omitempty"`
}

// Members lists the members of all instances.
func (r *Registry) Members() ([]Member, error) { return list[Member](r.db, bucketMembers) }

// Member returns the member with id (a member identifier, no subsystem).
func (r *Registry) Member(id ident.Client) (Member, error) {
	var m Member
	err := r.db.View(func(tx *bbolt.Tx) error {
		return get(tx.Bucket(bucketMembers), []byte(id.Member().String()), &m)
	})
	if err != nil {
		return m, fmt.Errorf("member %s: %w", id.Member(), err)
	}
	return m, nil
}

// AddMember registers a member with one subsystem, or adds the subsystem to
// an existing member, in every instance. It is how the operator registers
// participants that connected before this registry existed (appendix 1's
// systems) and what approving an annex 1 application does.
func (r *Registry) AddMember(m Member) error {
	if err := r.db.Update(func(tx *bbolt.Tx) error { return r.addMemberTx(tx, m) }); err != nil {
		return err
	}
	r.changed(r.opts.Instances...)
	return nil
}

// addMemberTx is AddMember within tx, without telling of the change.
func (r *Registry) addMemberTx(tx *bbolt.Tx, m Member) error {
	if err := m.ID.Validate(); err != nil || m.ID.SubsystemCode != "" {
		return fmt.Errorf("member id %q must be INSTANCE/CLASS/CODE", m.ID)
	}
	if m.Registered.IsZero() {
		m.Registered = r.opts.Now().UTC()
	}
	b := tx.Bucket(bucketMembers)
	for _, inst := range r.opts.Instances {
		id := m.ID
		id.Instance = inst
		var cur Member
		err := get(b, []byte(id.String()), &cur)
		switch {
		case errors.Is(err, ErrNotFound):
			cur = m
			cur.ID = id
		case err != nil:
			return fmt.Errorf("register member %s: stored member %s: %w", m.ID, id, err)
		default:
			for _, s := range m.Subsystems {
				if !cur.hasSubsystem(s.Code) {
					cur.Subsystems = append(cur.Subsystems, s)
				}
			}
			if m.Contract != nil {
				cur.Contract = m.Contract
			}
		}
		if err := put(b, []byte(id.String()), cur); err != nil {
			return fmt.Errorf("register member %s: %w", m.ID, err)
		}
	}
	return nil
}

func (m *Member) hasSubsystem(code string) bool {
	for _, s := range m.Subsystems {
		if s.Code == code {
			return true
		}
	}
	return false
}

// Active reports whether the member may take part in exchange: registered
// and not disconnected.
func (m *Member) Active() bool { return m.Disconnected.IsZero() }
