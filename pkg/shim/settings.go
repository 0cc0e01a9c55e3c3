package shim

import (
	"errors"

	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/engine"
	"github.com/wazero-shim/containerd-shim-wazero-v1/pkg/oci"
)

// settings are the node's settings of a shim: what containerd's environment (the CONTAINERD_SHIM_
// WAZERO_* variables, docs/coldstart.md and README "Settings") says, read once when the task
// server starts, with each bad value replaced by its default and reported then. Everything that
// needs one gets it from here, never from the environment again: a shim's settings cannot change
// between two of its containers, and a bad value is reported once, not at every Create.
type settings struct {
	// CacheDir is the node's compilation cache (engine.CacheDir); "" would run without one.
	CacheDir string
	// CacheMaxBytes bounds the cache's entries (engine.CacheMaxBytes); 0: unbounded.
	CacheMaxBytes int64
	// ModulesDir holds the modules copied out of image layers (engine.ModulesDir beside CacheDir).
	ModulesDir string
	// ModulesMaxBytes bounds ModulesDir (engine.ModulesMaxBytes); 0: unbounded.
	ModulesMaxBytes int64
	// ColdStart is the node's cold-start policy for containers that choose none
	// (engine.ColdStartDefault).
	ColdStart oci.ColdStart
	// Fill bounds the background compiles (engine.FillLimitsFromEnv).
	Fill engine.FillLimits
}

// loadSettings reads the shim's settings from its environment. The error joins one error per bad
// value (each says which variable, what is wrong and the default used instead); the settings are
// usable either way.
func loadSettings() (settings, error) {
	var errs []error
	note := func(what string, err error) {
		if err != nil {
			errs = append(errs, errors.New(what+": "+err.Error()))
		}
	}
	s := settings{CacheDir: engine.CacheDir()}
	s.ModulesDir = engine.ModulesDir(s.CacheDir)
	var err error
	s.CacheMaxBytes, err = engine.CacheMaxBytes()
	note("compilation cache size bound", err)
	s.ModulesMaxBytes, err = engine.ModulesMaxBytes()
	note("modules directory size bound", err)
	s.ColdStart, err = engine.ColdStartDefault()
	note("cold-start policy (using auto)", err)
	s.Fill, err = engine.FillLimitsFromEnv()
	note("background compile limits", err)
	return s, errors.Join(errs...)
}
