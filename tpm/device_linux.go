package tpm

import (
	"os"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"
)

// DevicePaths are the TPM character devices Open tries, in order: the
// kernel's resource manager first, which flushes what a crashed process
// left loaded, then the raw device for kernels without it.
var DevicePaths = []string{"/dev/tpmrm0", "/dev/tpm0"}

// Open opens the first TPM of paths (DevicePaths if none are given). A path
// is a TPM character device, or the Unix socket of a TPM emulator such as
// swtpm, for development. When none opens it returns a *NoTPMError naming
// every path tried. Close closes the device.
func Open(paths ...string) (*TPM, error) {
	if len(paths) == 0 {
		paths = DevicePaths
	}
	e := &NoTPMError{}
	for _, p := range paths {
		var dev transport.TPMCloser
		fi, err := os.Stat(p)
		switch {
		case err != nil:
		case fi.Mode()&os.ModeSocket != 0:
			dev, err = linuxudstpm.Open(p)
		default:
			dev, err = linuxtpm.Open(p)
		}
		if err != nil {
			e.Tried = append(e.Tried, p)
			e.Errs = append(e.Errs, err)
			continue
		}
		return &TPM{t: dev, closer: dev}, nil
	}
	return nil, e
}
