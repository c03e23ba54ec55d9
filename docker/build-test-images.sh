#!/usr/bin/env bash
# build-test-images.sh builds two tiny local images for the integration tests
# from the Redis and Memcached binaries installed on this machine (Debian's
# redis-server, redis-tools and memcached packages):
#
#   cachekit-test/redis:local      /usr/bin/redis-server and /usr/bin/redis-cli
#   cachekit-test/memcached:local  /usr/bin/memcached
#
# Each image is FROM scratch and holds only the binaries, every library that
# ldd lists for them, the dynamic loader, a minimal /etc/passwd, /etc/group and
# /etc/nsswitch.conf, and writable /tmp and /data. Both images run as
# USER 65534:65534 (nobody:nogroup), so memcached needs no -u switch (as with
# the official memcached image, which runs as its own non-root user); a
# "-u nobody" passed anyway is accepted, because memcached only reads -u when
# it runs as root, and nobody exists in /etc/passwd.
#
# It exists because the machines this project is tested on can't pull images
# from a registry. Where they can, the official redis:7.4 and memcached:1.6
# images work the same way with the test harness.
#
# Usage:
#   docker/build-test-images.sh            build both images and smoke-test them
#
# Environment:
#   CACHEKIT_TEST_REDIS_IMAGE      tag for the Redis image     (default cachekit-test/redis:local)
#   CACHEKIT_TEST_MEMCACHED_IMAGE  tag for the Memcached image (default cachekit-test/memcached:local)
#   REDIS_SERVER_BIN / REDIS_CLI_BIN / MEMCACHED_BIN   binaries to package
#                                  (default: found on PATH)
#   SKIP_IMAGE_CHECK=1             don't run the images after building them
set -euo pipefail

REDIS_IMAGE="${CACHEKIT_TEST_REDIS_IMAGE:-cachekit-test/redis:local}"
MEMCACHED_IMAGE="${CACHEKIT_TEST_MEMCACHED_IMAGE:-cachekit-test/memcached:local}"

die() { echo "build-test-images: $*" >&2; exit 1; }
log() { echo "build-test-images: $*" >&2; }

command -v docker >/dev/null || die "docker not found on PATH"
command -v ldd >/dev/null || die "ldd not found on PATH"

find_bin() { # name, override
	local name="$1" override="${2:-}"
	if [[ -n "$override" ]]; then
		[[ -x "$override" ]] || die "$override is not an executable"
		echo "$override"
		return
	fi
	command -v "$name" 2>/dev/null || PATH="$PATH:/usr/sbin:/usr/bin" command -v "$name" 2>/dev/null ||
		die "$name not found: apt-get install -y redis-server redis-tools memcached"
}

REDIS_SERVER_BIN="$(find_bin redis-server "${REDIS_SERVER_BIN:-}")"
REDIS_CLI_BIN="$(find_bin redis-cli "${REDIS_CLI_BIN:-}")"
MEMCACHED_BIN="$(find_bin memcached "${MEMCACHED_BIN:-}")"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/cachekit-images.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# add_libs ROOT BINARY: copies every shared object ldd lists for BINARY, and
# the dynamic loader, into ROOT at the same paths (symlinks dereferenced).
add_libs() {
	local root="$1" bin="$2" line lib
	local out
	out="$(ldd "$bin")" || die "ldd $bin failed (is it a dynamic executable?)"
	while IFS= read -r line; do
		lib=""
		case "$line" in
		*"=> not found"*) die "ldd $bin: missing library: $line" ;;
		*"=> /"*) lib="${line#*=> }"; lib="${lib%% (*}" ;;
		*/*) lib="$(echo "$line" | awk '{print $1}')" ;; # the loader: /lib64/ld-linux-x86-64.so.2 (0x...)
		esac
		[[ -n "$lib" && "$lib" == /* ]] || continue
		[[ -e "$lib" ]] || die "ldd $bin lists $lib, which does not exist"
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done <<<"$out"
}

# base_rootfs ROOT: /etc files, /tmp and /data.
base_rootfs() {
	local root="$1"
	mkdir -p "$root/etc" "$root/tmp" "$root/data" "$root/usr/bin"
	chmod 1777 "$root/tmp" "$root/data"
	cat >"$root/etc/passwd" <<-'EOF'
		root:x:0:0:root:/root:/usr/sbin/nologin
		nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
	EOF
	cat >"$root/etc/group" <<-'EOF'
		root:x:0:
		nogroup:x:65534:
	EOF
	cat >"$root/etc/nsswitch.conf" <<-'EOF'
		passwd: files
		group: files
		hosts: files dns
	EOF
	echo "127.0.0.1 localhost" >"$root/etc/hosts"
}

pkg_version() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo unknown; }

# --- Redis ---------------------------------------------------------------
ctx="$WORK/redis"
base_rootfs "$ctx/rootfs"
# Debian's /usr/bin/redis-server is a symlink to redis-check-rdb; redis picks
# its mode from argv[0], so the file must be called redis-server.
cp -L "$REDIS_SERVER_BIN" "$ctx/rootfs/usr/bin/redis-server"
cp -L "$REDIS_CLI_BIN" "$ctx/rootfs/usr/bin/redis-cli"
add_libs "$ctx/rootfs" "$REDIS_SERVER_BIN"
add_libs "$ctx/rootfs" "$REDIS_CLI_BIN"
redis_version="$("$REDIS_SERVER_BIN" --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')"
cat >"$ctx/Dockerfile" <<EOF
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin:/usr/bin:/bin
USER 65534:65534
WORKDIR /data
EXPOSE 6379
LABEL org.opencontainers.image.title="cachekit-test/redis" \\
      org.opencontainers.image.description="redis-server from Debian's redis-server $(pkg_version redis-server), for cachekit's integration tests" \\
      org.opencontainers.image.version="${redis_version:-unknown}"
CMD ["redis-server", "--port", "6379", "--save", "", "--appendonly", "no", "--protected-mode", "no"]
EOF
log "building $REDIS_IMAGE (redis ${redis_version:-?}, $(du -sh "$ctx/rootfs" | cut -f1))"
docker build -q -t "$REDIS_IMAGE" "$ctx" >/dev/null

# --- Memcached -----------------------------------------------------------
ctx="$WORK/memcached"
base_rootfs "$ctx/rootfs"
cp -L "$MEMCACHED_BIN" "$ctx/rootfs/usr/bin/memcached"
add_libs "$ctx/rootfs" "$MEMCACHED_BIN"
# pthread_exit/cancel may dlopen libgcc_s for unwinding; ship it if present.
for extra in /lib/x86_64-linux-gnu/libgcc_s.so.1 /usr/lib/x86_64-linux-gnu/libgcc_s.so.1; do
	if [[ -e "$extra" ]]; then
		mkdir -p "$ctx/rootfs$(dirname "$extra")"
		cp -L "$extra" "$ctx/rootfs$extra"
		break
	fi
done
memcached_version="$("$MEMCACHED_BIN" -V | awk '{print $2}')"
cat >"$ctx/Dockerfile" <<EOF
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin:/usr/bin:/bin
USER 65534:65534
WORKDIR /data
EXPOSE 11211
LABEL org.opencontainers.image.title="cachekit-test/memcached" \\
      org.opencontainers.image.description="memcached from Debian's memcached $(pkg_version memcached), for cachekit's integration tests" \\
      org.opencontainers.image.version="${memcached_version:-unknown}"
CMD ["memcached", "-p", "11211", "-m", "64", "-U", "0"]
EOF
log "building $MEMCACHED_IMAGE (memcached ${memcached_version:-?}, $(du -sh "$ctx/rootfs" | cut -f1))"
docker build -q -t "$MEMCACHED_IMAGE" "$ctx" >/dev/null

# --- Smoke check ---------------------------------------------------------
if [[ "${SKIP_IMAGE_CHECK:-}" != 1 ]]; then
	docker run --rm "$REDIS_IMAGE" redis-server --version >/dev/null ||
		die "$REDIS_IMAGE: redis-server --version failed"
	docker run --rm "$REDIS_IMAGE" redis-cli --version >/dev/null ||
		die "$REDIS_IMAGE: redis-cli --version failed"
	docker run --rm "$MEMCACHED_IMAGE" memcached -V >/dev/null ||
		die "$MEMCACHED_IMAGE: memcached -V failed"
	# -u is only consulted when running as root; make sure that path works too.
	docker run --rm --user 0:0 "$MEMCACHED_IMAGE" memcached -u nobody -V >/dev/null ||
		die "$MEMCACHED_IMAGE: memcached -u nobody -V (as root) failed"
fi

docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' "$REDIS_IMAGE" >&2
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' "$MEMCACHED_IMAGE" >&2
log "done: $REDIS_IMAGE $MEMCACHED_IMAGE"
