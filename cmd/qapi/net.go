package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/qapi-az/qapi/netconfig"
)

func init() {
	register("net", command{
		summary: "interfaces and firewall: qapi net apply|check|status|watch|dhcp|counters",
		run:     runNet,
	})
}

const netUsage = `usage:
  qapi net apply [-resolv-conf FILE] CONFIG   make the interfaces and firewall match CONFIG
  qapi net check CONFIG                       validate CONFIG without touching anything
  qapi net status [-json] CONFIG              show each role's link: up, speed, duplex
  qapi net watch CONFIG                       print link changes until interrupted
  qapi net dhcp [-resolv-conf FILE] CONFIG    keep the internal DHCP lease until interrupted
  qapi net counters [-json]                   show what the firewall dropped, by role`

func runNet(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, netUsage)
		return 2
	}
	fs := flag.NewFlagSet("qapi net "+args[0], flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintln(os.Stderr, netUsage) }
	resolv := fs.String("resolv-conf", "/etc/resolv.conf",
		"`file` to write the name servers to; empty leaves it alone")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}

	wantConfig := args[0] != "counters"
	if wantConfig && fs.NArg() != 1 || !wantConfig && fs.NArg() != 0 {
		fmt.Fprintln(os.Stderr, netUsage)
		return 2
	}
	var cfg netconfig.Config
	if wantConfig {
		var err error
		if cfg, err = netconfig.Load(fs.Arg(0)); err != nil {
			fmt.Fprintf(os.Stderr, "qapi net %s: %v\nFix the configuration and try again.\n",
				args[0], err)
			return 1
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch args[0] {
	case "check":
		fmt.Println("configuration is valid")
		return 0
	case "apply":
		changes, err := netconfig.Apply(ctx, cfg, netconfig.Options{ResolvConf: *resolv})
		for _, c := range changes {
			fmt.Println(c)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "qapi net apply: %v\n", err)
			return 1
		}
		if len(changes) == 0 {
			fmt.Println("nothing to change")
		}
		return 0
	case "status":
		st, err := netconfig.Status(cfg)
		if err != nil {
			fmt.Fprintf(os.Stderr, "qapi net status: %v\n", err)
			return 1
		}
		if *asJSON {
			return printJSON(st)
		}
		for _, s := range st {
			printLink(s)
		}
		return 0
	case "watch":
		err := netconfig.Watch(ctx, cfg, func(e netconfig.LinkEvent) {
			if *asJSON {
				printJSON(e)
				return
			}
			fmt.Print(e.Time.Format("15:04:05 "))
			printLink(e.Status)
		})
		if err != nil {
			fmt.Fprintf(os.Stderr, "qapi net watch: %v\n", err)
			return 1
		}
		return 0
	case "dhcp":
		err := netconfig.RunDHCP(ctx, cfg, netconfig.Options{ResolvConf: *resolv},
			func(c netconfig.Change) { fmt.Println(c) })
		if err != nil {
			fmt.Fprintf(os.Stderr, "qapi net dhcp: %v\n", err)
			return 1
		}
		return 0
	case "counters":
		cs, err := netconfig.Counters()
		if err != nil {
			fmt.Fprintf(os.Stderr, "qapi net counters: %v\n", err)
			return 1
		}
		if *asJSON {
			return printJSON(cs)
		}
		for _, c := range cs {
			fmt.Printf("%-14s %12d packets %14d bytes\n", c.Name, c.Packets, c.Bytes)
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "qapi net: unknown subcommand %q\n%s\n", args[0], netUsage)
	return 2
}

func printLink(s netconfig.LinkStatus) {
	state := "down"
	if s.Up {
		state = "up"
	}
	speed := "speed unknown"
	if s.SpeedMbps > 0 {
		speed = fmt.Sprintf("%d Mbit/s", s.SpeedMbps)
	}
	fmt.Printf("%-8s %-12s %-4s %-14s %s duplex", s.Role, s.Name, state, speed, s.Duplex)
	if s.Warning != "" {
		fmt.Printf("  WARNING: %s", s.Warning)
	}
	fmt.Println()
}

func printJSON(v any) int {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(os.Stderr, "qapi net: %v\n", err)
		return 1
	}
	return 0
}
