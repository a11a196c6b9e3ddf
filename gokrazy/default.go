package gokrazy

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/qapi-az/qapi/netconfig"
)

// Import paths of the programs an appliance image runs.
const (
	// ServerPackage is the security server daemon.
	ServerPackage = "github.com/qapi-az/qapi/cmd/qapi-server"
	// FirstbootPackage makes and checks the machine's TPM-sealed keys and
	// serves the health endpoint.
	FirstbootPackage = "github.com/qapi-az/qapi/gokrazy/cmd/qapi-firstboot"
	// MonitorPackage is the local monitoring station (clauses 2.6, 2.7).
	MonitorPackage = "github.com/qapi-az/qapi/cmd/qapi-monitor"
)

// MonitorDir is the monitoring station's state folder, the one folder it
// can read and write once it has confined itself; MonitorSocket, in it, is
// where the security server sends its metadata (the server configuration's
// monitorSocket).
const (
	MonitorDir    = "/perm/qapi-monitor"
	MonitorSocket = MonitorDir + "/monitor.sock"
)

// MonitorDenied are the paths the monitoring station proves it cannot open
// before it serves (clause 2.7): the security server's folder on perm with
// its configuration and message log, and the keys.
var MonitorDenied = []string{"/perm/qapi", ServerConfigPath, SealedDir}

// ServerConfigPath is where the security server's configuration lives on
// the appliance (qapi-server's default -config).
const ServerConfigPath = "/perm/qapi/qapi-server.json"

// NetworkPath is where the machine's own network configuration lives
// (package netconfig's JSON). When it exists it replaces the image's.
const NetworkPath = "/perm/qapi/network.json"

// SealedDir is the folder of the machine's keys: qapi-firstboot makes them
// there, and the security server's configuration names it (keyStore "tpm",
// tpm.dir; or keyDir in development mode), so that both open the same keys.
const SealedDir = "/perm/qapi/sealed"

// EKRootsPath is where a machine keeps the TPM manufacturers' certificates
// (PEM) that qapi-firstboot checks the TPM's endorsement against before it
// seals the first key (clause 6.2.3); seed it with the image's perm. Without
// the file the first seal trusts the TPM unchecked.
const EKRootsPath = "/perm/qapi/tpm-ek-roots.pem"

// TPMDevice is the TPM both qapi-firstboot and the security server open:
// the kernel's resource manager, which several processes may hold open at
// once. The raw /dev/tpm0 admits one process at a time, and the security
// server holds its TPM open while it runs.
const TPMDevice = "/dev/tpmrm0"

// KeyFiles are the files in SealedDir that hold the machine's keys once
// qapi-firstboot has made them: the sealed blobs, or with devKeys the
// plain key files of keys.FileStore.
func KeyFiles(devKeys bool) []string {
	names := []string{"signing.sealed", "authentication.sealed", "log-encryption.sealed"}
	if devKeys {
		names = []string{"signing.key", "authentication.key", "log-encryption.secret"}
	}
	for i, n := range names {
		names[i] = filepath.Join(SealedDir, n)
	}
	return names
}

// Ports the appliance's programs listen on.
const (
	// HealthPort is where qapi-firstboot serves GET /healthz, on the
	// internal interface.
	HealthPort = 4000
	// ClientPort is the client proxy's HTTP port on the internal interface.
	ClientPort = 8080
	// ServerPort is the server proxy's TLS port on the external interface.
	ServerPort = 8443
	// ManagePort is the security server's management API (HTTPS, with a
	// bearer token), which 'qapi register' drives, on the internal
	// interface. The server configuration's manage.listen must use it: the
	// firewall opens no other port for that API.
	ManagePort = 4001
	// MonitorPort is the monitoring station's status page and /metrics
	// (HTTP), on the internal interface.
	MonitorPort = 8090
)

// Default returns the instance an appliance runs: qapi-firstboot, the
// monitoring station, and the security server once its configuration
// exists on /perm and firstboot has made the keys. The monitoring station
// runs as user and group 65534, confined by Landlock to MonitorDir, and
// refuses to serve if it can open any of MonitorDenied. Its network puts
// the external role on eth0 and the internal role on eth1, addressed for
// QEMU's user networking (10.0.2.15/24 and 10.0.3.15/24), with the firewall
// open for ServerPort outside and ClientPort, ManagePort, MonitorPort and
// HealthPort inside. With devKeys the keys are kept in plain files instead
// of sealed by the TPM.
//
// TODO: a console step that writes NetworkPath; a real machine needs it seeded.
// TODO: netconfig.Firewall has one console port, held by HealthPort, so
// ManagePort and MonitorPort are opened among the client ports.
func Default(devKeys bool) *Instance {
	fb := Program{Name: "qapi-firstboot", Package: FirstbootPackage,
		Args: []string{"-listen", fmt.Sprintf(":%d", HealthPort), "-keys", SealedDir,
			"-tpm", TPMDevice, "-ek-roots", EKRootsPath}}
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
					"configuration and certificates",
				Awaits: KeyFiles(devKeys)},
			{Name: "qapi-monitor", Package: MonitorPackage,
				Args: []string{"-state", MonitorDir, "-socket", MonitorSocket,
					"-listen", fmt.Sprintf(":%d", MonitorPort),
					"-uid", "65534", "-gid", "65534",
					"-deny", strings.Join(MonitorDenied, ",")}},
		},
		Network: &netconfig.Config{
			External: netconfig.Interface{Name: "eth0", Addresses: []string{"10.0.2.15/24"},
				Gateway: "10.0.2.2"},
			Internal: netconfig.Interface{Name: "eth1", Addresses: []string{"10.0.3.15/24"}},
			// ManagePort and MonitorPort sit among the client ports: the
			// firewall treats them alike, internal side only.
			Firewall: netconfig.Firewall{TLSPort: ServerPort,
				ClientPorts: []uint16{ClientPort, ManagePort, MonitorPort},
				ConsolePort: HealthPort},
		},
		Health: fmt.Sprintf("http://127.0.0.1:%d/healthz", HealthPort),
	}
}
