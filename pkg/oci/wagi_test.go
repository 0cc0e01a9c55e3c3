package oci

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestParseWAGI(t *testing.T) {
	def := func(addrs ...ListenAddr) *WAGI {
		return &WAGI{Listen: addrs, Concurrency: DefaultWAGIConcurrency, Timeout: DefaultWAGITimeout, MaxBody: DefaultWAGIMaxBody,
			WriteTimeout: DefaultWAGIWriteTimeout, MaxConnections: DefaultWAGIMaxConnections}
	}
	cases := []struct {
		name   string
		env    []string
		want   *WAGI
		errHas []string
	}{
		{name: "unset", env: []string{"A=1"}},
		{name: "blank", env: []string{"WAZERO_WAGI= "}},
		{name: "defaults", env: []string{"WAZERO_WAGI=:8080"}, want: def(ListenAddr{Port: 8080})},
		{name: "two addresses", env: []string{"WAZERO_WAGI=127.0.0.1:80,[::1]:80"}, want: def(ListenAddr{Host: "127.0.0.1", Port: 80}, ListenAddr{Host: "::1", Port: 80})},
		{
			name: "all set",
			env: []string{"WAZERO_WAGI=:8080", "WAZERO_WAGI_CONCURRENCY= 3", "WAZERO_WAGI_TIMEOUT=1500ms", "WAZERO_WAGI_MAX_BODY=0",
				"WAZERO_WAGI_WRITE_TIMEOUT=5s", "WAZERO_WAGI_MAX_CONNECTIONS=10"},
			want: &WAGI{Listen: []ListenAddr{{Port: 8080}}, Concurrency: 3, Timeout: 1500 * time.Millisecond, MaxBody: 0, WriteTimeout: 5 * time.Second, MaxConnections: 10},
		},
		{name: "last wins", env: []string{"WAZERO_WAGI=:1", "WAZERO_WAGI=:8080"}, want: def(ListenAddr{Port: 8080})},
		{name: "bad address", env: []string{"WAZERO_WAGI=8080"}, errHas: []string{`WAZERO_WAGI="8080"`, "missing port"}},
		{name: "with listen", env: []string{"WAZERO_WAGI=:8080", "WAZERO_LISTEN=:9090"}, errHas: []string{"WAZERO_WAGI and WAZERO_LISTEN are both set"}},
		{name: "concurrency 0", env: []string{"WAZERO_WAGI=:8080", "WAZERO_WAGI_CONCURRENCY=0"}, errHas: []string{`WAZERO_WAGI_CONCURRENCY="0"`, "from 1 to 1024"}},
		{name: "concurrency big", env: []string{"WAZERO_WAGI=:8080", "WAZERO_WAGI_CONCURRENCY=1025"}, errHas: []string{"from 1 to 1024"}},
		{name: "concurrency word", env: []string{"WAZERO_WAGI=:8080", "WAZERO_WAGI_CONCURRENCY=many"}, errHas: []string{`"many"`}},
		{name: "timeout unitless", env: []string{"WAZERO_WAGI=:8080", "WAZERO_WAGI_TIMEOUT=30"}, errHas: []string{`WAZERO_WAGI_TIMEOUT="30"`, "positive duration"}},
		{name: "timeout negative", env: []string{"WAZERO_WAGI=:8080", "WAZERO_WAGI_TIMEOUT=-1s"}, errHas: []string{"positive duration"}},
		{name: "write timeout unitless", env: []string{"WAZERO_WAGI=:8080", "WAZERO_WAGI_WRITE_TIMEOUT=30"}, errHas: []string{`WAZERO_WAGI_WRITE_TIMEOUT="30"`, "positive duration"}},
		{name: "write timeout zero", env: []string{"WAZERO_WAGI=:8080", "WAZERO_WAGI_WRITE_TIMEOUT=0s"}, errHas: []string{"positive duration"}},
		{name: "connections 0", env: []string{"WAZERO_WAGI=:8080", "WAZERO_WAGI_MAX_CONNECTIONS=0"}, errHas: []string{`WAZERO_WAGI_MAX_CONNECTIONS="0"`, "from 1 to 65536"}},
		{name: "connections big", env: []string{"WAZERO_WAGI=:8080", "WAZERO_WAGI_MAX_CONNECTIONS=65537"}, errHas: []string{"from 1 to 65536"}},
		{name: "body", env: []string{"WAZERO_WAGI=:8080", "WAZERO_WAGI_MAX_BODY=1MB"}, errHas: []string{`WAZERO_WAGI_MAX_BODY="1MB"`, "number of bytes"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseWAGI(tc.env)
			if len(tc.errHas) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("got %+v, want %+v", got, tc.want)
				}
				return
			}
			if err == nil || !errdefs.IsInvalidArgument(err) {
				t.Fatalf("err = %v, want InvalidArgument", err)
			}
			for _, s := range tc.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("err %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestInstancePages(t *testing.T) {
	for _, tc := range []struct {
		total uint32
		n     int
		want  uint32
	}{
		{MaxPages, 8, MaxPages}, // no memory limit: no cap per instance either
		{1024, 1, 1024},
		{1024, 4, 256},
		{1000, 3, 333},
		{2, 8, 1},
	} {
		if got := (&WAGI{Concurrency: tc.n}).InstancePages(tc.total); got != tc.want {
			t.Errorf("InstancePages(%d) with concurrency %d = %d, want %d", tc.total, tc.n, got, tc.want)
		}
	}
}
