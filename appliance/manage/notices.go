package manage

import (
	"context"
	"slices"
	"time"

	"github.com/qapi-az/qapi/appliance/ident"
)

// ServiceNotice is a notice of the global configuration as the security
// server shows it to its agency's people.
type ServiceNotice struct {
	// Kind is new-version or end-of-life (3.12), disconnect (3.14), or
	// disconnected once a disconnection has taken effect.
	Kind    string        `json:"kind"`
	Service ident.Service `json:"service"`
	// Effective is when the change takes or took effect.
	Effective time.Time `json:"effective"`
	Text      string    `json:"text,omitempty"`
	// Ours is set when the service is provided by one of the clients this
	// security server serves: its people must act on the notice.
	Ours bool `json:"ours"`
}

// KindDisconnected is the Kind of a ServiceNotice for a service whose
// announced disconnection has taken effect (3.14).
const KindDisconnected = "disconnected"

// NoticeList is what Notices returns.
type NoticeList struct {
	// Instance and Serial name the global configuration read.
	Instance string `json:"instance"`
	Serial   uint64 `json:"serial"`
	// Notices are those of our own services first, then by date.
	Notices []ServiceNotice `json:"notices"`
}

// Notices lists the service notices of the verified global configuration
// valid now: new versions and the end of old ones (3.12), announced
// disconnections (3.14), and services already disconnected. It reads the
// configuration as the registration steps do (Options.Conf, or else the
// one the installed anchor names).
func (m *Manager) Notices(ctx context.Context) (NoticeList, error) {
	conf, err := m.trustedConf(ctx)
	if err != nil {
		return NoticeList{}, err
	}
	m.mu.Lock()
	clients := slices.Clone(m.st.Clients)
	if len(clients) == 0 && !m.st.Owner.IsZero() {
		clients = []ident.Client{m.st.Owner}
	}
	m.mu.Unlock()
	ours := func(s ident.Service) bool { return slices.Contains(clients, s.Client) }

	out := NoticeList{Instance: conf.Instance, Serial: conf.Serial,
		Notices: []ServiceNotice{}}
	for _, n := range conf.Notices {
		out.Notices = append(out.Notices, ServiceNotice{Kind: string(n.Kind),
			Service: n.Service, Effective: n.Effective, Text: n.Text, Ours: ours(n.Service)})
	}
	for _, d := range conf.Disconnected {
		out.Notices = append(out.Notices, ServiceNotice{Kind: KindDisconnected,
			Service: d.Service, Effective: d.Since, Text: d.Text, Ours: ours(d.Service)})
	}
	slices.SortStableFunc(out.Notices, func(a, b ServiceNotice) int {
		if a.Ours != b.Ours {
			if a.Ours {
				return -1
			}
			return 1
		}
		return a.Effective.Compare(b.Effective)
	})
	return out, nil
}
