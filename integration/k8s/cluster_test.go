//go:build linux

package k8s

// One cluster per containerd version: every process runs inside a fresh network namespace
// (nsenter --net), so ports are private (etcd 2379, kube-apiserver 6443, kubelet 10250 on that
// namespace's 127.0.0.1) and the CNI bridge and pod addresses never reach the host's network.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	crand "crypto/rand"

	"github.com/wazero-shim/containerd-shim-wazero-v1/integration/testenv"
)

const (
	nodeName  = "127.0.0.1" // --hostname-override: the node's address is its name (--node-ip refuses loopback)
	apiServer = "https://127.0.0.1:6443"
	token     = "wazero-shim-test-token"
)

// cluster is one node: control plane, kubelet and a private containerd, all in netns.
type cluster struct {
	t          *testing.T
	version    string // containerd version
	dir        string
	netns      string // ip netns name
	nsPath     string
	kubeconfig string
	procs      []*proc
}

type proc struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
}

// startCluster brings a node up on containerd version and registers its teardown.
func startCluster(t *testing.T, version string) *cluster {
	t.Helper()
	dir := filepath.Join(suite.tmp, version)
	c := &cluster{
		t: t, version: version, dir: dir,
		netns: suiteTag() + "-" + strings.NewReplacer(".", "").Replace(version),
	}
	c.nsPath = filepath.Join("/run/netns", c.netns)
	t.Cleanup(c.teardown)
	for _, sub := range []string{"pki", "etcd", "containerd", "kubelet", "pods-logs", "cni", "cache", "state"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("ip", "netns", "add", c.netns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", c.netns, err, out)
	}
	if out, err := exec.Command("ip", "-n", c.netns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s link set lo up: %v\n%s", c.netns, err, out)
	}
	c.writePKI()
	c.writeKubeconfig()

	start := time.Now()
	c.startContainerd()
	c.importImages()
	c.spawn("etcd", filepath.Join(kubeBin, "etcd"),
		"--name", "wzk8s", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "wzk8s=http://127.0.0.1:2380", "--unsafe-no-fsync", "--log-level", "warn")
	pki := func(f string) string { return filepath.Join(dir, "pki", f) }
	c.spawn("kube-apiserver", filepath.Join(kubeBin, "kube-apiserver"),
		"--etcd-servers", "http://127.0.0.1:2379",
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", "6443",
		"--endpoint-reconciler-type", "none",
		"--tls-cert-file", pki("apiserver.crt"), "--tls-private-key-file", pki("apiserver.key"),
		"--client-ca-file", pki("ca.crt"),
		"--token-auth-file", pki("tokens.csv"), "--authorization-mode", "AlwaysAllow",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", pki("sa.pub"), "--service-account-signing-key-file", pki("sa.key"),
		"--service-cluster-ip-range", "10.223.0.0/24", "--allow-privileged=true",
		"--cert-dir", filepath.Join(dir, "pki", "apiserver"))
	c.waitFor("kube-apiserver to serve", 90*time.Second, func() (bool, string) {
		r := c.kubectlR("get", "--raw", "/readyz")
		return r.exit == 0 && strings.Contains(r.stdout, "ok"), r.String()
	})
	c.spawn("kube-controller-manager", filepath.Join(kubeBin, "kube-controller-manager"),
		"--kubeconfig", c.kubeconfig, "--leader-elect=false", "--bind-address", "127.0.0.1",
		"--service-account-private-key-file", pki("sa.key"), "--root-ca-file", pki("ca.crt"),
		"--cert-dir", filepath.Join(dir, "pki", "kcm"))
	c.spawn("kube-scheduler", filepath.Join(kubeBin, "kube-scheduler"),
		"--kubeconfig", c.kubeconfig, "--leader-elect=false", "--bind-address", "127.0.0.1",
		"--cert-dir", filepath.Join(dir, "pki", "scheduler"))
	c.startKubelet()
	c.waitFor("node "+nodeName+" to be Ready", 120*time.Second, func() (bool, string) {
		r := c.kubectlR("get", "node", nodeName, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		return r.exit == 0 && strings.TrimSpace(r.stdout) == "True", r.String()
	})
	c.waitFor("the default service account", 60*time.Second, func() (bool, string) {
		r := c.kubectlR("get", "serviceaccount", "default")
		return r.exit == 0, r.String()
	})
	t.Logf("cluster on containerd %s ready in %s (kubelet %s, netns %s)", version, time.Since(start).Round(100*time.Millisecond), kubeVersion, c.netns)
	return c
}

// writePKI writes a CA, the API server's serving certificate, the token file and the service
// account key pair.
func (c *cluster) writePKI() {
	t := c.t
	pki := filepath.Join(c.dir, "pki")
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "wazero-shim-test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(crand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.223.0.1")},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
	}
	srvDER, err := x509.CreateCertificate(crand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	saKey, _ := rsa.GenerateKey(crand.Reader, 2048)
	saPub, _ := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	ecDER := func(k *ecdsa.PrivateKey) []byte { b, _ := x509.MarshalECPrivateKey(k); return b }
	files := map[string][]byte{
		"ca.crt":        pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		"apiserver.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}),
		"apiserver.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER(srvKey)}),
		"sa.key":        pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)}),
		"sa.pub":        pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}),
		// token,user,uid,"group1,group2"
		"tokens.csv": []byte(token + `,wazero-shim-test,wazero-shim-test,"system:masters"` + "\n"),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(pki, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func (c *cluster) writeKubeconfig() {
	c.kubeconfig = filepath.Join(c.dir, "kubeconfig")
	ca, err := os.ReadFile(filepath.Join(c.dir, "pki", "ca.crt"))
	if err != nil {
		c.t.Fatal(err)
	}
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: wzk8s
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: wzk8s
  user:
    token: %s
contexts:
- name: wzk8s
  context:
    cluster: wzk8s
    user: wzk8s
    namespace: default
current-context: wzk8s
`, apiServer, filepath.Join(c.dir, "pki", "ca.crt"), token)
	_ = ca
	if err := os.WriteFile(c.kubeconfig, []byte(cfg), 0o600); err != nil {
		c.t.Fatal(err)
	}
}

// spawn starts bin inside the cluster's network namespace, its output in DIR/NAME.log. If the test
// binary dies, the process gets SIGKILL (TestMain's leak check would report anything left).
func (c *cluster) spawn(name, bin string, args ...string) *proc {
	c.t.Helper()
	return c.spawnEnv(name, nil, bin, args...)
}

func (c *cluster) spawnEnv(name string, env []string, bin string, args ...string) *proc {
	c.t.Helper()
	logPath := filepath.Join(c.dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		c.t.Fatal(err)
	}
	defer logf.Close()
	// nsenter execs bin after setns: the process is bin itself.
	cmd := exec.Command("nsenter", append([]string{"--net=" + c.nsPath, "--", bin}, args...)...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("starting %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(p.exited) }()
	c.procs = append(c.procs, p)
	return p
}

// stop sends SIGTERM and waits up to grace, then SIGKILLs.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		fmt.Fprintf(os.Stderr, "k8s: %s ignored SIGTERM for %s, killing\n", p.name, grace)
		p.cmd.Process.Kill()
		<-p.exited
	}
}

func (c *cluster) proc(name string) *proc {
	for _, p := range c.procs {
		if p.name == name {
			return p
		}
	}
	return nil
}

// waitFor is eventually for the cluster's own test, failing early when a cluster process has exited.
func (c *cluster) waitFor(what string, timeout time.Duration, cond func() (bool, string)) {
	c.t.Helper()
	c.wait(c.t, what, timeout, cond)
}

// wait is eventually, failing t early when a cluster process has exited.
func (c *cluster) wait(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	eventually(t, timeout, what, func() (bool, string) {
		for _, p := range c.procs {
			select {
			case <-p.exited:
				t.Fatalf("waiting for %s: %s exited: %s\n%s", what, p.name, p.cmd.ProcessState, tail(p.log, 40))
			default:
			}
		}
		return cond()
	})
}

// --- containerd ------------------------------------------------------------------------------

func (c *cluster) sock() string { return filepath.Join(c.dir, "containerd", "containerd.sock") }

func (c *cluster) v1() bool { return strings.HasPrefix(c.version, "v1.") }

// containerdConfig is the template of scripts/containerd-config for the cluster's containerd (the
// integration harness and scripts/lib.sh use the same), with the cluster's CNI directories.
func (c *cluster) containerdConfig() string {
	cfg, err := testenv.ContainerdConfig(repoRoot, testenv.DaemonConfig{
		Version: c.version, Dir: filepath.Join(c.dir, "containerd"), SandboxImage: sandboxImage,
		RuntimeType: runtimeType, CNIBin: cniBin, CNIConf: filepath.Join(c.dir, "cni"),
	})
	if err != nil {
		panic(fmt.Sprintf("containerd %s config: %v", c.version, err))
	}
	return cfg
}

// cniConfig: a bridge with host-local addresses from podSubnet, its state under the cluster's
// directory; no masquerading (pods talk to the node and each other only).
func (c *cluster) cniConfig() string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "wazero-shim-test",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": %q
      }
    }
  ]
}
`, bridgeDev, podSubnet, filepath.Join(c.dir, "cni-ipam"))
}

func (c *cluster) startContainerd() {
	t := c.t
	E := filepath.Join(c.dir, "containerd")
	for _, sub := range []string{"root", "state", "opt", "s"} {
		os.MkdirAll(filepath.Join(E, sub), 0o700)
	}
	if err := os.WriteFile(filepath.Join(c.dir, "cni", "10-wazero-shim-test.conflist"), []byte(c.cniConfig()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(E, "config.toml")
	if err := os.WriteFile(cfg, []byte(c.containerdConfig()), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := containerdBin(c.version)
	// PATH: the shim copies first, then this version's own runc shim, then the rest without $TOOLS.
	dirs := []string{suite.shimDir, bin}
	tools := filepath.Clean(toolsDir) + "/"
	for _, p := range append(filepath.SplitList(os.Getenv("PATH")), "/usr/local/sbin", "/usr/sbin", "/sbin") {
		if p != "" && !strings.HasPrefix(filepath.Clean(p)+"/", tools) {
			dirs = append(dirs, p)
		}
	}
	env := append(filteredEnv("PATH", "CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE", "CONTAINERD_SHIM_WAZERO_CACHE_DIR"),
		"PATH="+strings.Join(dirs, ":"), "CONTAINERD_SHIM_WAZERO_CACHE_DIR="+filepath.Join(c.dir, "cache"))
	c.spawnEnv("containerd", env, filepath.Join(bin, "containerd"), "--config", cfg)
	c.waitFor("containerd "+c.version+" to answer", 30*time.Second, func() (bool, string) {
		r := c.ctr("version")
		return r.exit == 0, r.String()
	})
}

// filteredEnv is os.Environ() without the named variables (testenv.FilteredEnv).
var filteredEnv = testenv.FilteredEnv

// ctr runs this version's ctr in namespace k8s.io (its socket is a file: no need to enter the netns).
func (c *cluster) ctr(args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	full := append([]string{"--address", c.sock(), "--namespace", "k8s.io"}, args...)
	return run(ctx, filteredEnv("CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE"), filepath.Join(containerdBin(c.version), "ctr"), full...)
}

// importImages puts the images the tests use into k8s.io, as docs/kubernetes.md ("Images") tells
// users to: the sandbox image, and the wasm images unpacked for wasip1/wasm.
func (c *cluster) importImages() {
	wasm := []string{"images", "import", "--platform", "wasip1/wasm"}
	if !c.v1() {
		wasm = append(wasm, "--local")
	}
	for _, imp := range [][]string{
		{"images", "import", filepath.Join(imagesDir, "pause.tar")},
		{"images", "import", suite.installerImage},
		append(append([]string{}, wasm...), filepath.Join(imagesDir, "wasmtest.tar")),
		append(append([]string{}, wasm...), filepath.Join(imagesDir, "hello.tar")),
		append(append([]string{}, wasm...), filepath.Join(imagesDir, "httpserver.tar")),
		append(append([]string{}, wasm...), suite.probeImage),
		// The native images of deploy/example-mixed-pod.yaml (its init container and sidecar).
		{"images", "import", filepath.Join(imagesDir, "native-tool.tar")},
		{"images", "import", filepath.Join(imagesDir, "native-httpserver.tar")},
	} {
		if r := c.ctr(imp...); r.exit != 0 {
			c.t.Fatalf("ctr -n k8s.io %s:\n%s", strings.Join(imp, " "), r)
		}
	}
}

// --- kubelet ---------------------------------------------------------------------------------

func (c *cluster) startKubelet() {
	root := filepath.Join(c.dir, "kubelet")
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
containerRuntimeEndpoint: unix://%[1]s
imageServiceEndpoint: unix://%[1]s
podLogsDirectory: %[2]s
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
# The cgroupfs driver (the shim does not support systemd's), cgroup v1 accepted, no QoS cgroups.
# Without QoS cgroups the kubelet gives the sandboxes no cgroup parent and containerd puts every
# container in /k8s.io/<id>: a cgroupRoot would change nothing but make the kubelet look for a
# system container of that name (and warn FailedNodeAllocatableEnforcement), so there is none.
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
clusterDomain: cluster.local
resolvConf: ""
# The machine's disk use must not evict pods or remove the imported images.
evictionHard:
  memory.available: "50Mi"
  nodefs.available: "1%%"
  imagefs.available: "1%%"
  nodefs.inodesFree: "1%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# Restarts after a failure are not held back for long (the kubelet's default starts at 10s).
crashLoopBackOff:
  maxContainerRestartPeriod: 2s
featureGates:
  KubeletCrashLoopBackOffMax: true
`, c.sock(), filepath.Join(c.dir, "pods-logs"))
	path := filepath.Join(c.dir, "kubelet.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		c.t.Fatal(err)
	}
	c.spawnEnv("kubelet", filteredEnv("KUBECONFIG"), filepath.Join(kubeBin, "kubelet"),
		"--config", path, "--kubeconfig", c.kubeconfig, "--root-dir", root,
		"--cert-dir", filepath.Join(root, "pki"), "--hostname-override", nodeName, "--v", "2",
		// The kubelet removes a pod's dead containers beyond this many per container name as soon as
		// one more exits (default 1): with 1, an OnFailure pod's failed first run is gone once its
		// second run ends, and `kubectl logs --previous` has nothing to show. No flag in the
		// KubeletConfiguration replaces this deprecated one.
		"--maximum-dead-containers-per-container=2")
}

// kubeletR runs kubectl against the kubelet's own API (127.0.0.1:10250, anonymous and AlwaysAllow,
// its self-signed serving certificate not verified). The API server's node proxy cannot be used:
// it refuses to proxy to a loopback address ("address not allowed"), and the node's address is
// 127.0.0.1.
func (c *cluster) kubeletR(path string) result {
	cfg := filepath.Join(c.dir, "kubelet-kubeconfig")
	if !isFile(cfg) {
		os.WriteFile(cfg, []byte(`apiVersion: v1
kind: Config
clusters:
- name: kubelet
  cluster:
    server: https://127.0.0.1:10250
    insecure-skip-tls-verify: true
users:
# The kubelet has no token authenticator (webhook off): any token is ignored and the request is
# anonymous. Without one, kubectl asks for a username instead.
- name: anonymous
  user: {token: anonymous}
contexts:
- name: kubelet
  context: {cluster: kubelet, user: anonymous}
current-context: kubelet
`), 0o600)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return run(ctx, filteredEnv("KUBECONFIG"), "nsenter", "--net="+c.nsPath, "--", filepath.Join(kubeBin, "kubectl"),
		"--kubeconfig", cfg, "get", "--raw", path)
}

// --- kubectl ---------------------------------------------------------------------------------

// kubectlR runs kubectl inside the cluster's network namespace.
func (c *cluster) kubectlR(args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	full := append([]string{"--net=" + c.nsPath, "--", filepath.Join(kubeBin, "kubectl"), "--kubeconfig", c.kubeconfig}, args...)
	return run(ctx, filteredEnv("KUBECONFIG"), "nsenter", full...)
}

// kubectl runs kubectl and fails the test unless it exits 0; it returns stdout.
func (c *cluster) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	r := c.kubectlR(args...)
	if r.exit != 0 {
		t.Fatalf("kubectl %s:\n%s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// apply pipes a manifest into kubectl apply -f -.
func (c *cluster) apply(t *testing.T, manifest string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(p, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	c.kubectl(t, "apply", "-f", p)
}

// --- teardown --------------------------------------------------------------------------------

// teardown deletes the workloads (so the kubelet stops their containers through the CRI), stops
// the kubelet, removes any pod left with crictl, stops containerd and the control plane, then
// removes the network namespace, mounts and files.
func (c *cluster) teardown() {
	t := c.t
	if t.Failed() {
		for _, name := range []string{"kubelet", "containerd"} {
			if p := c.proc(name); p != nil {
				t.Logf("%s log (tail):\n%s", name, tail(p.log, 60))
			}
		}
	}
	if p := c.proc("kubelet"); p != nil {
		if a := c.proc("kube-apiserver"); a != nil {
			select {
			case <-a.exited:
			default:
				r := c.kubectlR("delete", "deployments,jobs,pods", "--all", "--wait=true", "--timeout=90s")
				if r.exit != 0 {
					t.Logf("teardown: kubectl delete: %s", r)
				}
			}
		}
		p.stop(20 * time.Second)
	}
	if p := c.proc("containerd"); p != nil {
		select {
		case <-p.exited:
		default:
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			ep := "unix://" + c.sock()
			cfg := filepath.Join(c.dir, "crictl.yaml")
			os.WriteFile(cfg, nil, 0o644)
			r := run(ctx, nil, "nsenter", "--net="+c.nsPath, "--", crictlBin, "--config", cfg, "--runtime-endpoint", ep, "--image-endpoint", ep, "rmp", "-fa")
			cancel()
			if r.exit != 0 {
				t.Logf("teardown: crictl rmp -fa: %s", r)
			}
		}
		p.stop(15 * time.Second)
	}
	for i := len(c.procs) - 1; i >= 0; i-- {
		c.procs[i].stop(15 * time.Second)
	}
	// Shims and runners of this cluster that outlived containerd.
	for _, pid := range ourPIDs() {
		if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid)); err == nil && strings.Contains(string(env), c.sock()) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for _, mp := range mountsUnder(c.dir) {
		if syscall.Unmount(mp, 0) != nil {
			syscall.Unmount(mp, syscall.MNT_DETACH)
		}
	}
	if out, err := exec.Command("ip", "netns", "del", c.netns).CombinedOutput(); err != nil {
		t.Errorf("ip netns del %s: %v\n%s", c.netns, err, out)
	}
	removeLogLinks()
	if p := c.proc("containerd"); p != nil {
		recordIDs(p.log)
	}
	removeNewCgroups()
	for k, v := range suite.sysctls {
		os.WriteFile("/proc/sys/"+k, []byte(v), 0o644)
	}
	if !t.Failed() || os.Getenv("WZ_KEEP") == "" {
		os.RemoveAll(c.dir)
	}
}
