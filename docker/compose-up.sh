#!/usr/bin/env bash
# compose-up.sh (`make compose-up`) starts every server of docker-compose.yml
# and waits until each answers:
#
#   Redis          127.0.0.1:6379
#   memcached      127.0.0.1:11211 and 127.0.0.1:11212
#   Redis Cluster  127.0.0.1:7000-7002 (the "cluster" profile: host networking, Linux only)
#
# so that the README's recipe can point the tests at them right away. `make
# compose-down` removes them all.
#
# Images: CACHEKIT_REDIS_IMAGE / CACHEKIT_MEMCACHED_IMAGE, else
# CACHEKIT_TEST_REDIS_IMAGE / CACHEKIT_TEST_MEMCACHED_IMAGE, else the official
# redis:7.4 / memcached:1.6. When the official image (or the local one) is
# absent and can't be pulled, the local cachekit-test/*:local image is used,
# built first with docker/build-test-images.sh if it isn't there yet.
#
# Environment: COMPOSE (the Compose command; default docker-compose, else
# "docker compose"), CACHEKIT_COMPOSE_WAIT (seconds to wait, default 90).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() { echo "compose-up: $*" >&2; exit 1; }
log() { echo "compose-up: $*" >&2; }

if [[ -z "${COMPOSE:-}" ]]; then
	if command -v docker-compose >/dev/null 2>&1; then
		COMPOSE=docker-compose
	elif docker compose version >/dev/null 2>&1; then
		COMPOSE="docker compose"
	else
		die "neither docker-compose nor 'docker compose' found"
	fi
fi
read -r -a compose <<<"$COMPOSE"

# resolve VAR TESTVAR OFFICIAL LOCAL: exports VAR as an image that is present.
resolve() {
	local var="$1" testvar="$2" official="$3" local_image="$4" image
	image="${!var:-${!testvar:-$official}}"
	if docker image inspect "$image" >/dev/null 2>&1; then
		:
	elif [[ "$image" != "$local_image" ]] && docker pull -q "$image" >/dev/null 2>&1; then
		log "pulled $image"
	elif [[ "$image" == "$official" || "$image" == "$local_image" ]]; then
		if ! docker image inspect "$local_image" >/dev/null 2>&1; then
			log "$image is not present and can't be pulled: building the local images"
			CACHEKIT_TEST_REDIS_IMAGE=cachekit-test/redis:local \
				CACHEKIT_TEST_MEMCACHED_IMAGE=cachekit-test/memcached:local \
				bash docker/build-test-images.sh
		fi
		[[ "$image" == "$local_image" ]] || log "$image is not present and can't be pulled: using $local_image"
		image="$local_image"
	else
		die "image $image (from $var or $testvar) is not present and can't be pulled"
	fi
	export "$var=$image"
}
resolve CACHEKIT_REDIS_IMAGE CACHEKIT_TEST_REDIS_IMAGE redis:7.4 cachekit-test/redis:local
resolve CACHEKIT_MEMCACHED_IMAGE CACHEKIT_TEST_MEMCACHED_IMAGE memcached:1.6 cachekit-test/memcached:local
log "images: $CACHEKIT_REDIS_IMAGE, $CACHEKIT_MEMCACHED_IMAGE"

# The cluster's init container exits with an error when the nodes already
# form a cluster (a second compose-up): that is fine, the wait below checks.
"${compose[@]}" --profile cluster up -d

memcached_ok() {
	timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"; printf "version\r\n" >&3; read -r line <&3; [[ "$line" == VERSION* ]]' "$1" 2>/dev/null
}
redis_ok() { # service port
	[[ "$("${compose[@]}" exec -T "$1" redis-cli -p "$2" ping 2>/dev/null | tr -d '\r')" == PONG ]]
}
cluster_ok() { # service port
	"${compose[@]}" exec -T "$1" redis-cli -p "$2" cluster info 2>/dev/null | tr -d '\r' | grep -qx 'cluster_state:ok'
}

deadline=$((SECONDS + ${CACHEKIT_COMPOSE_WAIT:-90}))
pending=""
while ((SECONDS < deadline)); do
	pending=""
	redis_ok redis 6379 || pending+=" redis:6379"
	memcached_ok 11211 || pending+=" memcached:11211"
	memcached_ok 11212 || pending+=" memcached:11212"
	for i in 0 1 2; do
		cluster_ok "redis-node-$i" "700$i" || pending+=" cluster:700$i"
	done
	[[ -n "$pending" ]] || break
	sleep 1
done
if [[ -n "$pending" ]]; then
	"${compose[@]}" --profile cluster ps >&2 || true
	"${compose[@]}" --profile cluster logs --tail 20 redis-cluster-init >&2 || true
	die "not ready after ${CACHEKIT_COMPOSE_WAIT:-90}s:$pending"
fi
cat <<'EOF'
compose-up: ready. Run the integration tests against these servers with
  CACHEKIT_TEST_REDIS_ADDR=127.0.0.1:6379 CACHEKIT_TEST_MEMCACHED_ADDRS=127.0.0.1:11211,127.0.0.1:11212 \
  CACHEKIT_TEST_REDIS_CLUSTER_ADDRS=127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002 CACHEKIT_TEST_REDIS_FLUSH_OK=1 \
  make test-integration
EOF
