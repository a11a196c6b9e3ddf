package gokrazy

// Import paths of the programs an appliance image can run.
const (
	// ServerPackage is the security server daemon.
	ServerPackage = "github.com/qapi-az/qapi/cmd/qapi-server"
	// PlaceholderPackage is a stand-in HTTP responder that proves the boot
	// chain (kernel, initramfs, gokrazy, perm, network) without the server.
	PlaceholderPackage = "github.com/qapi-az/qapi/gokrazy/cmd/qapi-placeholder"
)

// Ports the image's programs listen on, inside the appliance.
const (
	// ClientProxyPort serves the information systems on the internal
	// interface.
	ClientProxyPort = 8080
	// ServerProxyPort faces other security servers on the external
	// interface.
	ServerProxyPort = 8443
	// ManagementPort serves the management API and health on the internal
	// interface.
	ManagementPort = 4000
)

// Default returns the instance an appliance runs: the program built from
// serverPackage (ServerPackage, or PlaceholderPackage before the server
// exists) reading its configuration from configPath, with the external
// interface eth0 and the internal interface eth1 addressed for QEMU's user
// networking (10.0.2.15 and 10.0.3.15).
func Default(serverPackage, configPath string) *Instance {
	srv := Program{Name: "qapi-server", Package: serverPackage}
	if configPath != "" {
		srv.Args = []string{"-config", configPath}
	}
	return &Instance{
		Hostname: "qapi",
		Programs: []Program{srv},
		Interfaces: []Interface{
			{Name: "eth0", Address: "10.0.2.15/24", Gateway: "10.0.2.2"},
			{Name: "eth1", Address: "10.0.3.15/24"},
		},
		Health: "http://127.0.0.1:4000/healthz",
	}
}
