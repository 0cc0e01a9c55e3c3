package main

import (
	"fmt"
	"path/filepath"
	"strings"
)

// layout is where a distribution keeps containerd's binary, config, socket and service.
type layout struct {
	name string
	// config is the host path of the file the installer edits; for k3s and RKE2 it is chosen
	// among templates (see templateFor).
	config string
	// template: the file is a Go template that k3s/RKE2 render into rendered at each start;
	// {{ template "base" . }} stands for their generated config.
	template bool
	rendered string
	// dropIn: the file holds only this runtime and is merged by the distribution (k0s's
	// containerd.d); created when missing.
	dropIn   bool
	binaries []string // containerd binary, first that exists
	socket   string   // containerd's gRPC socket (the CRI endpoint)
	units    []string // systemd units that run containerd, in order of preference
}

var layouts = []layout{
	{
		name:     "containerd",
		config:   "/etc/containerd/config.toml",
		binaries: []string{"/usr/bin/containerd", "/usr/local/bin/containerd", "/usr/sbin/containerd", "/bin/containerd", "/opt/containerd/bin/containerd"},
		socket:   "/run/containerd/containerd.sock",
		units:    []string{"containerd"},
	},
	{
		name:     "k3s",
		config:   "/var/lib/rancher/k3s/agent/etc/containerd",
		template: true, rendered: "/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
		binaries: []string{"/var/lib/rancher/k3s/data/current/bin/containerd"},
		socket:   "/run/k3s/containerd/containerd.sock",
		units:    []string{"k3s", "k3s-agent"},
	},
	{
		name:     "rke2",
		config:   "/var/lib/rancher/rke2/agent/etc/containerd",
		template: true, rendered: "/var/lib/rancher/rke2/agent/etc/containerd/config.toml",
		binaries: []string{"/var/lib/rancher/rke2/bin/containerd", "/var/lib/rancher/rke2/data/current/bin/containerd"},
		socket:   "/run/k3s/containerd/containerd.sock",
		units:    []string{"rke2-server", "rke2-agent"},
	},
	{
		name:     "k0s",
		config:   "/etc/k0s/containerd.d/wazero.toml",
		dropIn:   true,
		binaries: []string{"/var/lib/k0s/bin/containerd"},
		socket:   "/run/k0s/containerd.sock",
		units:    []string{"k0scontroller", "k0sworker"},
	},
	{
		name:     "microk8s",
		config:   "/var/snap/microk8s/current/args/containerd-template.toml",
		binaries: []string{"/snap/microk8s/current/bin/containerd"},
		socket:   "/var/snap/microk8s/common/run/containerd.sock",
		units:    []string{"snap.microk8s.daemon-containerd"},
	},
}

func layoutNames() string {
	var n []string
	for _, l := range layouts {
		n = append(n, l.name)
	}
	return strings.Join(n, ", ")
}

// markers are the host paths whose presence says a distribution runs containerd on this node.
var markers = map[string][]string{
	"k3s":      {"/var/lib/rancher/k3s/agent/etc/containerd", "/var/lib/rancher/k3s/data/current/bin/containerd"},
	"rke2":     {"/var/lib/rancher/rke2/agent/etc/containerd", "/var/lib/rancher/rke2/bin/containerd"},
	"k0s":      {"/var/lib/k0s/bin/containerd", "/etc/k0s/containerd.toml"},
	"microk8s": {"/var/snap/microk8s/current/args/containerd-template.toml"},
}

// detectLayout picks the layout named by -distro, or (auto) the one whose marker paths exist on
// the host; plain containerd when none does. Two distributions on one node is an error: the
// operator must say which.
func (o *options) detectLayout() (layout, error) {
	if o.distro != "auto" {
		for _, l := range layouts {
			if l.name == o.distro {
				return l, nil
			}
		}
		return layout{}, fmt.Errorf("-distro %q: want auto, %s", o.distro, layoutNames())
	}
	var found []layout
	for _, l := range layouts[1:] {
		for _, m := range markers[l.name] {
			if o.exists(m) {
				found = append(found, l)
				break
			}
		}
	}
	switch len(found) {
	case 0:
		return layouts[0], nil
	case 1:
		return found[0], nil
	}
	var n []string
	for _, l := range found {
		n = append(n, l.name)
	}
	return layout{}, fmt.Errorf("this node has the containerd layouts of %s: pass -distro to say which one runs the kubelet's containerd", strings.Join(n, " and "))
}

// templateFor picks the k3s/RKE2 template to edit: an existing config-v3.toml.tmpl (read by
// their containerd 2.x builds), else an existing config.toml.tmpl, else the one for the
// containerd version.
func (o *options) templateFor(l layout, major int) string {
	v3 := filepath.Join(l.config, "config-v3.toml.tmpl")
	v2 := filepath.Join(l.config, "config.toml.tmpl")
	switch {
	case o.exists(v3):
		return v3
	case o.exists(v2):
		return v2
	case major >= 2:
		return v3
	}
	return v2
}

// unit is the systemd unit to restart: -restart-unit, else the layout's first unit that is
// enabled (a multi-user.target.wants link), else the first whose unit file exists, else the first.
func (o *options) unit(l layout) string {
	if o.restartUnit != "" {
		return o.restartUnit
	}
	for _, u := range l.units {
		if o.exists("/etc/systemd/system/multi-user.target.wants/" + u + ".service") {
			return u
		}
	}
	for _, u := range l.units {
		for _, d := range []string{"/etc/systemd/system/", "/usr/local/lib/systemd/system/", "/lib/systemd/system/", "/usr/lib/systemd/system/"} {
			if o.exists(d + u + ".service") {
				return u
			}
		}
	}
	return l.units[0]
}
