package gokrazy

import (
	"fmt"

	"github.com/qapi-az/qapi/netconfig"
)

// Import paths of the programs an appliance image runs.
const (
	// ServerPackage is the security server daemon.
	ServerPackage = "github.com/qapi-az/qapi/cmd/qapi-server"
	// FirstbootPackage makes and checks the machine's TPM-sealed keys and
	// serves the health endpoint.
	FirstbootPackage = "github.com/qapi-az/qapi/gokrazy/cmd/qapi-firstboot"
)

// ServerConfigPath is where the security server's configuration lives on
// the appliance (qapi-server's default -config).
const ServerConfigPath = "/perm/qapi/qapi-server.json"

// NetworkPath is where the machine's own network configuration lives
// (package netconfig's JSON). When it exists it replaces the image's.
const NetworkPath = "/perm/qapi/network.json"

// Ports the appliance's programs listen on.
const (
	// HealthPort is where qapi-firstboot serves GET /healthz, on the
	// internal interface.
	HealthPort = 4000
	// ClientPort is the client proxy's HTTP port on the internal interface.
	ClientPort = 8080
	// ServerPort is the server proxy's TLS port on the external interface.
	ServerPort = 8443
)

// Default returns the instance an appliance runs: qapi-firstboot, and the
// security server once its configuration exists on /perm. Its network puts
// the external role on eth0 and the internal role on eth1, addressed for
// QEMU's user networking (10.0.2.15/24 and 10.0.3.15/24), with the firewall
// open for ServerPort outside and ClientPort and HealthPort inside. With
// devKeys the keys are kept in plain files instead of sealed by the TPM.
//
// TODO: a console step that writes NetworkPath; a real machine needs it seeded.
func Default(devKeys bool) *Instance {
	fb := Program{Name: "qapi-firstboot", Package: FirstbootPackage,
		Args: []string{"-listen", fmt.Sprintf(":%d", HealthPort)}}
	if devKeys {
		fb.Args = append(fb.Args, "-dev")
	}
	return &Instance{
		Hostname: "qapi",
		Programs: []Program{
			fb,
			{Name: "qapi-server", Package: ServerPackage,
				Args:     []string{"-config", ServerConfigPath},
				Requires: []string{ServerConfigPath},
				Hint: "register this security server with the portal to receive its " +
					"configuration and certificates"},
		},
		Network: &netconfig.Config{
			External: netconfig.Interface{Name: "eth0", Addresses: []string{"10.0.2.15/24"},
				Gateway: "10.0.2.2"},
			Internal: netconfig.Interface{Name: "eth1", Addresses: []string{"10.0.3.15/24"}},
			Firewall: netconfig.Firewall{TLSPort: ServerPort, ClientPorts: []uint16{ClientPort},
				ConsolePort: HealthPort},
		},
		Health: fmt.Sprintf("http://127.0.0.1:%d/healthz", HealthPort),
	}
}
