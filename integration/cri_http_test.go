//go:build linux

package integration

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCRIHTTP: a wazero pod in its own network namespace on a CNI bridge network serves HTTP
// (/httpserver.wasm with WAZERO_LISTEN=:8080) on its pod IP. An httpGet probe as the kubelet
// sends it succeeds as soon as the container has started and fails with "connection refused" once
// it is stopped. A second container of the pod serves on :8081 in the per-request mode
// (/wagi.wasm with WAZERO_WAGI): fresh instances, a trap is a 500 in its log, SIGTERM exits 0.
// The test process reaches the pod IP from the host network namespace through the bridge, which gets an address of the pod subnet
// (the conflist has isGateway false, so the bridge plugin does not enable IP forwarding on the
// host). Afterwards the pod, its veth and its IP allocation are gone, and so is the bridge.
func TestCRIHTTP(t *testing.T) {
	forEachCRIDaemon(t, func(t *testing.T, c *criClient) {
		var tr tracked
		n := c.bridgeNetwork(t)
		bridge, network, prefix, ipamDir := n.bridge, n.network, n.prefix, n.ipamDir
		subnet := prefix + "0/24"
		p := c.runPod("wz-http", "wazero", false)
		pi := p.inspect()
		tr.track(t, p.id, pi.Info.Pid)
		for _, ns := range pi.Info.RuntimeSpec.Linux.Namespaces {
			if ns.Type == "network" && ns.Path != "" {
				tr.netns = append(tr.netns, ns.Path)
			}
		}
		podIP := pi.Status.Network.IP
		t.Logf("pod %s: ip %q, bridge %s, network namespace %v", p.id, podIP, bridge, tr.netns)
		if ip := net.ParseIP(podIP); ip == nil || !strings.HasPrefix(podIP, prefix) {
			t.Fatalf("pod IP %q, want one from %s", podIP, subnet)
		}
		if sb, ok := runnerOf(p.id); !ok {
			t.Errorf("no sandbox runner for %s", p.id)
		} else if nsInode(t, sb.pid, "net") == nsInode(t, "self", "net") {
			t.Errorf("sandbox runner is in the host network namespace")
		}

		// The host's way to the pod subnet: an address of it on the bridge (a connected route).
		if out, err := exec.Command("ip", "addr", "add", prefix+"1/24", "dev", bridge).CombinedOutput(); err != nil {
			t.Fatalf("ip addr add %s1/24 dev %s: %v %s", prefix, bridge, err, out)
		}
		if out, err := exec.Command("ip", "-4", "route", "get", podIP).CombinedOutput(); err != nil || !strings.Contains(string(out), "dev "+bridge) {
			t.Fatalf("ip route get %s: %v, want a route through %s:\n%s", podIP, err, bridge, out)
		}

		w, _ := p.run(ctrSpec{name: "web", command: []string{"/httpserver.wasm"}, envs: map[string]string{"WAZERO_LISTEN": ":8080"}})
		base := "http://" + net.JoinHostPort(podIP, "8080")
		// The kubelet starts probing once StartContainer has returned: an httpGet probe on the pod
		// IP succeeds from then on (polled here, faster than any probe period, until a deadline).
		started := time.Now()
		for attempt := 1; ; attempt++ {
			err := kubeProbe(base + "/health")
			if err == nil {
				t.Logf("kubelet-style probe GET %s/health succeeded %s after crictl start returned (attempt %d)", base, time.Since(started).Round(time.Millisecond), attempt)
				break
			}
			if time.Since(started) > 20*time.Second {
				t.Fatalf("kubelet-style probe GET %s/health still failing 20s after crictl start: %v\ncrictl logs web:\n%s", base, err, c.logs(w))
			}
			time.Sleep(50 * time.Millisecond)
		}
		wi := c.waitState(w, stateRunning, 20*time.Second)
		tr.track(t, w, wi.Info.Pid)
		if wr, ok := runnerOf(w); !ok {
			t.Errorf("no runner for %s", w)
		} else if sb, ok := runnerOf(p.id); ok && nsInode(t, wr.pid, "net") != nsInode(t, sb.pid, "net") {
			t.Errorf("workload runner is not in the sandbox's network namespace")
		}

		if code, body := getUntil(t, base+"/health", 20*time.Second); code != 200 || body != "ok" {
			t.Errorf("GET %s/health: %d %q, want 200 \"ok\"", base, code, body)
		}
		if code, body := getUntil(t, base+"/hello", 10*time.Second); code != 200 || body != "hello from wasm http" {
			t.Errorf("GET %s/hello: %d %q, want 200 \"hello from wasm http\"", base, code, body)
		}
		if t.Failed() {
			t.Logf("crictl logs web:\n%s", c.logs(w))
		}

		// A second container of the pod in the per-request mode, on another port of the same pod
		// IP: a fresh instance per request (a handler counting its calls always sees 1).
		wg, _ := p.run(ctrSpec{name: "wagi", command: []string{"/wagi.wasm"}, envs: map[string]string{"WAZERO_WAGI": ":8081"}})
		wgi := c.waitState(wg, stateRunning, 20*time.Second)
		tr.track(t, wg, wgi.Info.Pid)
		wagiBase := "http://" + net.JoinHostPort(podIP, "8081")
		for i := 0; i < 3; i++ {
			if code, body := getUntil(t, wagiBase+"/count", 20*time.Second); code != 200 || body != "calls=1\n" {
				t.Errorf("GET %s/count #%d: %d %q, want 200 \"calls=1\"", wagiBase, i, code, body)
			}
		}
		if code, _ := getUntil(t, wagiBase+"/trap", 20*time.Second); code != 500 {
			t.Errorf("GET %s/trap: %d, want 500", wagiBase, code)
		}
		if logs := c.logs(wg); !strings.Contains(logs, "wagi: GET /trap: wasm trap in module /wagi.wasm") {
			t.Errorf("crictl logs wagi does not report the trap:\n%s", logs)
		}
		c.must("stop", "--timeout", "5", wg)
		if st := c.waitState(wg, stateExited, 30*time.Second); st.Status.ExitCode != 0 {
			t.Errorf("the per-request container exited %d after crictl stop (SIGTERM), want 0", st.Status.ExitCode)
		}

		// Stopped (as the kubelet stops it: SIGTERM, then SIGKILL after the grace period), the
		// container no longer listens, and the probe fails with "connection refused" from the pod's
		// network namespace, which lives on with the sandbox.
		c.must("stop", "--timeout", "5", w)
		c.waitState(w, stateExited, 30*time.Second)
		if err := kubeProbe(base + "/health"); err == nil {
			t.Errorf("kubelet-style probe GET %s/health succeeded after crictl stop", base)
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("kubelet-style probe GET %s/health after crictl stop: %v, want connection refused", base, err)
		} else {
			t.Logf("after crictl stop the probe fails: %v", err)
		}

		c.removeAllAndCheck(&tr)

		// The pod's veth left the bridge, and host-local released its IP.
		if ents, err := os.ReadDir(filepath.Join("/sys/class/net", bridge, "brif")); err != nil {
			t.Errorf("bridge %s: %v", bridge, err)
		} else if len(ents) != 0 {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Errorf("bridge %s still has ports after rmp: %v", bridge, names)
		}
		if _, err := os.Stat(filepath.Join(ipamDir, network, podIP)); err == nil {
			t.Errorf("host-local still holds %s after rmp (%s)", podIP, filepath.Join(ipamDir, network, podIP))
		}
		// The pod IP no longer answers.
		if conn, err := net.DialTimeout("tcp", net.JoinHostPort(podIP, "8080"), time.Second); err == nil {
			conn.Close()
			t.Errorf("%s:8080 still accepts connections after rmp", podIP)
		}
		// Remove the bridge now (as the cleanup would) and check it and its route are gone.
		if out, err := exec.Command("ip", "link", "del", bridge).CombinedOutput(); err != nil {
			t.Errorf("ip link del %s: %v %s", bridge, err, out)
		}
		if _, err := os.Stat("/sys/class/net/" + bridge); err == nil {
			t.Errorf("bridge %s still exists after ip link del", bridge)
		}
		if out, _ := exec.Command("ip", "-4", "route", "show", "dev", bridge).CombinedOutput(); strings.Contains(string(out), prefix) {
			t.Errorf("route to %s left after the bridge's removal:\n%s", subnet, out)
		}
	})
}

// kubeProbe sends one httpGet probe the way the kubelet does (k8s.io/kubernetes pkg/probe/http):
// GET with User-Agent kube-probe/MAJOR.MINOR and Accept */*, a new connection without keep-alive
// and without a proxy, the probe's timeoutSeconds (1 s, the default) for the whole request, at most
// 10 KiB of the body read, and a status of 200-399 as success. Redirects are not followed: the
// kubelet follows only those to the same host, and the server sends none.
func kubeProbe(url string) error {
	c := &http.Client{
		Timeout:       time.Second,
		Transport:     &http.Transport{Proxy: nil, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "kube-probe/1.34")
	req.Header.Set("Accept", "*/*")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10)); err != nil {
		return err
	}
	if resp.StatusCode < http.StatusOK || resp.StatusCode >= http.StatusBadRequest {
		return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
	}
	return nil
}
