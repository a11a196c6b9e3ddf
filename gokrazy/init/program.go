package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/qapi-az/qapi/gokrazy"
)

// Where the real programs and their logs live.
const (
	programsDir = "/gokrazy/programs"
	logDir      = "/perm/log"
	// logLimit bounds one log file; the previous one is kept as NAME.log.1.
	logLimit = 4 << 20
	// dontSupervise is the exit code that tells gokrazy not to restart a
	// program.
	dontSupervise = 125
)

// runProgram runs the program name with args, copying its output to the
// sinks, and returns its exit code, so that gokrazy sees the program's own
// (exit code 125 keeps gokrazy from restarting it).
func runProgram(name string, args []string) int {
	if in, err := gokrazy.Load(gokrazy.ManifestPath); err == nil {
		if p, ok := in.Program(name); ok {
			for _, f := range p.Requires {
				if _, err := os.Stat(f); err != nil {
					msg := fmt.Sprintf("%s: not started: %s is missing; %s\n", name, f, p.Hint)
					os.Stderr.WriteString(msg)
					if c, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
						c.WriteString(msg)
						c.Close()
					}
					return dontSupervise
				}
			}
		}
	}
	cmd := exec.Command(filepath.Join(programsDir, name), args...)
	cmd.Stdin = os.Stdin
	pr, pw, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	cmd.Stdout, cmd.Stderr = pw, pw

	sinks := []io.Writer{os.Stderr}
	if c, err := os.OpenFile("/dev/console", os.O_WRONLY|os.O_APPEND, 0); err == nil {
		defer c.Close()
		sinks = append(sinks, c)
	}
	if l, err := openLog(name); err == nil {
		defer l.Close()
		sinks = append(sinks, l)
	} else {
		fmt.Fprintf(os.Stderr, "%s: no log file on /perm: %v\n", name, err)
	}

	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	pw.Close()

	// Pass stop signals on: gokrazy signals the process group, but a
	// signal sent to this process alone must reach the program too.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() {
		for s := range sig {
			cmd.Process.Signal(s)
		}
	}()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s := bufio.NewScanner(pr)
		s.Buffer(make([]byte, 64<<10), 1<<20)
		for s.Scan() {
			line := append([]byte(name+": "), s.Bytes()...)
			line = append(line, '\n')
			for _, w := range sinks {
				w.Write(line)
			}
		}
	}()
	err = cmd.Wait()
	wg.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return 1
	}
	return 0
}

// openLog opens /perm/log/NAME.log for appending, first moving a log past
// logLimit aside.
func openLog(name string) (*os.File, error) {
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return nil, err
	}
	p := filepath.Join(logDir, name+".log")
	if fi, err := os.Stat(p); err == nil && fi.Size() > logLimit {
		os.Rename(p, p+".1")
	}
	return os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
}
