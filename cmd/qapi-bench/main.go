// Command qapi-bench measures the exchange path on one machine: it starts
// two security servers (qapi-server) and the sample register
// (qapi-sampleis) as separate processes on loopback, with throwaway
// certificates and message logging on, then drives 10 KB requests:
//
//  1. N concurrent clients through client server -> provider server ->
//     register, for -duration: requests/s and latency p50/p99/max;
//  2. the same load straight at the register, for comparison;
//  3. a fixed rate of -rate requests/s (clause 5.4: 60) through the chain:
//     p50/p99/max;
//
// and prints the resident memory (VmRSS, VmHWM) of each server process.
//
//	go run ./cmd/qapi-bench -duration 10s
//
// The default of -clients is the servers' default maxConcurrent
// (server.DefaultMaxConcurrent, 64), so that the load fills what a server
// works on at once.
//
// The programs are built with "go build" into a temporary folder unless
// -bin names a folder holding qapi-server and qapi-sampleis.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/qapi-az/qapi/appliance/server"
)

func main() {
	var o options
	flag.IntVar(&o.clients, "clients", server.DefaultMaxConcurrent,
		"concurrent clients of the load runs (the servers' default maxConcurrent)")
	flag.DurationVar(&o.duration, "duration", 10e9, "length of each load run")
	flag.IntVar(&o.rate, "rate", 60, "requests per second of the fixed-rate run (clause 5.4)")
	flag.DurationVar(&o.rateDuration, "rate-duration", 10e9, "length of the fixed-rate run")
	flag.IntVar(&o.size, "size", 10240, "request size in bytes (clause 5.2: at most 10240)")
	flag.StringVar(&o.bin, "bin", "", "`folder` with qapi-server and qapi-sampleis "+
		"(built when empty)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write CPU profiles of the servers, "+
		"the register and the load generator as `prefix`-client.pprof, "+
		"prefix-provider.pprof, prefix-register.pprof and prefix-load.pprof")
	flag.StringVar(&o.dir, "dir", "", "`folder` in which to put the servers' files "+
		"(message logs, databases); the system's temporary folder when empty")
	flag.StringVar(&o.serverLogLevel, "server-log-level", "warn", "the servers' `logLevel`; "+
		"info logs a line per exchange")
	flag.BoolVar(&o.keep, "keep", false, "keep the working folder (configurations, logs)")
	flag.Parse()
	if err := run(o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "qapi-bench:", err)
		os.Exit(1)
	}
}
