package globalconf

import (
	"sync"
	"time"
)

// Source gives the security server the configuration it must use now.
// Current returns an error wrapping ErrStale when the newest verified
// configuration is outside its validity period; callers then refuse
// exchanges (CodeStaleConf) rather than trust old data. Implementations
// must be safe for concurrent use and must not block on the network.
type Source interface {
	Current() (*Conf, error)
}

// Static is a Source holding one configuration, checked against the clock
// on every call. Tests and the fetcher build on it.
type Static struct {
	mu   sync.RWMutex
	conf *Conf
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// NewStatic returns a Static source serving c.
func NewStatic(c *Conf) *Static { return &Static{conf: c} }

// Set replaces the configuration, as a fetcher does after verifying a
// new version.
func (s *Static) Set(c *Conf) {
	s.mu.Lock()
	s.conf = c
	s.mu.Unlock()
}

// Current returns the configuration, or an error wrapping ErrStale.
func (s *Static) Current() (*Conf, error) {
	s.mu.RLock()
	c := s.conf
	s.mu.RUnlock()
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	if c == nil {
		return nil, ErrNoConf
	}
	if err := c.Check(now()); err != nil {
		return nil, err
	}
	return c, nil
}
