package gokrazy

import "fmt"

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

// HealthPort is where qapi-firstboot serves GET /healthz.
const HealthPort = 4000

// Default returns the instance an appliance runs: qapi-firstboot, and the
// security server once its configuration exists on /perm, with the external
// interface eth0 and the internal interface eth1 addressed for QEMU's user
// networking (10.0.2.15 and 10.0.3.15). With devKeys the keys are kept in
// plain files instead of sealed by the TPM.
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
		Interfaces: []Interface{
			{Name: "eth0", Address: "10.0.2.15/24", Gateway: "10.0.2.2"},
			{Name: "eth1", Address: "10.0.3.15/24"},
		},
		Health: fmt.Sprintf("http://127.0.0.1:%d/healthz", HealthPort),
	}
}
