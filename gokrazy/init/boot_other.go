//go:build !linux

package main

import "errors"

func boot() error { return errors.New("the appliance init runs on Linux only") }
