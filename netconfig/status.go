package netconfig

import (
	"fmt"
	"time"
)

// MinSpeedMbps is the slowest link the appliance accepts without a warning.
// Clause 5.5: the network equipment supports at least 1 Gbit/s.
const MinSpeedMbps = 1000

// Duplex is a link's duplex mode as the driver reports it.
type Duplex string

// Duplex modes.
const (
	DuplexFull    Duplex = "full"
	DuplexHalf    Duplex = "half"
	DuplexUnknown Duplex = "unknown"
)

// LinkStatus is the state of one role's link, as the local monitoring
// station shows it (clause 2.6).
type LinkStatus struct {
	Role Role   `json:"role"`
	Name string `json:"name"`
	// Up is true when the link is administratively up and has a carrier.
	Up bool `json:"up"`
	// SpeedMbps is the negotiated speed; 0 when the driver does not know.
	SpeedMbps int    `json:"speedMbps"`
	Duplex    Duplex `json:"duplex"`
	// Warning says what is wrong with the link; empty when nothing is.
	Warning string `json:"warning,omitempty"`
}

// Assess returns the warning for s, or "" when the link is up at 1 Gbit/s
// or more in full duplex. It ignores s.Warning.
func Assess(s LinkStatus) string {
	switch {
	case !s.Up:
		return "link is down: check the cable and the switch port"
	case s.SpeedMbps == 0 || s.Duplex == DuplexUnknown || s.Duplex == "":
		// Clause 5.5 cannot be checked; say so rather than stay silent.
		return "link speed or duplex is unknown: cannot confirm 1 Gbit/s full duplex " +
			"(clause 5.5)"
	case s.SpeedMbps < MinSpeedMbps:
		return fmt.Sprintf("link runs at %d Mbit/s, below the 1 Gbit/s clause 5.5 requires: "+
			"check the cable, the switch port and auto-negotiation", s.SpeedMbps)
	case s.Duplex != DuplexFull:
		return fmt.Sprintf("link runs in %s duplex; clause 5.5 needs full duplex at 1 Gbit/s: "+
			"check auto-negotiation on both ends", s.Duplex)
	}
	return ""
}

// LinkEvent reports that a role's link changed: it went up or down, or its
// speed or duplex changed. Watch also sends one event per role at start.
type LinkEvent struct {
	Time   time.Time  `json:"time"`
	Status LinkStatus `json:"status"`
}
