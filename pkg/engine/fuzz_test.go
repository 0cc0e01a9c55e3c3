package engine

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzWriteCGIResponse: what a handler writes to stdout in the per-request mode. Never a
// panic; on error nothing is written; otherwise a status of 100-999 and no Status header.
func FuzzWriteCGIResponse(f *testing.F) {
	for _, s := range []string{
		"Content-Type: text/plain\n\nhi", "Content-Type: text/plain\r\nX-A: b\r\n\r\nhi\r\n", "Status: 201 Created\nContent-Type: a/b\n\n",
		"status: 418\n\nteapot", "Location: /x\n\n", "Location: /x\nStatus: 301 Moved\n\n", "Content-Type: text/plain\n",
		"just a body\n", "", "X-Only: 1\n\nbody", "Status: soon\n\n", "Status: 42\n\n", "Status: \t\n\n", " Content-Type: x\n\n",
		"Content-Type: a\nContent-Type: b\nSet-Cookie: a\nSet-Cookie: b\n\n", "Status: 200\nContent-Length: 1\n\nlonger",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, out []byte) {
		rec := httptest.NewRecorder()
		err := writeCGIResponse(rec, out)
		if err != nil {
			if rec.Body.Len() != 0 || rec.Flushed {
				t.Fatalf("wrote %q on error %v", rec.Body.String(), err)
			}
			return
		}
		if rec.Code < 100 || rec.Code > 999 {
			t.Fatalf("status %d", rec.Code)
		}
		if rec.Header().Get("Status") != "" {
			t.Fatal("the Status header was passed on")
		}
	})
}

// FuzzCGIEnv: request headers as CGI variables. Names are HTTP_ and [A-Z0-9_] (from a header
// name without an underscore), never Proxy's, and each variable is set once.
func FuzzCGIEnv(f *testing.F) {
	f.Add("X-Forwarded-For", "1.2.3.4", "X_Forwarded_For", "6.6.6.6")
	f.Add("Proxy", "http://evil", "Content-Type", "a/b")
	f.Add("accept", "a", "Accept", "b")
	f.Add("host", "evil", "X-A", "b")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		req := httptest.NewRequest("GET", "http://example.com/", nil)
		req.Header = http.Header{}
		req.Header[k1] = append(req.Header[k1], v1)
		req.Header[k2] = append(req.Header[k2], v2)
		seen := map[string]bool{}
		for _, kv := range cgiEnv(req, 0) {
			if seen[kv[0]] {
				t.Fatalf("%s set twice", kv[0])
			}
			seen[kv[0]] = true
			if kv[0] == "HTTP_PROXY" {
				t.Fatal("HTTP_PROXY set from a request header")
			}
		}
		for _, k := range []string{k1, k2} {
			if strings.Contains(k, "_") {
				name := "HTTP_" + strings.ToUpper(strings.ReplaceAll(k, "-", "_"))
				if seen[name] && !strings.EqualFold(strings.ReplaceAll(k1, "_", "-"), strings.ReplaceAll(k2, "_", "-")) && name != "HTTP_HOST" {
					t.Fatalf("header %q became %s", k, name)
				}
			}
		}
	})
}
