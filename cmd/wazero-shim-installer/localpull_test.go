package main

import (
	"errors"
	"strings"
	"testing"
)

func TestSetLocalImagePull(t *testing.T) {
	tests := []struct {
		name, in string
		force    bool
		want     string // "" with err; the input itself when unchanged
		changed  bool
		err      string
	}{
		{name: "absent", in: "version = 3\n",
			want:    "version = 3\n\n# Added by wazero-shim-installer (-local-image-pull): the kubelet's pulls unpack bare wasip1/wasm images.\n[plugins.'io.containerd.cri.v1.images']\n  use_local_image_pull = true\n",
			changed: true},
		{name: "under the header", in: "version = 3\n[plugins.'io.containerd.cri.v1.images']\n  snapshotter = \"overlayfs\"\n",
			want:    "version = 3\n[plugins.'io.containerd.cri.v1.images']\n  use_local_image_pull = true\n  snapshotter = \"overlayfs\"\n",
			changed: true},
		{name: "double quotes, CRLF", in: "version = 3\r\n[plugins.\"io.containerd.cri.v1.images\"]\r\n",
			want:    "version = 3\r\n[plugins.\"io.containerd.cri.v1.images\"]\r\n  use_local_image_pull = true\r\n",
			changed: true},
		{name: "only a sub-table", in: "version = 3\n[plugins.'io.containerd.cri.v1.images'.pinned_images]\n  sandbox = \"p\"\n",
			want:    "version = 3\n[plugins.'io.containerd.cri.v1.images'.pinned_images]\n  sandbox = \"p\"\n\n# Added by wazero-shim-installer (-local-image-pull): the kubelet's pulls unpack bare wasip1/wasm images.\n[plugins.'io.containerd.cri.v1.images']\n  use_local_image_pull = true\n",
			changed: true},
		{name: "already true", in: "version = 3\n[plugins.'io.containerd.cri.v1.images']\n  use_local_image_pull = true\n"},
		{name: "false", in: "version = 3\n[plugins.'io.containerd.cri.v1.images']\n  use_local_image_pull = false # off\n", err: "use_local_image_pull = false"},
		{name: "false, force", in: "version = 3\n[plugins.'io.containerd.cri.v1.images']\n  use_local_image_pull = false # off\n", force: true,
			want: "version = 3\n[plugins.'io.containerd.cri.v1.images']\n  use_local_image_pull = true # off\n", changed: true},
		{name: "dotted keys", in: "version = 3\n[plugins]\n  'io.containerd.cri.v1.images'.snapshotter = \"overlayfs\"\n", err: "defined with dotted keys"},
		{name: "inline table", in: "version = 3\n[plugins]\n  'io.containerd.cri.v1.images' = { snapshotter = \"overlayfs\" }\n", err: "inline table"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, changed, summary, err := setLocalImagePull([]byte(tc.in), tc.force, false)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				if strings.Contains(tc.err, "= false") && !errors.Is(err, errConflict) {
					t.Errorf("error %v is not errConflict", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want
			if want == "" {
				want = tc.in
			}
			if string(out) != want || changed != tc.changed {
				t.Errorf("got changed=%v (%s)\n%s\nwant changed=%v\n%s", changed, summary, out, tc.changed, want)
			}
			// The result is a config the scanner follows, with the key exactly once.
			doc, err := scan(out)
			if err != nil {
				t.Fatalf("output does not scan: %v", err)
			}
			if !hasLocalPull(out, doc) {
				t.Errorf("output has no %s = true:\n%s", localPullKey, out)
			}
		})
	}
}
