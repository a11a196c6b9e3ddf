// Command init is PID 1 of the appliance's root slot, installed as
// /gokrazy/init. It reads the instance description (gokrazy.ManifestPath),
// boots the gokrazy runtime (which mounts /perm), applies the network
// configuration (package netconfig: addresses, routes, the firewall),
// supervises the programs, and once the instance's health URL
// answers, marks the booted slot good on the boot partition.
//
// The same binary is installed as /user/NAME for every program (a symlink).
// Started under that name it runs the real program, /gokrazy/programs/NAME,
// and copies its output line by line to the serial console and to
// /perm/log/NAME.log as well as to gokrazy's in-memory log, so that what a
// program says at boot (a refused key, a bad configuration) can be read on
// the console.
package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// version is set by the image builder (-ldflags -X main.version=...).
var version = "dev"

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if name := filepath.Base(os.Args[0]); strings.HasPrefix(os.Args[0], "/user/") {
		os.Exit(appliance.runProgram(name, os.Args[1:]))
	}
	if err := boot(); err != nil {
		// PID 1 must not exit: the kernel would panic and hide the message.
		slog.Error("qapi init: boot failed; the appliance does not serve", "err", err)
		select {}
	}
	select {}
}
