#!/usr/bin/env bash
# Runs the cache-tests.fyi suite (../shared/cache-tests, see its RUNNING.md)
# against internal/cmd/cachetests-proxy, an httputil.ReverseProxy whose
# Transport is ours, once per mode, and prints the private-scope figures
# (295 tests, dependency-aware as the site scores them).
#
#   scripts/cache-tests.sh [default] [freshness]     (both when none given)
#
# Exits non-zero when a required test fails that is not on the mode's list of
# accepted failures below. Needs Go and Node 20+ (no npm install).
# Env: CACHE_TESTS_DIR (the suite; default ../shared/cache-tests beside the
# checkout), CACHE_TESTS_OUT (keep results.json / classified.json there).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
suite_src=${CACHE_TESTS_DIR:-$root/../shared/cache-tests}
modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(default freshness)

# Required failures we accept, one test id a line, with the reason. Anything
# else that fails makes this script fail.
accepted_default=(
  # The default mode asks the origin on every GET (that is its promise), and
  # these three want a fresh stored response reused without asking: the
  # origin sees the request and the test fails. Freshness mode passes them.
  freshness-max-age-leading-zero
  cc-resp-no-store-old-new
  cc-resp-no-store-old-max-age
)
accepted_freshness=(
  # Set-Cookie is never stored (a credential, kept out of stores by design),
  # so a response served from the store does not replay it; replaying an old
  # Set-Cookie could also undo a newer cookie the client got meanwhile.
  headers-store-Set-Cookie
  headers-store-Set-Cookie2
)

command -v node >/dev/null || { echo "cache-tests: node is missing (apt-get install -y nodejs)"; exit 1; }
[ -d "$suite_src/tests" ] || { echo "cache-tests: no suite at $suite_src"; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
cp -r "$suite_src" "$work/suite"
chmod -R u+w "$work/suite"

free_port() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
wait_port() { # host port
  for _ in $(seq 1 100); do
    if node -e "require('net').connect($2,'$1').on('connect',()=>process.exit(0)).on('error',()=>process.exit(1))"; then return 0; fi
    sleep 0.1
  done
  echo "cache-tests: nothing listens on $1:$2"; return 1
}

(cd "$root" && go build -o "$work/proxy" ./internal/cmd/cachetests-proxy)

origin_port=$(free_port)
(cd "$work/suite" && exec env npm_package_config_protocol=http npm_package_config_port="$origin_port" \
  npm_package_config_pidfile="$work/origin.pid" node test-engine/server/server.mjs >"$work/origin.log" 2>&1) &
pids+=($!)
wait_port 127.0.0.1 "$origin_port"

status=0
classify_args=()
for mode in "${modes[@]}"; do
  flag=""
  case $mode in
    default) ;;
    # The suite models one browser: one user (-one-user: WithPartition naming
    # a single user, so a Cookie does not start another partition), and a
    # cache allowed to serve stale when the origin is unreachable
    # (-stale-if-error: WithStaleIfError, RFC 9111 §4.2.4's configuration).
    freshness) flag="-freshness -stale-if-error 24h -one-user" ;;
    *) echo "cache-tests: unknown mode $mode"; exit 2 ;;
  esac
  rm -f "$work/addr"
  "$work/proxy" -origin "http://127.0.0.1:$origin_port" $flag -addr-file "$work/addr" >/dev/null 2>"$work/proxy-$mode.log" &
  ppid=$!
  pids+=($ppid)
  for _ in $(seq 1 100); do [ -s "$work/addr" ] && break; sleep 0.1; done
  addr=$(cat "$work/addr")
  echo "== cache-tests, $mode mode (proxy $addr -> origin 127.0.0.1:$origin_port)"
  (cd "$work/suite" && env npm_config_base="http://$addr" npm_package_config_id="" \
    node --no-warnings test-engine/cli.mjs >"$work/results-$mode.json")
  kill "$ppid"; wait "$ppid" 2>/dev/null || true
  classify_args+=("$mode=$work/results-$mode.json")
done

(cd "$work/suite" && node classify.mjs "${classify_args[@]}" >"$work/classified.json")
if [ -n "${CACHE_TESTS_OUT:-}" ]; then
  mkdir -p "$CACHE_TESTS_OUT"; cp "$work"/results-*.json "$work/classified.json" "$CACHE_TESTS_OUT/"
fi

for mode in "${modes[@]}"; do
  list_name="accepted_$mode[@]"
  accepted=$(printf '%s\n' "${!list_name}")
  ACCEPTED="$accepted" MODE="$mode" node --input-type=module -e '
    import fs from "fs"
    const c = JSON.parse(fs.readFileSync(process.argv[1], "utf8"))
    const mode = process.env.MODE
    const accepted = new Set(process.env.ACCEPTED.split("\n").filter(Boolean))
    const o = c.impls[mode].overall.private, r = c.impls[mode].overall_raw.private
    console.log(`${mode}: private scope ${o.total} tests: pass ${o.pass}, fail ${o.fail}, optional_fail ${o.optional_fail}, ` +
      `dependency_fail ${o.dependency_fail}, setup_fail ${o.setup_fail}, harness_fail ${o.harness_fail}, yes ${o.yes}, no ${o.no}` +
      `  (raw: pass ${r.pass}, fail ${r.fail})`)
    const inScope = id => { const t = c.tests[id]; return !t.browser_only && !t.browser_skip && !t.cdn_only }
    let bad = 0
    for (const [id, res] of Object.entries(c.per_test[mode])) {
      if (res !== "fail" || !inScope(id)) continue
      const ok = accepted.has(id)
      if (!ok) bad++
      console.log(`  ${ok ? "accepted" : "FAILED  "} ${id}: ${c.tests[id].name}`)
    }
    for (const id of accepted) {
      if (c.per_test[mode][id] !== "fail") console.log(`  note: accepted failure ${id} now ${c.per_test[mode][id]}; drop it from the list`)
    }
    process.exit(bad ? 1 : 0)
  ' "$work/classified.json" || status=1
done
exit $status
