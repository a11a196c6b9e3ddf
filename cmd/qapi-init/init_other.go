//go:build !linux

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "qapi-init is the appliance's initramfs and runs on Linux only")
	os.Exit(1)
}
