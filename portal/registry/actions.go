package registry

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/portal/wire"
)

// Service is a connected e-service (3.9).
type Service struct {
	ID               ident.Service `json:"id"`
	Name             string        `json:"name"`
	Regulation       string        `json:"regulation,omitempty"`
	Responsible      string        `json:"responsible,omitempty"`
	ResponsiblePhone string        `json:"responsiblePhone,omitempty"`
	Application      uint64        `json:"application,omitempty"`
	Connected        time.Time     `json:"connected"`
	// Disconnects is when an announced disconnection takes effect (3.14):
	// from then on the published configuration lists the service as
	// disconnected, and every security server refuses calls to it.
	Disconnects time.Time `json:"disconnects,omitzero"`
}

// DisconnectedAt reports whether the service's announced disconnection
// (3.14) has taken effect at now.
func (s *Service) DisconnectedAt(now time.Time) bool {
	return !s.Disconnects.IsZero() && !now.Before(s.Disconnects)
}

func serviceKey(s ident.Service) []byte {
	k, _ := json.Marshal(s)
	return k
}

func (r *Registry) putService(s Service) error {
	return r.db.Update(func(tx *bbolt.Tx) error {
		return put(tx.Bucket(bucketServices), serviceKey(s.ID), s)
	})
}

// Services lists the connected services.
func (r *Registry) Services() ([]Service, error) { return list[Service](r.db, bucketServices) }

// Server is a security server's registration (4.1.2).
type Server struct {
	ID      uint64         `json:"id"`
	Owner   ident.Client   `json:"owner"`
	Code    string         `json:"code"`
	Address string         `json:"address"`
	Clients []ident.Client `json:"clients"`
	// AuthCert is the DER authentication certificate it registered with.
	AuthCert []byte `json:"authCert"`
	// State is pending, approved, rejected or superseded (by a later
	// approved registration of the same server).
	State    string    `json:"state"`
	Received time.Time `json:"received"`
	Decided  time.Time `json:"decided,omitzero"`
	Reason   string    `json:"reason,omitempty"`
}

// SubmitServer records a registration whose envelope signature the caller
// has verified with authCert. The owner must be an active member of a known
// instance; the certificate must name the owner and the server code; every
// client must be the owner or one of its subsystems.
func (r *Registry) SubmitServer(reg wire.ServerRegistration, authCert *x509.Certificate) (
	Server, error) {
	if !r.knows(reg.Owner.Instance) {
		return Server{}, fmt.Errorf("instance %q is not served by this portal; use "+
			"one of %v", reg.Owner.Instance, r.opts.Instances)
	}
	m, err := r.Member(reg.Owner)
	if err != nil || !m.Active() {
		return Server{}, fmt.Errorf("owner %s is not an active registered member", reg.Owner)
	}
	owner, code, err := ident.MemberFromCertSerial(authCert.Subject.SerialNumber)
	if err != nil || owner != reg.Owner.Member() || code != reg.Code {
		return Server{}, fmt.Errorf("authentication certificate names %q, not %s/%s",
			authCert.Subject.SerialNumber, reg.Owner, reg.Code)
	}
	if !slices.Contains(authCert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return Server{}, errors.New("the certificate is not an authentication certificate")
	}
	if reg.Address == "" {
		return Server{}, errors.New("registration needs the server's address host:port")
	}
	if len(reg.Clients) == 0 {
		reg.Clients = []ident.Client{reg.Owner}
	}
	for _, c := range reg.Clients {
		if c.Member() != reg.Owner || (c.SubsystemCode != "" && !m.hasSubsystem(c.SubsystemCode)) {
			return Server{}, fmt.Errorf("client %s is not %s or one of its registered "+
				"subsystems", c, reg.Owner)
		}
	}
	s := Server{Owner: reg.Owner, Code: reg.Code, Address: reg.Address,
		Clients: reg.Clients, AuthCert: authCert.Raw, State: "pending",
		Received: r.opts.Now().UTC()}
	err = insert(r.db, bucketServers, &s, func(s *Server, id uint64) { s.ID = id })
	return s, err
}

// Servers lists every registration.
func (r *Registry) Servers() ([]Server, error) { return list[Server](r.db, bucketServers) }

// Server returns one registration.
func (r *Registry) Server(id uint64) (Server, error) {
	var s Server
	err := r.db.View(func(tx *bbolt.Tx) error {
		return get(tx.Bucket(bucketServers), itob(id), &s)
	})
	if err != nil {
		return s, fmt.Errorf("server registration %d: %w", id, err)
	}
	return s, nil
}

// ApproveServer approves a pending registration: the server enters the
// global configuration of its instance, replacing an earlier registration
// of the same owner and code.
func (r *Registry) ApproveServer(id uint64) (Server, error) {
	var s Server
	err := r.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketServers)
		if err := get(b, itob(id), &s); err != nil {
			return fmt.Errorf("server registration %d: %w", id, err)
		}
		if s.State != "pending" {
			return fmt.Errorf("server registration %d is %s, not pending", id, s.State)
		}
		now := r.opts.Now().UTC()
		err := b.ForEach(func(k, v []byte) error {
			var o Server
			if err := json.Unmarshal(v, &o); err != nil {
				return err
			}
			if o.State == "approved" && o.Owner == s.Owner && o.Code == s.Code {
				o.State, o.Decided = "superseded", now
				return put(b, k, o)
			}
			return nil
		})
		if err != nil {
			return err
		}
		s.State, s.Decided = "approved", now
		return put(b, itob(id), s)
	})
	if err == nil {
		r.changed(s.Owner.Instance)
	}
	return s, err
}

// RejectServer refuses a pending registration with a reason the
// participant is told; an empty reason is refused, as Reject refuses one.
func (r *Registry) RejectServer(id uint64, reason string) (Server, error) {
	if strings.TrimSpace(reason) == "" {
		return Server{}, errors.New("a rejected registration needs a reason for the " +
			"participant")
	}
	return update(r.db, bucketServers, itob(id), fmt.Sprintf("server registration %d", id),
		func(s *Server) error {
			if s.State != "pending" {
				return fmt.Errorf("server registration %d is %s, not pending", id, s.State)
			}
			s.State, s.Decided, s.Reason = "rejected", r.opts.Now().UTC(), reason
			return nil
		})
}

// Block is a participant blocked at once (3.7).
type Block struct {
	globalconf.Blocked
	// Clause is 3.7.1 (slows, harms or stops the portal) or 3.7.2
	// (breaches information-security or personal-data rules).
	Clause string `json:"clause"`
}

// BlockClient blocks a registered member or subsystem at once (3.7): the
// next published configuration lists it, and every security server refuses
// its traffic from its next refresh. For clause 3.7.2 a breach notice (3.6)
// follows, returned as the second value.
func (r *Registry) BlockClient(c ident.Client, clause, reason string) (Block, *Breach, error) {
	if clause != "3.7.1" && clause != "3.7.2" {
		return Block{}, nil, fmt.Errorf("a block needs its ground, clause 3.7.1 or 3.7.2, "+
			"not %q", clause)
	}
	m, err := r.Member(c)
	if err != nil {
		return Block{}, nil, err
	}
	// Clause 3.7 blocks a participant: a subsystem the member does not
	// have would sit in the Blocked list and block nothing.
	if c.SubsystemCode != "" && !m.hasSubsystem(c.SubsystemCode) {
		return Block{}, nil, fmt.Errorf("member %s has no subsystem %s: %w; block one of "+
			"its registered subsystems or the member itself", m.ID, c.SubsystemCode,
			ErrNotFound)
	}
	b := Block{Blocked: globalconf.Blocked{Client: c, Since: r.opts.Now().UTC(),
		Reason: reason}, Clause: clause}
	err = r.db.Update(func(tx *bbolt.Tx) error {
		return put(tx.Bucket(bucketBlocks), []byte(c.String()), b)
	})
	if err != nil {
		return Block{}, nil, fmt.Errorf("block %s: %w", c, err)
	}
	r.changed(c.Instance)
	if clause != "3.7.2" {
		return b, nil, nil
	}
	br, err := r.NoticeBreach(c.Member(), "blocked under clause 3.7.2: "+reason)
	return b, &br, err
}

// Unblock lifts a block.
func (r *Registry) Unblock(c ident.Client) error {
	err := r.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketBlocks)
		if b.Get([]byte(c.String())) == nil {
			return fmt.Errorf("%s is not blocked: %w", c, ErrNotFound)
		}
		return b.Delete([]byte(c.String()))
	})
	if err == nil {
		r.changed(c.Instance)
	}
	return err
}

// Blocks lists the blocks in force.
func (r *Registry) Blocks() ([]Block, error) { return list[Block](r.db, bucketBlocks) }

// Breach is a written breach notice (3.6): the participant has one month
// from Sent to remedy the breach, else it is disconnected.
type Breach struct {
	ID       uint64       `json:"id"`
	Member   ident.Client `json:"member"`
	Text     string       `json:"text"`
	Sent     time.Time    `json:"sent"`
	RemedyBy time.Time    `json:"remedyBy"`
	// State is open, remedied or disconnected.
	State string `json:"state"`
}

// NoticeBreach records a written breach notice to member (3.6).
func (r *Registry) NoticeBreach(member ident.Client, text string) (Breach, error) {
	if strings.TrimSpace(text) == "" {
		return Breach{}, errors.New("a breach notice needs its text")
	}
	if _, err := r.Member(member); err != nil {
		return Breach{}, err
	}
	now := r.opts.Now().UTC()
	b := Breach{Member: member.Member(), Text: text, Sent: now,
		RemedyBy: now.AddDate(0, 1, 0), State: "open"}
	err := insert(r.db, bucketBreaches, &b, func(b *Breach, id uint64) { b.ID = id })
	return b, err
}

// Breaches lists breach notices.
func (r *Registry) Breaches() ([]Breach, error) { return list[Breach](r.db, bucketBreaches) }

// Remedied closes a breach notice: the participant remedied the breach.
func (r *Registry) Remedied(id uint64) (Breach, error) {
	return update(r.db, bucketBreaches, itob(id), fmt.Sprintf("breach notice %d", id),
		func(b *Breach) error {
			if b.State != "open" {
				return fmt.Errorf("breach notice %d is %s", id, b.State)
			}
			b.State = "remedied"
			return nil
		})
}

// Disconnect disconnects a member in every instance: it leaves the
// published configurations. The ground is either dissolution without a
// successor (3.5, at once: breachID 0 and dissolved true) or an open
// breach notice whose month to remedy has passed (3.6). The member must be
// registered in the instance member names. Closing the breach notice and
// marking the member disconnected commit together or not at all, so a
// failure leaves the notice open and the disconnection can be tried again.
// The caller revokes the member's certificates.
func (r *Registry) Disconnect(member ident.Client, dissolved bool, breachID uint64) error {
	now := r.opts.Now().UTC()
	err := r.db.Update(func(tx *bbolt.Tx) error {
		bk := tx.Bucket(bucketMembers)
		// An unknown member must not pass as disconnected: the caller
		// would then report success and revoke nothing.
		if err := get(bk, []byte(member.Member().String()), &Member{}); err != nil {
			return fmt.Errorf("member %s: %w", member.Member(), err)
		}
		reason := "dissolved without a successor (3.5)"
		if !dissolved {
			b, err := updateTx(tx, bucketBreaches, itob(breachID),
				fmt.Sprintf("breach notice %d", breachID), func(b *Breach) error {
					if b.Member != member.Member() {
						return fmt.Errorf("breach notice %d is to %s, not %s", breachID,
							b.Member, member)
					}
					if b.State != "open" {
						return fmt.Errorf("breach notice %d is %s", breachID, b.State)
					}
					if now.Before(b.RemedyBy) {
						return fmt.Errorf("clause 3.6 gives %s until %s to remedy the "+
							"breach; disconnect after that, or block now under 3.7 if "+
							"the breach harms the portal", b.Member,
							b.RemedyBy.Format(time.DateOnly))
					}
					b.State = "disconnected"
					return nil
				})
			if err != nil {
				return err
			}
			reason = fmt.Sprintf("breach not remedied by %s (3.6): %s",
				b.RemedyBy.Format(time.DateOnly), b.Text)
		}
		for _, inst := range r.opts.Instances {
			id := member.Member()
			id.Instance = inst
			var m Member
			err := get(bk, []byte(id.String()), &m)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("stored member %s: %w", id, err)
			}
			m.Disconnected, m.DisconnectReason = now, reason
			if err := put(bk, []byte(id.String()), m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("disconnect %s: %w", member, err)
	}
	r.changed(r.opts.Instances...)
	return nil
}

// NoticeRecord is a published service notice (3.12, 3.14).
type NoticeRecord struct {
	ID uint64 `json:"id"`
	globalconf.Notice
	Published time.Time `json:"published"`
}

// MinDisconnectNotice is how far ahead a service disconnection must be
// announced (3.14): one calendar month.
func MinDisconnectNotice(now time.Time) time.Time { return now.AddDate(0, 1, 0) }

// AnnounceVersion tells all participants of a new service version and of
// the end of the old one's life (3.12). The new version must be connected.
func (r *Registry) AnnounceVersion(newer, older ident.Service, endOfLife time.Time,
	text string) ([]NoticeRecord, error) {
	if newer.Client != older.Client || newer.ServiceCode != older.ServiceCode ||
		newer.Version == older.Version {
		return nil, errors.New("a new version must be the same service with another version")
	}
	svcs, err := r.Services()
	if err != nil {
		return nil, err
	}
	now := r.opts.Now().UTC()
	if !slices.ContainsFunc(svcs, func(s Service) bool {
		return s.ID == newer && !s.DisconnectedAt(now)
	}) {
		return nil, fmt.Errorf("service %s is not connected; connect the new version "+
			"first (3.11)", newer)
	}
	if !endOfLife.After(now) {
		return nil, errors.New("the old version's end of life must be in the future")
	}
	out := []NoticeRecord{
		{Notice: globalconf.Notice{Kind: globalconf.NoticeNewVersion, Service: newer,
			Effective: now, Text: text}},
		{Notice: globalconf.Notice{Kind: globalconf.NoticeEndOfLife, Service: older,
			Effective: endOfLife, Text: text}},
	}
	for i := range out {
		if err := r.addNotice(&out[i]); err != nil {
			return nil, err
		}
	}
	r.changed(newer.Instance)
	return out, nil
}

// AnnounceDisconnect tells the service's users that it will be
// disconnected at effective, which must be at least one month ahead
// (3.14). The participant's notice and reason (3.13) go into text.
func (r *Registry) AnnounceDisconnect(svc ident.Service, effective time.Time, text string) (
	NoticeRecord, error) {
	now := r.opts.Now().UTC()
	if earliest := MinDisconnectNotice(now); effective.Before(earliest) {
		return NoticeRecord{}, fmt.Errorf("clause 3.14 requires telling users at least one "+
			"month before a service is disconnected: %s is too soon, the earliest is %s",
			effective.Format(time.DateOnly), earliest.Format(time.DateOnly))
	}
	if strings.TrimSpace(text) == "" {
		return NoticeRecord{}, errors.New("a disconnection notice needs the participant's " +
			"reason (3.13)")
	}
	_, err := update(r.db, bucketServices, serviceKey(svc), fmt.Sprintf("service %s", svc),
		func(s *Service) error { s.Disconnects = effective; return nil })
	if err != nil {
		return NoticeRecord{}, err
	}
	n := NoticeRecord{Notice: globalconf.Notice{Kind: globalconf.NoticeDisconnect,
		Service: svc, Effective: effective, Text: text}}
	if err := r.addNotice(&n); err != nil {
		return NoticeRecord{}, err
	}
	r.changed(svc.Instance)
	return n, nil
}

func (r *Registry) addNotice(n *NoticeRecord) error {
	n.Published = r.opts.Now().UTC()
	return insert(r.db, bucketNotices, n, func(n *NoticeRecord, id uint64) { n.ID = id })
}

// Notices lists service notices.
func (r *Registry) Notices() ([]NoticeRecord, error) {
	return list[NoticeRecord](r.db, bucketNotices)
}
