package oci

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ConfigFile is the name of the runtime spec inside a bundle.
const ConfigFile = "config.json"

// LoadSpec reads and decodes bundle/config.json.
func LoadSpec(bundle string) (*specs.Spec, error) {
	data, err := os.ReadFile(filepath.Join(bundle, ConfigFile))
	if err != nil {
		return nil, fmt.Errorf("read OCI spec: %w", err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("decode OCI spec %s: %w: %w", filepath.Join(bundle, ConfigFile), err, errdefs.ErrInvalidArgument)
	}
	if s.Process == nil || len(s.Process.Args) == 0 {
		return nil, fmt.Errorf("OCI spec has no process args: nothing names the module to run: %w", errdefs.ErrInvalidArgument)
	}
	return &s, nil
}

// Env returns the value of key in a KEY=VALUE list, and whether it was there.
func Env(env []string, key string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		k, v, ok := cutEnv(env[i])
		if ok && k == key {
			return v, true
		}
	}
	return "", false
}

func cutEnv(kv string) (string, string, bool) {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], true
		}
	}
	return kv, "", false
}
