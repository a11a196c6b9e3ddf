// Package gokrazy describes the gokrazy instance the appliance image runs:
// which programs, with which flags and environment, its network
// configuration, and how a boot is judged healthy.
//
// The image builder (package images) compiles every Program with
// CGO_ENABLED=0, installs it as /user/NAME in the root slot and writes the
// Instance as JSON to ManifestPath. The init (gokrazy/init, installed as
// /gokrazy/init) reads that file, boots the gokrazy runtime and supervises
// the programs. gokrazy's own packer generates Go source for its init; here
// the init is one fixed program and the instance is data, so that a change
// of flags needs no new init.
package gokrazy

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/qapi-az/qapi/netconfig"
)

// ManifestPath is where the instance description lives in the root slot.
const ManifestPath = "/etc/qapi/instance.json"

// Instance is what the image runs.
type Instance struct {
	// Hostname is written to /etc/hostname.
	Hostname string `json:"hostname"`
	// Programs run under gokrazy's supervision, restarted when they exit.
	Programs []Program `json:"programs"`
	// Network is the image's network configuration: both interfaces'
	// roles and addresses, and the firewall. The init applies it before the
	// programs start, unless NetworkPath on /perm holds the machine's own.
	Network *netconfig.Config `json:"network,omitempty"`
	// Health is an HTTP URL that answers 200 once the appliance works. When
	// it does, the init marks the booted slot good on the boot partition,
	// ending boot counting for it.
	Health string `json:"health,omitempty"`
}

// Program is one supervised program.
type Program struct {
	// Name is the file name under /user, and names its $HOME
	// (/perm/home/NAME) and its log (/perm/log/NAME.log).
	Name string `json:"name"`
	// Package is the Go import path of its main package.
	Package string `json:"package"`
	// Args are its command-line arguments, without the program name.
	Args []string `json:"args,omitempty"`
	// Env are extra KEY=VALUE environment entries.
	Env []string `json:"env,omitempty"`
	// Requires are files the program cannot start without (its
	// configuration on /perm). While one is missing the program is not
	// started, and the console says which file is missing and Hint.
	Requires []string `json:"requires,omitempty"`
	// Hint says how to provide the required files.
	Hint string `json:"hint,omitempty"`
	// Awaits are files another program of the instance makes at boot
	// (qapi-firstboot's sealed keys). The program is started once all of
	// them exist; until then the console says which one it waits for. A
	// program that would otherwise make such a file itself, racing its
	// maker, awaits it instead.
	Awaits []string `json:"awaits,omitempty"`
}

// Program returns the program of the given name.
func (in *Instance) Program(name string) (Program, bool) {
	for _, p := range in.Programs {
		if p.Name == name {
			return p, true
		}
	}
	return Program{}, false
}

// Validate reports the first missing or malformed field.
func (in *Instance) Validate() error {
	if in.Hostname == "" {
		return fmt.Errorf("instance: hostname is empty")
	}
	seen := map[string]bool{}
	for i, p := range in.Programs {
		if p.Name == "" || p.Package == "" {
			return fmt.Errorf("instance: program %d needs a name and a package", i)
		}
		if seen[p.Name] {
			return fmt.Errorf("instance: program name %q used twice", p.Name)
		}
		seen[p.Name] = true
	}
	if in.Network != nil {
		if err := netconfig.Validate(*in.Network); err != nil {
			return fmt.Errorf("instance: network: %w", err)
		}
	}
	return nil
}

// Load reads an Instance from a JSON file.
func Load(path string) (*Instance, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the instance description: %w", err)
	}
	var in Instance
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	return &in, in.Validate()
}

// Marshal returns the canonical JSON form the image builder installs.
func (in *Instance) Marshal() ([]byte, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(in, "", "\t")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
