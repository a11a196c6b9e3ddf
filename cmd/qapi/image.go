package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/qapi-az/qapi/gokrazy"
	"github.com/qapi-az/qapi/images"
)

func init() {
	register("image", command{
		summary: "build the appliance disk image: qapi image build -o disk.img -size 2G",
		run:     runImage,
	})
}

func runImage(args []string) int {
	if len(args) == 0 || args[0] != "build" {
		fmt.Fprintln(os.Stderr, "usage: qapi image build -o disk.img [-size 2G] [flags]")
		return 2
	}
	fs := flag.NewFlagSet("qapi image build", flag.ContinueOnError)
	out := fs.String("o", "disk.img", "disk image `file` to write")
	size := fs.String("size", "2G", "disk size (bytes, or with a K, M, G suffix)")
	devKeys := fs.Bool("dev-keys", false, "development mode: keep the keys in plain files "+
		"instead of sealing them with the TPM")
	perm := fs.String("perm", "", "`folder` whose contents seed the perm partition, "+
		"e.g. qapi/qapi-server.json of a registered server")
	module := fs.String("module", "", "`folder` of the qapi module to build from "+
		"(default: the one around the current folder)")
	cache := fs.String("cache", images.DefaultCacheDir, "kernel package cache `dir`")
	kernelDeb := fs.String("kernel-deb", "", "Debian kernel `package` file to use "+
		"instead of downloading linux-image-amd64")
	diskID := fs.String("disk-id", images.DefaultDiskID, "seed of the disk's GUIDs")
	version := fs.String("version", "dev", "version named in the boot menu")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *module == "" {
		dir, err := findModule()
		if err != nil {
			fmt.Fprintf(os.Stderr, "qapi image build: %v\n", err)
			return 2
		}
		*module = dir
	}
	n, err := parseSize(*size)
	if err != nil {
		fmt.Fprintf(os.Stderr, "qapi image build: -size: %v\n", err)
		return 2
	}
	c := images.Config{
		Output:    *out,
		Size:      n,
		ModuleDir: *module,
		CacheDir:  *cache,
		KernelDeb: *kernelDeb,
		DiskID:    *diskID,
		Version:   *version,
		PermDir:   *perm,
		Instance:  gokrazy.Default(*devKeys),
		Progress:  os.Stderr,
	}
	if *devKeys {
		fmt.Fprintln(os.Stderr, "qapi image build: -dev-keys: this image keeps its keys "+
			"in plain files, without the TPM; never use it for a real exchange")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := images.Build(ctx, c)
	if err != nil {
		fmt.Fprintf(os.Stderr, "qapi image build: %v\n", err)
		return 1
	}
	fmt.Printf("%s: %d bytes, kernel %s, root %d bytes, initramfs %d bytes\n",
		*out, n, res.Kernel, res.RootBytes, res.InitBytes)
	return 0
}

// parseSize parses 2G, 512M, 1048576.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("malformed size %q: want for example 2G or 1536M", s)
	}
	return n * mult, nil
}

// findModule returns the folder of the qapi module that holds the current
// folder.
func findModule() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(b), "module github.com/qapi-az/qapi\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("not inside the qapi source tree: run from it, or give -module")
		}
		dir = parent
	}
}
