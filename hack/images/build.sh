#!/usr/bin/env bash
# Builds the test images as OCI image archives.
#
#   hack/images/build.sh OUTDIR
#
# OUTDIR/busybox.tar: docker.io/library/busybox:1.35 from Debian's busybox-static (/bin/busybox plus
# a symlink per applet in /bin, /etc/passwd and /etc/group with root and nobody, /tmp, /var/www),
# Cmd ["sh"], amd64/linux. The archive is an OCI image layout (oci-layout, index.json,
# blobs/sha256/...) that `ctr images import` and the kubelet's importer accept. The build is
# reproducible: fixed mtimes, owners and ordering, gzip without name/time.
set -euo pipefail
umask 022

usage() { echo "usage: $0 OUTDIR" >&2; exit 2; }
[[ $# -eq 1 ]] || usage
outdir=$1

BUSYBOX=${BUSYBOX:-/bin/busybox}
IMAGE_NAME=docker.io/library/busybox:1.35
IMAGE_TAG=1.35
# 2022-01-01T00:00:00Z: every file and the config's `created` use this time.
EPOCH=1640995200
CREATED=2022-01-01T00:00:00Z
PATH_ENV=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

if [[ ! -x $BUSYBOX ]]; then
    echo "$BUSYBOX missing: installing busybox-static" >&2
    apt-get install -y busybox-static >&2
fi

mkdir -p "$outdir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- root filesystem -------------------------------------------------------------------------
rootfs=$work/rootfs
mkdir -p "$rootfs"/{bin,etc,root,tmp,var/www,home,dev,proc,sys,usr/bin,usr/sbin,sbin}
cp "$BUSYBOX" "$rootfs/bin/busybox"
chmod 0755 "$rootfs/bin/busybox"
while read -r applet; do
    [[ -n $applet && $applet != busybox ]] || continue
    ln -s busybox "$rootfs/bin/$applet"
done < <("$rootfs/bin/busybox" --list)
cat > "$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/home:/bin/false
EOF
cat > "$rootfs/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
EOF
chmod 1777 "$rootfs/tmp"
chmod 0700 "$rootfs/root"

# --- helpers ---------------------------------------------------------------------------------
blobs=$work/layout/blobs/sha256
mkdir -p "$blobs"

# Deterministic tar of a directory's contents.
det_tar() { # SRC_DIR OUT_FILE
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$EPOCH" \
        --format=posix --pax-option='exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime' \
        -C "$1" -cf "$2" .
}
sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
# Moves a file into the blob store; prints its digest (hex).
add_blob() {
    local d
    d=$(sha "$1")
    mv "$1" "$blobs/$d"
    echo "$d"
}

# --- layer -----------------------------------------------------------------------------------
det_tar "$rootfs" "$work/layer.tar"
diff_id=$(sha "$work/layer.tar")
gzip -n -9 < "$work/layer.tar" > "$work/layer.tar.gz"
layer_size=$(size "$work/layer.tar.gz")
layer_digest=$(add_blob "$work/layer.tar.gz")

# --- config ----------------------------------------------------------------------------------
printf '%s' "{\"architecture\":\"amd64\",\"os\":\"linux\",\"created\":\"$CREATED\",\
\"config\":{\"Env\":[\"PATH=$PATH_ENV\"],\"Cmd\":[\"sh\"]},\
\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$diff_id\"]},\
\"history\":[{\"created\":\"$CREATED\",\"created_by\":\"hack/images/build.sh (busybox-static)\"}]}" \
    > "$work/config.json"
config_size=$(size "$work/config.json")
config_digest=$(add_blob "$work/config.json")

# --- manifest --------------------------------------------------------------------------------
printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$config_digest\",\"size\":$config_size},\
\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$layer_digest\",\"size\":$layer_size}]}" \
    > "$work/manifest.json"
manifest_size=$(size "$work/manifest.json")
manifest_digest=$(add_blob "$work/manifest.json")

# --- index and layout ------------------------------------------------------------------------
printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\
\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$manifest_digest\",\"size\":$manifest_size,\
\"annotations\":{\"io.containerd.image.name\":\"$IMAGE_NAME\",\"org.opencontainers.image.ref.name\":\"$IMAGE_TAG\"},\
\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}}]}" \
    > "$work/layout/index.json"
printf '%s' '{"imageLayoutVersion":"1.0.0"}' > "$work/layout/oci-layout"

det_tar "$work/layout" "$work/busybox.tar"
mv "$work/busybox.tar" "$outdir/busybox.tar"
echo "$outdir/busybox.tar: $IMAGE_NAME manifest sha256:$manifest_digest" >&2
