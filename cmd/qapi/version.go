package main

import (
	"fmt"
	"runtime/debug"
)

func init() {
	register("version", command{
		summary: "print the build's module version and VCS revision",
		run: func([]string) int {
			info, ok := debug.ReadBuildInfo()
			if !ok {
				fmt.Println("qapi (no build information)")
				return 0
			}
			rev := "unknown"
			for _, s := range info.Settings {
				if s.Key == "vcs.revision" {
					rev = s.Value
				}
			}
			fmt.Printf("qapi %s %s\n", info.Main.Version, rev)
			return 0
		},
	})
}
