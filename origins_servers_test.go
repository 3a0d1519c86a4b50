//go:build linux

package etagcache_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// How each real server is configured and started. Every configuration
// lives in t.TempDir(): the document root, the pid file, the logs and any
// temporary folder, so nothing needs the packages' root-owned directories,
// and the system services the packages may have started on port 80 do not
// matter.

// writeConfig writes a configuration file into dir.
func writeConfig(t *testing.T, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, []byte(text), 0o644))
	return path
}

// newRoot makes an empty document root readable by any worker process.
func newRoot(t *testing.T) (dir, root string) {
	t.Helper()
	dir = t.TempDir()
	worldReadable(t, dir)
	root = filepath.Join(dir, "www")
	require.NoError(t, os.Mkdir(root, 0o755))
	return dir, root
}

// startNginx starts nginx with gzip on for text/plain and application/json;
// vary sets gzip_vary (nginx's default is off).
func startNginx(t *testing.T, vary bool) *origin {
	bin := requireBinary(t, "/usr/sbin/nginx", "nginx")
	dir, root := newRoot(t)
	gzipVary := "off"
	if vary {
		gzipVary = "on"
	}
	return startOrigin(t, func(port int) (*process, *origin) {
		conf := writeConfig(t, dir, "nginx.conf", fmt.Sprintf(`
daemon off;
master_process on;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 256; }
http {
	types { text/plain txt; application/json json; }
	default_type application/octet-stream;
	log_format probe '$status $request_method $uri [$http_if_modified_since] [$http_if_none_match]';
	access_log %[1]s/access.log probe;
	client_body_temp_path %[1]s/client_body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	gzip on;
	gzip_types text/plain application/json;
	gzip_vary %[4]s;
	server {
		listen 127.0.0.1:%[2]d;
		root %[3]s;
	}
}
`, dir, port, root, gzipVary))
		// -e: the error log before the configuration is read, else nginx
		// opens its compiled-in /var/log/nginx/error.log.
		p := startProcess(t, nil, bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
		log := filepath.Join(dir, "access.log")
		return p, &origin{name: "nginx", root: root, hits: func() ([]hit, error) { return readLines(log, parseTextLog) }}
	})
}

// startApache runs /usr/sbin/apache2 in the foreground with mpm_event and
// mod_deflate for text/plain and application/json, loading its modules
// itself (nothing from /etc/apache2). alterETag, if not empty, sets
// DeflateAlterETag (Apache's default is AddSuffix).
func startApache(t *testing.T, alterETag string) *origin {
	bin := requireBinary(t, "/usr/sbin/apache2", "apache2")
	const mods = "/usr/lib/apache2/modules"
	if _, err := os.Stat(filepath.Join(mods, "mod_deflate.so")); err != nil {
		requireBinary(t, filepath.Join(mods, "mod_deflate.so"), "apache2")
	}
	dir, root := newRoot(t)
	extra := ""
	if alterETag != "" {
		extra = "DeflateAlterETag " + alterETag
	}
	return startOrigin(t, func(port int) (*process, *origin) {
		conf := writeConfig(t, dir, "httpd.conf", fmt.Sprintf(`
ServerRoot "%[1]s"
ServerName 127.0.0.1
Listen 127.0.0.1:%[2]d
PidFile "%[1]s/httpd.pid"
DefaultRuntimeDir "%[1]s"
Mutex file:%[1]s default
LoadModule mpm_event_module %[4]s/mod_mpm_event.so
LoadModule authz_core_module %[4]s/mod_authz_core.so
LoadModule mime_module %[4]s/mod_mime.so
LoadModule filter_module %[4]s/mod_filter.so
LoadModule deflate_module %[4]s/mod_deflate.so
StartServers 1
ErrorLog "%[1]s/error.log"
LogLevel warn
LogFormat "%%>s %%m %%U [%%{If-Modified-Since}i] [%%{If-None-Match}i]" probe
CustomLog "%[1]s/access.log" probe
TypesConfig /dev/null
AddType text/plain .txt
AddType application/json .json
DocumentRoot "%[3]s"
<Directory "%[3]s">
	Require all granted
</Directory>
AddOutputFilterByType DEFLATE text/plain application/json
%[5]s
`, dir, port, root, mods, extra))
		p := startProcess(t, nil, bin, "-f", conf, "-DFOREGROUND")
		log := filepath.Join(dir, "access.log")
		return p, &origin{name: "apache", root: root, hits: func() ([]hit, error) { return readLines(log, parseTextLog) }}
	})
}

// startLighttpd starts lighttpd with mod_deflate for text/plain and
// application/json. statCache sets server.stat-cache-engine: "disable"
// makes every request stat the file; lighttpd's default ("simple") trusts
// a stat for up to a second.
func startLighttpd(t *testing.T, statCache string) *origin {
	bin := requireBinary(t, "/usr/sbin/lighttpd", "lighttpd")
	requireBinary(t, "/usr/lib/lighttpd/mod_deflate.so", "lighttpd-mod-deflate")
	dir, root := newRoot(t)
	return startOrigin(t, func(port int) (*process, *origin) {
		log := filepath.Join(dir, "access.log")
		conf := writeConfig(t, dir, "lighttpd.conf", fmt.Sprintf(`
server.document-root = "%[3]s"
server.bind = "127.0.0.1"
server.port = %[2]d
server.pid-file = "%[1]s/lighttpd.pid"
server.errorlog = "%[1]s/error.log"
server.stat-cache-engine = "%[5]s"
server.modules = ( "mod_deflate", "mod_accesslog" )
# A log file is written about once a second; a piped logger gets each line
# at once, so the test need not wait.
accesslog.filename = "|exec /bin/cat >> %[4]s"
accesslog.format = "%%>s %%m %%U [%%{If-Modified-Since}i] [%%{If-None-Match}i]"
mimetype.assign = ( ".txt" => "text/plain", ".json" => "application/json" )
deflate.mimetypes = ( "text/plain", "application/json" )
deflate.allowed-encodings = ( "gzip" )
`, dir, port, root, log, statCache))
		p := startProcess(t, nil, bin, "-D", "-f", conf)
		return p, &origin{name: "lighttpd", root: root, hits: func() ([]hit, error) { return readLines(log, parseTextLog) }}
	})
}

// startCaddy runs caddy with `encode gzip` and file_server, the admin
// endpoint off, and its home, data and config folders in the temp dir.
func startCaddy(t *testing.T) *origin {
	bin := requireBinary(t, "/usr/bin/caddy", "caddy")
	dir, root := newRoot(t)
	home := filepath.Join(dir, "home")
	require.NoError(t, os.Mkdir(home, 0o700))
	env := []string{"HOME=" + home, "XDG_CONFIG_HOME=" + home, "XDG_DATA_HOME=" + home, "XDG_CACHE_HOME=" + home}
	return startOrigin(t, func(port int) (*process, *origin) {
		log := filepath.Join(dir, "access.log")
		conf := writeConfig(t, dir, "Caddyfile", fmt.Sprintf(`{
	admin off
	auto_https off
	storage file_system %[1]s/storage
}
http://127.0.0.1:%[2]d {
	root * %[3]s
	encode gzip
	file_server
	log {
		output file %[4]s
		format json
	}
}
`, home, port, root, log))
		p := startProcess(t, env, bin, "run", "--config", conf, "--adapter", "caddyfile")
		return p, &origin{name: "caddy", root: root, hits: func() ([]hit, error) { return readLines(log, parseCaddyLog) }}
	})
}

// parseCaddyLog reads one line of Caddy's JSON access log.
func parseCaddyLog(line string) (hit, bool) {
	var l struct {
		Status  int `json:"status"`
		Request struct {
			Method  string              `json:"method"`
			URI     string              `json:"uri"`
			Headers map[string][]string `json:"headers"`
		} `json:"request"`
	}
	if err := json.Unmarshal([]byte(line), &l); err != nil || l.Status == 0 {
		return hit{}, false
	}
	path, _, _ := strings.Cut(l.Request.URI, "?")
	h := http.Header(l.Request.Headers)
	cond := h.Get("If-None-Match") != "" || h.Get("If-Modified-Since") != ""
	return hit{status: l.Status, method: l.Request.Method, path: path, cond: cond, condKnown: true}, true
}

// startPython runs `python3 -m http.server`; its log is its stderr, which
// names no request header.
func startPython(t *testing.T) *origin {
	bin := requireBinary(t, "/usr/bin/python3", "python3")
	_, root := newRoot(t)
	return startOrigin(t, func(port int) (*process, *origin) {
		p := startProcess(t, nil, bin, "-u", "-m", "http.server", "--bind", "127.0.0.1", strconv.Itoa(port), "--directory", root)
		return p, &origin{name: "python", root: root, hits: func() ([]hit, error) { return parsePythonLog(p.output.String()), nil }}
	})
}

var pythonLogLine = regexp.MustCompile(`"([A-Z]+) (\S+) HTTP/[0-9.]+" (\d{3}) `)

func parsePythonLog(out string) []hit {
	var hits []hit
	for _, line := range strings.Split(out, "\n") {
		m := pythonLogLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		status, _ := strconv.Atoi(m[3])
		path, _, _ := strings.Cut(m[2], "?")
		hits = append(hits, hit{status: status, method: m[1], path: path})
	}
	return hits
}

// startFileServer serves the root with Go's http.FileServer; the handler
// is wrapped to record what a log would.
func startFileServer(t *testing.T) *origin {
	_, root := newRoot(t)
	var mu sync.Mutex
	var hits []hit
	fs := http.FileServer(http.Dir(root))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		fs.ServeHTTP(rec, r)
		mu.Lock()
		defer mu.Unlock()
		cond := r.Header.Get("If-None-Match") != "" || r.Header.Get("If-Modified-Since") != ""
		hits = append(hits, hit{status: rec.status, method: r.Method, path: r.URL.Path, cond: cond, condKnown: true})
	}))
	t.Cleanup(srv.Close)
	return &origin{name: "go-fileserver", url: srv.URL, root: root, hits: func() ([]hit, error) {
		mu.Lock()
		defer mu.Unlock()
		return append([]hit(nil), hits...), nil
	}}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}
